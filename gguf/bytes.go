package gguf

import "github.com/moe-llm/moe/tokenizer"

// GPT-2's byte-level BPE stores tokens as text by mapping every byte to a
// printable rune (bytes_to_unicode); GGUF's "gpt2" tokenizer model and
// Hugging Face's tokenizer.json both use it. The mapping lives in the
// tokenizer package.

// BytesToToken encodes raw token bytes as GPT-2 byte-level text.
func BytesToToken(b []byte) string { return tokenizer.ByteLevelEncode(b) }

// TokenToBytes decodes GPT-2 byte-level text back to raw bytes; it fails on
// a rune outside the mapping.
func TokenToBytes(s string) ([]byte, error) { return tokenizer.ByteLevelDecode(s) }
