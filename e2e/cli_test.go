package e2e

import (
	"strings"
	"testing"
)

// subcommands are the commands the contract names, plus chat.
var subcommands = []string{"plan", "train", "eval", "generate", "chat", "serve", "finetune", "export", "import", "bench"}

func TestHelpExitsZero(t *testing.T) {
	for _, c := range subcommands {
		for _, h := range []string{"--help", "-h", "-help"} {
			r := ok(t, c, h)
			if !strings.Contains(r.stdout+r.stderr, "usage") {
				t.Errorf("moe %s %s prints no usage:\n%v", c, h, r)
			}
		}
	}
	for _, k := range []string{"gemm", "train", "generate"} {
		ok(t, "bench", k, "--help")
	}
	r := ok(t, "help")
	for _, c := range subcommands {
		if !strings.Contains(r.stdout, c) {
			t.Errorf("moe help does not list %s:\n%s", c, r.stdout)
		}
	}
	ok(t, "--help")
	ok(t, "help", "plan")
}

func TestBadUsageExitsTwo(t *testing.T) {
	usage(t)
	usage(t, "no-such-command")
	for _, c := range subcommands {
		usage(t, c, "--no-such-flag")
		usage(t, c, "-no-such-flag=1")
	}
	usage(t, "bench", "no-such-kind")
	usage(t, "bench", "gemm", "--m", "zero", "--n", "1", "--k", "1")
	usage(t, "plan")                       // no CONFIG
	usage(t, "plan", "tiny", "gpt4")       // two CONFIGs
	usage(t, "plan", "tiny", "--mfu", "x") // not a number
	usage(t, "plan", "tiny", "--gpu", "v100")
	usage(t, "train", "--config", "tiny", "--out", t.TempDir()) // no data
	usage(t, "train", "--config", "tiny", "--data", "x.txt")    // no out
	usage(t, "train", "--config", "tiny", "--data", "x.txt", "--out", t.TempDir(), "--steps", "-1")
	usage(t, "eval", "--data", "x.txt", "--json") // no model
	usage(t, "generate", "--prompt", "x")         // no model
	usage(t, "export", "--model", "x")            // no out
	usage(t, "import", "--out", t.TempDir())      // no input
	usage(t, "serve")                             // no model
	usage(t, "finetune", "--model", "x", "--data", "x.jsonl")
}

func TestFailuresAreOneLine(t *testing.T) {
	dir := t.TempDir()
	corpus := testdata(t, "corpus.txt")
	micro := testdata(t, "micro.json")
	missing := dir + "/missing.txt"
	fails(t, []string{"no-such-preset"}, "plan", "no-such-preset")
	fails(t, []string{"model_type"}, "plan", writeFile(t, dir, "bert.json", `{"model_type":"bert","hidden_size":8}`))
	fails(t, []string{"json"}, "plan", writeFile(t, dir, "broken.json", `{"model_type":`))
	fails(t, []string{"missing.txt"}, append([]string{"train", "--config", micro, "--data", missing, "--out", dir + "/r1"}, trainArgs()...)...)
	// The same without --quiet: still one line (logs must not come first).
	fails(t, []string{"missing.txt"}, "train", "--config", micro, "--data", missing, "--out", dir+"/r1b", "--steps", "1")
	fails(t, []string{"epochs"}, append([]string{"train", "--config", micro, "--data", "c=" + corpus + "@0", "--out", dir + "/r2"}, trainArgs()...)...)
	fails(t, []string{"seq-len"}, "train", "--config", micro, "--data", corpus, "--out", dir+"/r3", "--seq-len", "1000", "--quiet")
	fails(t, []string{"vocab"}, append([]string{"train", "--config", micro, "--data", corpus, "--out", dir + "/r4", "--vocab-size", "100000"}, trainArgs()...)...)
	// A preset far too big to train here fails with a message, not a crash.
	fails(t, []string{"memory"}, "train", "--config", "gpt4", "--data", corpus, "--out", dir+"/r5", "--steps", "1")
	fails(t, []string{"no-such-run"}, "eval", "--model", dir+"/no-such-run", "--data", corpus, "--json")
	fails(t, []string{"no-such-run"}, "generate", "--model", dir+"/no-such-run", "--prompt", "x")
	fails(t, []string{"no-such-run"}, "export", "--model", dir+"/no-such-run", "--out", dir+"/x.gguf")
	fails(t, []string{"no-such.gguf"}, "import", dir+"/no-such.gguf", "--out", dir+"/imp")
	fails(t, []string{"no-such-run"}, "serve", "--model", dir+"/no-such-run", "--addr", "127.0.0.1:0")
	fails(t, []string{"no-such-run"}, "bench", "generate", "--model", dir+"/no-such-run", "--json")
}

func TestFlagSpellingsAndOrder(t *testing.T) {
	// -x, --x, -x=v, --x=v, and flags after the positional argument.
	want := jsonObject(t, ok(t, "plan", "tiny", "--json", "--gpus", "8").stdout)
	for _, args := range [][]string{
		{"plan", "-json", "-gpus", "8", "tiny"},
		{"plan", "--json", "--gpus=8", "tiny"},
		{"plan", "-gpus=8", "tiny", "-json"},
	} {
		got := jsonObject(t, ok(t, args...).stdout)
		if number(t, got, "total_params") != number(t, want, "total_params") || number(t, got, "gpus") != 8 {
			t.Errorf("moe %v: gpus %v total %v, want 8 and %v", args, got["gpus"], got["total_params"], want["total_params"])
		}
	}
}
