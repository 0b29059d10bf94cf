package train

import (
	"context"
	"fmt"

	"github.com/moe-llm/moe/data"
	"github.com/moe-llm/moe/tokenizer"
)

// SourceTokens tokenizes every document of src, each preceded by the
// end-of-text token (so that the first real token is predicted too), and
// returns the ids and the number of text bytes.
func SourceTokens(ctx context.Context, tok *tokenizer.Tokenizer, src data.Source) ([]int32, int64, error) {
	var ids []int32
	var n int64
	_, err := data.Documents(ctx, src, func(doc []byte) error {
		ids = append(ids, tok.EOT())
		ids = tok.AppendEncode(ids, doc)
		n += int64(len(doc))
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("eval data: %w", err)
	}
	return ids, n, nil
}
