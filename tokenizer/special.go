package tokenizer

import "bytes"

// fragment is a piece of the text to encode: s[start:end] as text, or the
// special token id (id >= 0).
type fragment struct {
	start, end int
	id         int32
}

// isStripSpace is C's isspace in the C locale, which llama.cpp uses for
// the lstrip/rstrip of special tokens.
func isStripSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r'
}

// partitionSpecials splits s on special tokens as llama.cpp's
// tokenizer_st_partition: for each special token, longest first, every
// text fragment is split at each of its occurrences. Control and unknown
// tokens are matched only with parseSpecial; user-defined tokens always.
func (t *Tokenizer) partitionSpecials(s []byte, parseSpecial bool) []fragment {
	frags := []fragment{{0, len(s), -1}}
	if len(s) == 0 {
		return nil
	}
	var next []fragment
	for _, id := range t.partition {
		a := t.Attr(id)
		if !parseSpecial && a&(AttrControl|AttrUnknown) != 0 {
			continue
		}
		name := t.specialByID[id]
		if !bytes.Contains(s, []byte(name)) {
			continue
		}
		next = next[:0]
		for _, f := range frags {
			if f.id >= 0 {
				next = append(next, f)
				continue
			}
			start, end := f.start, f.end
			for {
				k := bytes.Index(s[start:end], []byte(name))
				if k < 0 {
					break
				}
				m := start + k
				left := m
				if a&AttrLStrip != 0 {
					for left > start && isStripSpace(s[left-1]) {
						left--
					}
				}
				if left > start {
					next = append(next, fragment{start, left, -1})
				}
				next = append(next, fragment{m, m + len(name), id})
				start = m + len(name)
				if a&AttrRStrip != 0 {
					for start < end && isStripSpace(s[start]) {
						start++
					}
				}
			}
			if start < end {
				next = append(next, fragment{start, end, -1})
			}
		}
		frags, next = next, frags
	}
	return frags
}
