package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// GPT-2's byte-level BPE stores tokens as text by mapping every byte to a
// printable rune (bytes_to_unicode): printable Latin-1 bytes map to
// themselves, the other 68 bytes to U+0100 upwards in byte order. GGUF's
// "gpt2" tokenizer model and Hugging Face's ByteLevel pre-tokenizer use it.

// byteRune is the rune of every byte; runeByte inverts it (-1: not a
// byte-level rune). Both are computed once by pure functions.
var byteRune, runeByte = func() (r [256]rune, inv [324]int16) {
	n := 0
	for b := range 256 {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			r[b] = rune(b)
		} else {
			r[b] = rune(256 + n)
			n++
		}
	}
	for i := range inv {
		inv[i] = -1
	}
	for b, c := range r {
		inv[c] = int16(b)
	}
	return r, inv
}()

// ByteLevelEncode returns raw token bytes as GPT-2 byte-level text.
func ByteLevelEncode(b []byte) string {
	var sb strings.Builder
	sb.Grow(2 * len(b))
	for _, c := range b {
		sb.WriteRune(byteRune[c])
	}
	return sb.String()
}

// ByteLevelDecode turns GPT-2 byte-level text back into raw bytes; it fails
// on a rune outside the mapping.
func ByteLevelDecode(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w <= 1 || int(r) >= len(runeByte) || runeByte[r] < 0 {
			return nil, fmt.Errorf("token %q has rune %q outside GPT-2's byte mapping", s, r)
		}
		out = append(out, byte(runeByte[r]))
		i += w
	}
	return out, nil
}
