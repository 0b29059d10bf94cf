package data_test

import (
	"fmt"

	"github.com/moe-llm/moe/data"
)

func ExampleParseSource() {
	for _, spec := range []string{"code=./src@4", "../shared/data/kjv.txt", "chat.jsonl@2"} {
		s, err := data.ParseSource(spec)
		fmt.Printf("name %s, path %s, epochs %d, err %v\n", s.Name, s.Path, s.Epochs, err)
	}
	_, err := data.ParseSource("x.txt@0")
	fmt.Println(err)
	// Output:
	// name code, path ./src, epochs 4, err <nil>
	// name kjv, path ../shared/data/kjv.txt, epochs 1, err <nil>
	// name chat, path chat.jsonl, epochs 2, err <nil>
	// data source "x.txt@0": epochs "0" must be a positive integer
}
