// Package reqfuzz holds the fuzz target of serve's HTTP request decoding
// (FuzzRequests in reqfuzz_test.go). It is a package of its own so that
// `go test -fuzz` instruments only serve and what serve needs, not the
// OpenAI client library serve's own tests use, whose instrumented build
// takes minutes and gigabytes.
package reqfuzz
