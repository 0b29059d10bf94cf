package tokenizer_test

import (
	"context"
	"fmt"

	"github.com/moe-llm/moe/tokenizer"
)

func ExampleTrain() {
	corpus := []string{"the cat sat on the mat", "the cat ate the rat", "that cat"}
	tok, err := tokenizer.Train(context.Background(), func(yield func([]byte) bool) {
		for _, d := range corpus {
			if !yield([]byte(d)) {
				return
			}
		}
	}, tokenizer.MinVocabSize+4)
	if err != nil {
		fmt.Println(err)
		return
	}
	ids := tok.Encode([]byte("the cat"))
	for _, id := range ids {
		fmt.Printf("%d %q\n", id, tok.TokenBytes(id))
	}
	fmt.Println(string(tok.Decode(ids)))
	fmt.Println(tok.VocabSize(), tok.EOT())
	// Output:
	// 258 "the"
	// 259 " c"
	// 256 "at"
	// the cat
	// 265 260
}

func ExampleTokenizer_EncodeWithSpecials() {
	tok, _ := tokenizer.Train(context.Background(), func(yield func([]byte) bool) { yield([]byte("hi")) }, tokenizer.MinVocabSize)
	user, _ := tok.Special(tokenizer.User)
	ids := tok.EncodeWithSpecials([]byte("<|user|>hi"))
	fmt.Println(ids[0] == user, len(tok.Encode([]byte("<|user|>hi"))) > 2)
	// Output: true true
}

func ExamplePieces() {
	tokenizer.Pieces([]byte("I'm here:  42345 times!\n\n"), func(p []byte) { fmt.Printf("%q ", p) })
	// Output: "I" "'m" " here" ":" " " " " "423" "45" " times" "!\n\n"
}
