package infer

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

var (
	simWarm  = flag.Int("sim.warm", 64, "TestSpecPolicySimulated: steps before the measured ones")
	simSteps = flag.Int("sim.steps", 256, "TestSpecPolicySimulated: measured steps per run")
)

// specScenario is a simulated decoding workload for SpecPolicy: n
// sequences, a verification pass of m rows costing pass + perRow·m
// seconds, a batched draft pass costing draft + draftRow·n, and each
// proposal accepted with probability alpha (the first rejection ends a
// sequence's run), or, with alpha2 > 0, the first with alpha and the ones
// after an accepted proposal with alpha2 (a draft that is right about a
// phrase tends to stay right).
type specScenario struct {
	n               int
	pass, perRow    float64
	draft, draftRow float64
	alpha, alpha2   float64
	shadow          bool    // a prompt-lookup drafter: shadow counts in plain steps
	pause           float64 // share of steps another process delays by 20 plain steps
}

func (c specScenario) verify(m int) float64 { return c.pass + c.perRow*float64(m) }

// accept is the probability that the proposal at position i (0-based) is
// accepted when all before it were.
func (c specScenario) accept(i int) float64 {
	if i > 0 && c.alpha2 > 0 {
		return c.alpha2
	}
	return c.alpha
}

// tokens is the expected tokens a sequence commits in a step of K = k.
func (c specScenario) tokens(k int) float64 {
	tok, surv := 1.0, 1.0
	for i := range k {
		surv *= c.accept(i)
		tok += surv
	}
	return tok
}

// bestRate is the tokens per second of the best fixed K (K = 0: plain) by
// the expectation, and that K.
func (c specScenario) bestRate(maxK int) (float64, int) {
	stall := 20 * c.pause * c.verify(c.n) // the pauses' mean time per step
	best, bestK := float64(c.n)/(c.verify(c.n)+stall), 0
	for k := 1; k <= maxK; k++ {
		tok := float64(c.n) * c.tokens(k)
		if r := tok / (float64(k)*(c.draft+c.draftRow*float64(c.n)) + c.verify(c.n*(k+1)) + stall); r > best {
			best, bestK = r, k
		}
	}
	return best, bestK
}

// simulate runs the policy over warm+steps steps of c and returns its
// tokens per second over the last steps.
func simulate(pol *SpecPolicy, c specScenario, warm, steps int, seed uint64) float64 {
	r := rand.New(rand.NewPCG(seed, 7))
	var tokens, secs float64
	for i := range warm + steps {
		k := pol.K()
		st := SpecStep{K: k, Seqs: c.n, Rows: c.n * (k + 1), Timed: true}
		for range c.n {
			acc := 0
			for acc < k && r.Float64() < c.accept(acc) {
				acc++
			}
			st.Proposed += k
			st.Accepted += acc
			if k > 0 {
				st.Runs = append(st.Runs, DraftRun{Proposed: k, Accepted: acc})
			}
			st.Tokens += acc + 1
			if k == 0 && c.shadow {
				st.ShadowAsked++
				st.ShadowProposed++
				if r.Float64() < c.alpha {
					st.ShadowAccepted++
				}
			}
		}
		if k > 0 {
			st.DraftSeconds = float64(k) * (c.draft + c.draftRow*float64(c.n))
		}
		st.VerifySeconds = c.verify(st.Rows)
		if r.Float64() < c.pause {
			st.VerifySeconds += 20 * c.verify(c.n)
		}
		pol.Observe(st)
		if i < warm {
			continue
		}
		tokens += float64(st.Tokens)
		secs += st.DraftSeconds + st.VerifySeconds
	}
	return tokens / secs
}

// TestSpecPolicySimulated runs the policy on simulated workloads, from
// ones where speculation pays well to ones where it never does (batched
// plain decoding already amortizing the weight reads, low acceptance): it
// must deliver at least 98% of plain decoding's tokens per second
// everywhere, and most of the best fixed K's gain where speculation pays.
func TestSpecPolicySimulated(t *testing.T) {
	const ms = 1e-3
	for _, c := range []specScenario{
		{n: 1, pass: 2 * ms, perRow: 0.4 * ms, draft: 0.2 * ms, draftRow: 0.04 * ms, alpha: 0.75},
		{n: 4, pass: 2 * ms, perRow: 0.4 * ms, draft: 0.2 * ms, draftRow: 0.04 * ms, alpha: 0.75},
		{n: 4, pass: 2 * ms, perRow: 0.4 * ms, draft: 0.2 * ms, draftRow: 0.04 * ms, alpha: 0.3},
		{n: 1, pass: 1 * ms, perRow: 1 * ms, draft: 0.1 * ms, draftRow: 0.1 * ms, alpha: 0.67},
		{n: 4, pass: 1 * ms, perRow: 1 * ms, draft: 0.1 * ms, draftRow: 0.1 * ms, alpha: 0.67},
		{n: 4, pass: 1 * ms, perRow: 1 * ms, draft: 0.1 * ms, draftRow: 0.1 * ms, alpha: 0.75},
		{n: 1, pass: 3 * ms, perRow: 0.1 * ms, draft: 0.3 * ms, draftRow: 0.03 * ms, alpha: 0.9},
		{n: 1, pass: 3 * ms, perRow: 0.1 * ms, alpha: 0.05, shadow: true},
		{n: 4, pass: 3 * ms, perRow: 0.5 * ms, alpha: 0.2, shadow: true},
		{n: 1, pass: 3 * ms, perRow: 0.1 * ms, alpha: 0.6, shadow: true},
		{n: 4, pass: 1 * ms, perRow: 1 * ms, draft: 0.1 * ms, draftRow: 0.1 * ms, alpha: 0.75, pause: 0.03},
		{n: 1, pass: 2 * ms, perRow: 0.4 * ms, draft: 0.2 * ms, draftRow: 0.04 * ms, alpha: 0.75, pause: 0.03},
		// An MoE target whose verification of K+1 rows costs far more
		// than a plain step (the expert union), with acceptance that
		// rises after the first proposal: only long drafts pay, which an
		// i.i.d. acceptance model would not see.
		{n: 1, pass: 0.3 * ms, perRow: 0.25 * ms, draft: 0.05 * ms, alpha: 0.8, alpha2: 0.95},
		{n: 1, pass: 0.3 * ms, perRow: 0.3 * ms, draft: 0.05 * ms, alpha: 0.75, alpha2: 0.95},
		{n: 4, pass: 1 * ms, perRow: 0.3 * ms, draft: 0.1 * ms, draftRow: 0.02 * ms, alpha: 0.7, alpha2: 0.95},
	} {
		t.Run(fmt.Sprintf("n%d_pass%g_row%g_a%g_%g_pause%g", c.n, c.pass/ms, c.perRow/ms, c.alpha, c.alpha2, c.pause), func(t *testing.T) {
			best, bestK := c.bestRate(8)
			plain, _ := c.bestRate(0)
			var sum float64
			const seeds = 4
			for s := range seeds {
				sum += simulate(NewSpecPolicy(SpecPolicyOptions{K: 4}), c, *simWarm, *simSteps, uint64(s))
			}
			got := sum / seeds
			t.Logf("policy %.0f tok/s, plain %.0f, best K=%d %.0f: policy/plain %.3f, policy/best %.3f", got, plain, bestK, best, got/plain, got/best)
			if got < 0.98*plain {
				t.Errorf("policy delivers %.3f of plain decoding's rate", got/plain)
			}
			if best > 1.2*plain && got < plain+0.6*(best-plain) {
				t.Errorf("policy gains %.0f tok/s of the best K's %.0f over plain", got-plain, best-plain)
			}
			if c.alpha2 > 0 && *simWarm >= 64 && got < 0.95*best {
				t.Errorf("acceptance that rises after the first proposal: policy delivers %.3f of the best K's rate", got/best)
			}
		})
	}
}

// TestSpecPolicyPositionalAcceptance checks the expected tokens per step
// the policy derives from the acceptance at each draft position against
// the exact expectation of a draft whose first proposal is accepted with
// probability 0.6 and every later one (after an accepted proposal) with
// 0.95, where one acceptance rate for all positions (the i.i.d. model)
// is far off.
func TestSpecPolicyPositionalAcceptance(t *testing.T) {
	c := specScenario{alpha: 0.6, alpha2: 0.95}
	pol := NewSpecPolicy(SpecPolicyOptions{K: 6, Fixed: true})
	r := rand.New(rand.NewPCG(3, 4))
	var proposed, accepted int
	for range 4000 {
		acc := 0
		for acc < 6 && r.Float64() < c.accept(acc) {
			acc++
		}
		proposed += 6
		accepted += acc
		pol.Observe(SpecStep{K: 6, Seqs: 1, Proposed: 6, Accepted: acc, Tokens: acc + 1, Rows: 7, VerifySeconds: 1e-3, Timed: true})
	}
	a := float64(accepted) / float64(proposed)
	for k := 1; k <= 6; k++ {
		got, want := pol.expectedTokens(k), c.tokens(k)
		iid := (1 - math.Pow(a, float64(k+1))) / (1 - a)
		t.Logf("K=%d: expected tokens %.3f, exact %.3f, i.i.d. at the mean acceptance %.3f", k, got, want, iid)
		// The counts decay (about the last dozen steps weigh), so the
		// estimate is noisy; it must be close and closer than i.i.d.
		if math.Abs(got-want) > 0.25*want {
			t.Errorf("K=%d: expected tokens %.3f, want %.3f", k, got, want)
		}
	}
	if k := 6; math.Abs(pol.expectedTokens(k)-c.tokens(k)) >= math.Abs((1-math.Pow(a, float64(k+1)))/(1-a)-c.tokens(k)) {
		t.Errorf("the positional estimate is no closer than the i.i.d. model")
	}
}

// TestSpecPolicyProbeWaitCoversCatchUp checks that probes after a
// fallback come no oftener than the draft's catch-up allows: when
// catching up before a probe takes five plain steps' time whatever the
// plain steps before it (the prompts of requests that arrived meanwhile;
// the draft's own passes cost ~nothing here), the plain steps between
// probes must be at least that over probeShare, so that catch-ups take at
// most probeShare of plain decoding's time.
func TestSpecPolicyProbeWaitCoversCatchUp(t *testing.T) {
	const plain = 20e-3 // seconds per plain step of the batch
	const catchUp = 5 * plain
	pol := NewSpecPolicy(SpecPolicyOptions{K: 2})
	var probes []int
	plainRun := 0
	first := true
	for i := 0; i < 3000; i++ {
		k := pol.K()
		if k == 0 {
			plainRun++
			pol.Observe(SpecStep{K: 0, Seqs: 4, Tokens: 4, Rows: 4, VerifySeconds: plain, Timed: true})
			first = true
			continue
		}
		if first && plainRun > 0 {
			probes = append(probes, plainRun)
		}
		st := SpecStep{K: k, Seqs: 4, Proposed: 4 * k, Accepted: 0, Tokens: 4, Rows: 4 * (k + 1),
			DraftSeconds: 1e-6 * float64(k), VerifySeconds: 1.5 * plain, Timed: !first, CatchUp: first}
		if first {
			st.DraftSeconds = catchUp
		}
		first = false
		plainRun = 0
		pol.Observe(st)
	}
	if len(probes) < 2 {
		t.Fatalf("%d probes in 3000 steps; want the policy to keep probing, rarely", len(probes))
	}
	want := int(math.Ceil(catchUp / (probeShare * plain)))
	for i, n := range probes {
		if n < want {
			t.Errorf("probe %d after %d plain steps; a catch-up of %.0f plain steps needs ≥ %d", i+1, n, catchUp/plain, want)
		}
	}
	t.Logf("plain steps before each probe: %v", probes)
}

// runScenario is a whole short generation as a user runs it, for
// SpecPolicy: a prompt the draft must first catch up on, acceptance that
// changes after the first tokens (the first drafts after a prompt are
// often the worst; then the target settles into text the draft predicts
// well), timings with multiplicative noise and occasional stalls from
// other processes, and a draft that catches up on every token of the plain
// steps before it proposes again.
type runScenario struct {
	name                string
	pass, perRow, draft float64 // seconds: verification pass + per row; draft pass per proposal
	catchTok            float64 // seconds the draft takes per token it catches up on
	early               int     // tokens generated with the early acceptance
	earlyA1, earlyA2    float64 // acceptance then (first position; later ones)
	a1, a2              float64 // acceptance after
	gen, prompt         int
	noise, stall        float64 // log-normal σ of every timing; share of passes stalled 2×
	// An MoE target: a pass also reads expert seconds' worth of weights
	// for each routed expert its rows touch, of experts per layer (topK
	// each) in layers layers: the union of m rows, which stops growing
	// once they touch them all. The policy is given the matching
	// CostModel (cost) and each pass's touched count.
	expert                float64
	layers, experts, topK int
}

// touched is the expected number of routed experts (all layers) m rows
// pick.
func (c runScenario) touched(m int) float64 {
	if c.experts == 0 {
		return 0
	}
	q := 1 - math.Pow(1-float64(c.topK)/float64(c.experts), float64(m))
	return float64(c.layers*c.experts) * q
}

// cost is the CostModel of c's target in units of one expert's weights.
func (c runScenario) cost() CostModel {
	if c.experts == 0 {
		return CostModel{}
	}
	return CostModel{FixedWeights: c.pass / c.expert, ExpertWeights: 1, Layers: c.layers, Experts: c.experts, TopK: c.topK}
}

// run decodes gen tokens with policy pol (nil: K fixed at fixedK) and
// returns tokens per second.
func (c runScenario) run(pol *SpecPolicy, fixedK int, seed uint64) float64 {
	r := rand.New(rand.NewPCG(seed, 99))
	noisy := func(t float64) float64 {
		t *= math.Exp(c.noise * r.NormFloat64())
		if r.Float64() < c.stall {
			t *= 2
		}
		return t
	}
	tokens, secs := 0, 0.0
	behind := c.prompt
	for step := 0; tokens < c.gen; step++ {
		k := fixedK
		if pol != nil {
			k = pol.K()
		}
		st := SpecStep{K: k, Seqs: 1, Rows: k + 1, Timed: step > 0, Tokens: 1}
		a1, a2 := c.a1, c.a2
		if tokens < c.early {
			a1, a2 = c.earlyA1, c.earlyA2
		}
		if k > 0 {
			acc := 0
			for acc < k {
				a := a2
				if acc == 0 {
					a = a1
				}
				if r.Float64() >= a {
					break
				}
				acc++
			}
			st.Proposed, st.Accepted, st.Tokens = k, acc, acc+1
			st.Runs = []DraftRun{{Proposed: k, Accepted: acc}}
			st.DraftSeconds = noisy(float64(k) * c.draft)
			if behind > 2 {
				st.DraftSeconds += float64(behind) * c.catchTok
				st.Timed, st.CatchUp = false, step > 0
			}
			behind = 0
		} else {
			behind++
		}
		st.VerifySeconds = noisy(c.pass + c.perRow*float64(st.Rows) + c.expert*c.touched(st.Rows))
		st.Touched = int(math.Round(c.touched(st.Rows)))
		if pol != nil {
			pol.Observe(st)
		}
		tokens += st.Tokens
		secs += st.DraftSeconds + st.VerifySeconds
	}
	return float64(tokens) / secs
}

// TestSpecPolicyShortRuns runs the policy over whole short generations
// (runScenario) and compares it with plain decoding and the best fixed K,
// averaged over seeds: it must stay within 10% of plain where no K pays
// (the draft's catch-ups at the first attempt and the probes are most of
// that) and take at least half the best fixed K's gain where one does.
func TestSpecPolicyShortRuns(t *testing.T) {
	const ms = 1e-3
	for _, c := range []runScenario{
		// tiny (float32 MoE) and its distilled draft on the README prompt:
		// a verification of m rows costs ~0.4 + 0.2·m ms, a plain step
		// 0.6 ms; the first 15 tokens are drafted badly, then the target
		// loops.
		{name: "tiny-loop", pass: 0.4 * ms, perRow: 0.2 * ms, draft: 0.11 * ms, catchTok: 0.05 * ms,
			early: 15, earlyA1: 0.4, earlyA2: 0.6, a1: 0.9, a2: 0.98, gen: 220, prompt: 32, noise: 0.15, stall: 0.05},
		// tiny with today's kernels (2026-12-03): a plain step 0.46 ms, a
		// verification ~0.4 + 0.09·m ms (the experts' union saturates), the
		// draft's proposal 0.04 ms; bad first drafts, then the loop.
		{name: "tiny-loop-cheap-rows", pass: 0.4 * ms, perRow: 0.09 * ms, draft: 0.04 * ms, catchTok: 0.02 * ms,
			early: 15, earlyA1: 0.4, earlyA2: 0.6, a1: 0.93, a2: 0.97, gen: 220, prompt: 32, noise: 0.15, stall: 0.05},
		// tiny measured again (2026-12-03, later): a plain step 0.33 ms,
		// of which attention, embeddings and the LM head ~0.1 ms and each
		// of its 8 (4 layers × top-2 of 8) experts ~0.026 ms; a
		// verification of 6 rows 0.9 ms, of 9 rows 1.0 ms (the union of
		// experts saturates); the draft's proposal 0.035 ms; a greedy-
		// distilled draft, poor on the first 40 tokens, then right for
		// whole phrases. A line through two measured sizes prices 9 rows
		// ~1.4× 6 rows instead of ~1.1×: the policy must see that long
		// drafts pay.
		{name: "tiny-union", pass: 0.1 * ms, perRow: 0.02 * ms, expert: 0.0255 * ms, layers: 4, experts: 8, topK: 2,
			draft: 0.035 * ms, catchTok: 0.02 * ms, early: 40, earlyA1: 0.65, earlyA2: 0.8, a1: 0.9, a2: 0.99,
			gen: 220, prompt: 32, noise: 0.15, stall: 0.05},
		// the same target with steady, moderate acceptance.
		{name: "tiny-steady", pass: 0.4 * ms, perRow: 0.2 * ms, draft: 0.11 * ms, catchTok: 0.05 * ms,
			a1: 0.75, a2: 0.85, earlyA1: 0.75, earlyA2: 0.85, gen: 220, prompt: 32, noise: 0.15, stall: 0.05},
		// acceptance too low to pay.
		{name: "tiny-poor", pass: 0.4 * ms, perRow: 0.2 * ms, draft: 0.11 * ms, catchTok: 0.05 * ms,
			a1: 0.35, a2: 0.5, earlyA1: 0.35, earlyA2: 0.5, gen: 220, prompt: 32, noise: 0.15, stall: 0.05},
		// a cheap dense verification (bandwidth-bound rows) with good acceptance.
		{name: "dense-good", pass: 1 * ms, perRow: 0.05 * ms, draft: 0.05 * ms, catchTok: 0.02 * ms,
			a1: 0.8, a2: 0.9, earlyA1: 0.8, earlyA2: 0.9, gen: 200, prompt: 48, noise: 0.1, stall: 0.02},
	} {
		t.Run(c.name, func(t *testing.T) {
			const seeds = 100
			var plain, pol float64
			fixed := make([]float64, 9)
			for s := range seeds {
				plain += c.run(nil, 0, uint64(s))
				pol += c.run(NewSpecPolicy(SpecPolicyOptions{K: 4, Cost: c.cost()}), 0, uint64(s))
				for k := 1; k <= 8; k++ {
					fixed[k] += c.run(nil, k, uint64(s))
				}
			}
			best, bestK := plain, 0
			for k := 1; k <= 8; k++ {
				if fixed[k] > best {
					best, bestK = fixed[k], k
				}
			}
			t.Logf("policy %.2f× plain; best fixed K=%d %.2f×", pol/plain, bestK, best/plain)
			// A model draft that catches up on every plain token before a
			// probe (here 8% of a plain step per token) makes any attempt
			// cost a share of a short run: the floor is 0.9 of plain.
			if pol < 0.9*plain {
				t.Errorf("policy delivers %.3f of plain decoding's rate", pol/plain)
			}
			// Half the best fixed K's gain: a run of ~200 tokens spends a
			// good share of its steps finding K and the price of plain steps.
			if best > 1.2*plain && pol < plain+0.5*(best-plain) {
				t.Errorf("policy gains %.2f× of the best fixed K's %.2f×", pol/plain, best/plain)
			}
		})
	}
}

// TestSpecPolicyStartPlain checks StartPlain (prompt lookup): the policy
// starts with plain steps and speculates only once the drafter's unverified
// proposals say it would pay — never on text it cannot predict, and within
// a few steps of minShadow on text it predicts perfectly.
func TestSpecPolicyStartPlain(t *testing.T) {
	const plain = 1e-3
	for _, c := range []struct {
		hit        int
		maxFirst   int // the first speculative step no later than this (0: never)
		speculates bool
	}{{0, 0, false}, {1, minShadow + 2, true}} {
		pol := NewSpecPolicy(SpecPolicyOptions{K: 4, StartPlain: true})
		first := -1
		for i := 0; i < 200; i++ {
			k := pol.K()
			if k > 0 {
				if first < 0 {
					first = i
				}
				pol.Observe(SpecStep{K: k, Seqs: 1, Proposed: k, Accepted: k, Tokens: k + 1, Rows: k + 1,
					VerifySeconds: 1.2 * plain, Timed: true})
				continue
			}
			pol.Observe(SpecStep{K: 0, Seqs: 1, Tokens: 1, Rows: 1, VerifySeconds: plain, Timed: true,
				ShadowAsked: 1, ShadowProposed: 1, ShadowAccepted: c.hit})
		}
		if got := first >= 0; got != c.speculates || c.speculates && first > c.maxFirst {
			t.Errorf("shadow acceptance %d: first speculative step %d", c.hit, first)
		}
	}
}

// TestSpecPolicyVerifyTimeFit checks the price of an untried verification
// size on a tiny-like MoE (4 layers, top-2 of 8 experts; a pass costs
// 0.1 ms + 0.02 ms a row + 0.0255 ms per expert its rows touch): from
// plain steps and 6-row passes, with one 7-row pass slowed 30% by another
// process, 3 to 9 rows must be priced within 10% of their cost (12 rows,
// far beyond, within 15%), not by a line
// through the two largest sizes (which that one slow pass would make
// steep) nor through 1 and 6 rows (which overstates a union that
// saturates).
func TestSpecPolicyVerifyTimeFit(t *testing.T) {
	const ms = 1e-3
	c := runScenario{pass: 0.1 * ms, perRow: 0.02 * ms, expert: 0.0255 * ms, layers: 4, experts: 8, topK: 2}
	cost := func(m int) float64 { return c.pass + c.perRow*float64(m) + c.expert*c.touched(m) }
	p := NewSpecPolicy(SpecPolicyOptions{K: 5, Cost: c.cost()})
	obs := func(rows int, secs float64) {
		p.Observe(SpecStep{K: rows - 1, Seqs: 1, Rows: rows, Timed: true, Touched: int(math.Round(c.touched(rows))), VerifySeconds: secs})
	}
	for range 8 {
		obs(1, cost(1))
		obs(6, cost(6))
	}
	obs(7, 1.3*cost(7))
	for _, m := range []int{3, 8, 9, 12} {
		got, want := p.verifyTime(m), cost(m)
		t.Logf("%2d rows: priced %.3f ms, cost %.3f ms", m, got/ms, want/ms)
		if tol := 0.1 + 0.05*float64(m/12); math.Abs(got/want-1) > tol {
			t.Errorf("%d rows priced %.3f ms, cost %.3f ms", m, got/ms, want/ms)
		}
	}
}
