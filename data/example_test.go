package data_test

import (
	"fmt"

	"moe/data"
)

func ExampleParseSource() {
	for _, spec := range []string{"code=./src@4", "../shared/data/kjv.txt", "chat.jsonl@2"} {
		s, err := data.ParseSource(spec)
		fmt.Printf("%+v %v\n", s, err)
	}
	_, err := data.ParseSource("x.txt@0")
	fmt.Println(err)
	// Output:
	// {Name:code Path:./src Epochs:4} <nil>
	// {Name:kjv Path:../shared/data/kjv.txt Epochs:1} <nil>
	// {Name:chat Path:chat.jsonl Epochs:2} <nil>
	// data source "x.txt@0": epochs "0" must be a positive integer
}
