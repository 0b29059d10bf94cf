package scratch

import "testing"

func TestGrowReusesOrAllocates(t *testing.T) {
	buf := make([]float32, 3, 8)
	buf[0] = 7
	got := Grow(buf, 8)
	if len(got) != 8 || &got[0] != &buf[0] || got[0] != 7 {
		t.Errorf("Grow within capacity: len %d, reused %v, got[0] %v", len(got), &got[0] == &buf[0], got[0])
	}
	if got := Grow(buf, 2); len(got) != 2 || &got[0] != &buf[0] {
		t.Errorf("Grow shrinking: len %d, reused %v", len(got), &got[0] == &buf[0])
	}
	big := Grow(buf, 9)
	if len(big) != 9 || &big[0] == &buf[0] {
		t.Errorf("Grow past capacity: len %d, reused %v", len(big), &big[0] == &buf[0])
	}
	for i, v := range big {
		if v != 0 {
			t.Fatalf("new buffer [%d] = %v, want 0", i, v)
		}
	}
	if got := Grow[int32](nil, 0); len(got) != 0 {
		t.Errorf("Grow(nil, 0) has length %d", len(got))
	}
}
