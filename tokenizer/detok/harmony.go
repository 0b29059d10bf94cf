package detok

import "slices"

// Harmony names the control tokens of OpenAI's harmony chat format
// (gpt-oss): a reply is messages <|start|>role<|channel|>name<|message|>
// text ending at <|end|>, <|return|> or <|call|>, and only the "final"
// channel is the answer ("analysis" is the reasoning).
type Harmony struct {
	Start, Channel, Message int32
	// Ends close a message: <|end|>, <|return|>, <|call|>.
	Ends []int32
}

// Final returns a TokenText for one reply that keeps the text of messages
// in the final channel, and text outside any message (a model that skips
// the format), and drops headers and other channels. It has state: use a
// new one for each reply.
func (h Harmony) Final(text TokenText) TokenText {
	const (
		outside = iota // before any header, or between messages
		header         // after <|start|>: the role
		channel        // after <|channel|>: the channel's name
		body           // after <|message|>
	)
	state, keep := outside, true
	var name []byte
	return func(id int32) []byte {
		switch {
		case id == h.Start:
			state = header
			return nil
		case id == h.Channel:
			state, name = channel, name[:0]
			return nil
		case id == h.Message:
			state, keep = body, string(name) == "final" || len(name) == 0
			return nil
		case slices.Contains(h.Ends, id):
			state, keep = outside, true
			return nil
		}
		b := text(id)
		switch state {
		case header:
			return nil
		case channel:
			name = append(name, b...)
			return nil
		case body:
			if !keep {
				return nil
			}
		}
		return b
	}
}
