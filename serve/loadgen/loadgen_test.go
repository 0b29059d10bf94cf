package loadgen

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeServer answers completions with usage.completion_tokens = max_tokens
// (or short, when short is set) and records the prompts it saw.
func fakeServer(t *testing.T, short bool) (*httptest.Server, *[]string, *sync.Mutex) {
	var mu sync.Mutex
	var prompts []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Prompt    string             `json:"prompt"`
			MaxTokens int                `json:"max_tokens"`
			IgnoreEOS bool               `json:"ignore_eos"`
			LogitBias map[string]float64 `json:"logit_bias"`
		}
		if r.URL.Path != "/v1/completions" || json.NewDecoder(r.Body).Decode(&req) != nil || !req.IgnoreEOS {
			http.Error(w, "bad request", 400)
			return
		}
		mu.Lock()
		if req.LogitBias["7"] == -100 {
			req.Prompt += " [biased]"
		}
		prompts = append(prompts, req.Prompt)
		mu.Unlock()
		n := req.MaxTokens
		if short {
			n--
		}
		json.NewEncoder(w).Encode(map[string]any{"usage": map[string]int{"completion_tokens": n}})
	}))
	t.Cleanup(ts.Close)
	return ts, &prompts, &mu
}

func TestRunCountsTokensAndClients(t *testing.T) {
	ts, prompts, mu := fakeServer(t, false)
	res, err := Run(context.Background(), Options{URL: ts.URL + "/", Prompt: "p", Tokens: 7, Requests: 3}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Clients != 4 || res.Requests != 12 || res.Tokens != 84 || res.TokensPerSecond <= 0 || res.LatencyP50 > res.LatencyMax {
		t.Fatalf("result %+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	// One warm-up plus 12 timed requests; each client has its own prompt.
	seen := map[string]int{}
	for _, p := range *prompts {
		seen[p]++
	}
	if len(*prompts) != 13 || seen["p (0)"] != 3 || seen["p (3)"] != 3 || seen["p (warm-up)"] != 1 {
		t.Fatalf("prompts %v", seen)
	}
}

func TestRunRefusesShortGenerations(t *testing.T) {
	ts, _, _ := fakeServer(t, true)
	_, err := Run(context.Background(), Options{URL: ts.URL, Prompt: "p", Tokens: 5, Requests: 1}, 2)
	if err == nil || !strings.Contains(err.Error(), "generated 4 tokens where 5") {
		t.Fatalf("err = %v", err)
	}
}

func TestRunRefusesBadOptions(t *testing.T) {
	if _, err := Run(context.Background(), Options{URL: "http://127.0.0.1:1", Tokens: 0, Requests: 1}, 1); err == nil {
		t.Fatal("tokens 0 accepted")
	}
}

func TestPartialUTF8(t *testing.T) {
	pieces := [][]byte{[]byte("a"), {0xe2, 0x82}, []byte("€"), {0xff}, nil}
	bias := PartialUTF8(len(pieces), func(id int32) []byte { return pieces[id] })
	if len(bias) != 2 || bias[1] != -100 || bias[3] != -100 {
		t.Fatalf("bias %v, want ids 1 and 3 at -100", bias)
	}
	ts, prompts, mu := fakeServer(t, false)
	if _, err := Run(context.Background(), Options{URL: ts.URL, Prompt: "p", Tokens: 2, Requests: 1, LogitBias: map[int32]float64{7: -100}}, 1); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if (*prompts)[1] != "p (0) [biased]" {
		t.Fatalf("logit_bias not sent: %v", *prompts)
	}
}
