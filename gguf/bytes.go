package gguf

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// GPT-2's byte-level BPE stores tokens as text by mapping every byte to a
// printable rune (bytes_to_unicode): printable Latin-1 bytes map to
// themselves, the other 68 bytes to U+0100 upwards in byte order. GGUF's
// "gpt2" tokenizer model and Hugging Face's tokenizer.json both use it.

// byteRunes returns the rune of every byte.
func byteRunes() (r [256]rune) {
	n := 0
	for b := 0; b < 256; b++ {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			r[b] = rune(b)
		} else {
			r[b] = rune(256 + n)
			n++
		}
	}
	return r
}

// BytesToToken encodes raw token bytes as GPT-2 byte-level text.
func BytesToToken(b []byte) string {
	r := byteRunes()
	var sb strings.Builder
	sb.Grow(2 * len(b))
	for _, c := range b {
		sb.WriteRune(r[c])
	}
	return sb.String()
}

// TokenToBytes decodes GPT-2 byte-level text back to raw bytes; it fails on
// a rune outside the mapping.
func TokenToBytes(s string) ([]byte, error) {
	var inv [324]int16 // runes used are < 256+68
	for i := range inv {
		inv[i] = -1
	}
	for b, r := range byteRunes() {
		inv[r] = int16(b)
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w <= 1 || int(r) >= len(inv) || inv[r] < 0 {
			return nil, fmt.Errorf("token %q has rune %q outside GPT-2's byte mapping", s, r)
		}
		out = append(out, byte(inv[r]))
		i += w
	}
	return out, nil
}
