package serve

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHandlerWithoutListener mounts the handler on httptest's server
// (the Handler + Run way of embedding the server).
func TestHandlerWithoutListener(t *testing.T) {
	srv, err := New(&fakeEngine{ctxLen: 32}, fakeTok{}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(ctx) }()
	hs := httptest.NewServer(srv.Handler())
	defer func() { hs.Close(); cancel(); <-done }()
	res, err := http.Post(hs.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"ab","max_tokens":3,"temperature":0}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var cr completionResponse
	if err := json.NewDecoder(res.Body).Decode(&cr); err != nil || cr.Choices[0].Text != greedyText("ab", 3, 0) {
		t.Errorf("%d %+v %v", res.StatusCode, cr, err)
	}
}
