package trainer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/spot"
)

// honestRound trains one round as a node does (segment roots, evidence)
// on a small MLP and returns the update, what the peer keeps to answer a
// challenge and the base. opts train the round on another engine
// (WithEngine).
type honestRound struct {
	spec   runspec.Spec
	set    *data.Set
	base   []float32
	u      *consensus.Update
	starts []Snapshot
	final  Snapshot
	res    []float32 // the residual carried into the encoding
	kept   []float32 // the residual the encoding left
	peer   PeerID
	// blocks is the residual blocks the tests' challenger opens: two that
	// hold coordinates the payload sends, one that holds none, and the
	// last, shorter one.
	blocks []int
}

func newHonestRound(t *testing.T, optimizer string, opts ...Option) *honestRound {
	t.Helper()
	spec := runspec.Default()
	spec.Model = runspec.Model{Kind: "mlp", Hidden: []int{16}}
	spec.Data.Source = "synthetic"
	spec.Inner.Steps, spec.Inner.Batch, spec.Inner.Optimizer = 12, 8, optimizer
	spec.Verify.Segment = 5 // 3 segments: 5, 5, 2 steps
	spec = spec.WithFounders("12D3KooWtest")
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	set := data.Synthetic(1, 512, 16)
	g, _ := Genesis(spec)
	hr := &honestRound{spec: spec, set: set, base: g.Theta, peer: "12D3KooWtest"}
	w, starts, final, err := TrainRound(context.Background(), spec, &consensus.TrainRequest{Theta: g.Theta, Seed: RoundSeed(spec, 0, hr.peer), Shard: ShardOf(spec, hr.peer)}, set.Train, opts...)
	if err != nil {
		t.Fatal(err)
	}
	hr.u, hr.starts, hr.final = &consensus.Update{Round: 0, Segments: w.Segments}, starts, final
	hr.res = make([]float32, len(g.Theta))
	for i := range hr.res {
		hr.res[i] = float32(i%7) * 1e-4 // a residual carried from earlier rounds
	}
	payload, out, err := Link(spec, g.Theta, hr.final.Params, hr.res)
	if err != nil {
		t.Fatal(err)
	}
	hr.u.ResidualIn, hr.u.Payload, hr.u.ResidualOut = ResidualRoot(spec, hr.res), payload, ResidualRoot(spec, out)
	hr.kept = out

	n, bs := ResidualBlocks(spec, len(hr.base)), spec.Verify.ResidualBlock
	if len(hr.base)%bs == 0 {
		t.Fatalf("%d parameters fill whole blocks of %d: the tests want a shorter last block", len(hr.base), bs)
	}
	s := hr.decode(t, payload)
	sends := func(b int) bool {
		return slices.ContainsFunc(s.Idx, func(i uint32) bool { return int(i)/bs == b })
	}
	quiet := -1
	for b := range n {
		if !sends(b) {
			quiet = b
			break
		}
	}
	hr.blocks = []int{int(s.Idx[0]) / bs, int(s.Idx[len(s.Idx)/2]) / bs, quiet, n - 1}
	slices.Sort(hr.blocks)
	hr.blocks = slices.Compact(hr.blocks)
	if len(hr.blocks) != 4 || quiet < 0 {
		t.Fatalf("blocks %v (sent coordinates %v): not the mix the tests want", hr.blocks, s.Idx)
	}
	hr.spec.Verify.Openings = len(hr.blocks)
	return hr
}

// decode decodes a payload of hr's size.
func (hr *honestRound) decode(t *testing.T, payload []byte) *compress.Sparse {
	t.Helper()
	dec, err := compress.NewDecoder(len(hr.base))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	s, err := dec.Decode(payload)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// open is the openings of blocks of residuals in and out, as the accused
// serves them.
func (hr *honestRound) open(t *testing.T, in, out []float32, blocks []int) []Opening {
	t.Helper()
	ops, err := Open(hr.spec, in, out, blocks)
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

// evidence is hr's honest answer to a challenge that opens hr.blocks, with
// its final state (light) in runs with a tolerance.
func (hr *honestRound) evidence(t *testing.T) Evidence {
	t.Helper()
	ev := Evidence{Openings: hr.open(t, hr.res, hr.kept, hr.blocks)}
	if hr.spec.Verify.Tolerance > 0 {
		l := hr.final.Light()
		ev.Final = &l
	}
	return ev
}

func (hr *honestRound) replayer(t *testing.T) Replayer {
	t.Helper()
	r, err := NewReplayer(hr.spec, 0, hr.peer, hr.set.Train)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (hr *honestRound) judge(t *testing.T, u *consensus.Update, ev Evidence) error {
	t.Helper()
	err := Judge(hr.spec, hr.base, u, hr.blocks, ev, hr.replayer(t))
	if err != nil && !errors.Is(err, ErrChallenge) {
		t.Fatalf("judge could not run: %v", err)
	}
	return err
}

// check is Check with the answer ev carries, failing the test when the
// checker itself fails.
func (hr *honestRound) check(t *testing.T, u *consensus.Update, ev Evidence) Finding {
	t.Helper()
	f, err := Check(hr.spec, hr.base, u, hr.blocks, ev, hr.replayer(t), func(int) *consensus.Answer { return ev.Answer })
	if err != nil {
		t.Fatalf("check could not run: %v", err)
	}
	return f
}

// clone is a copy of hr's update with its own roots.
func (hr *honestRound) clone() *consensus.Update {
	u := *hr.u
	u.Segments = slices.Clone(hr.u.Segments)
	return &u
}

// encodeWith is hr's round committed by a peer that encoded the final
// state with the residual enc carried in while committing to the honest
// one (hr.res), and that commits to the residual that follows from its
// payload and the committed residual (v less what was sent): only the
// payload's selection and quantization can then be wrong on an opened
// block. It returns the update and the peer's openings of hr.blocks.
func (hr *honestRound) encodeWith(t *testing.T, enc []float32) (*consensus.Update, Evidence) {
	t.Helper()
	payload, _, err := Link(hr.spec, hr.base, hr.final.Params, enc)
	if err != nil {
		t.Fatal(err)
	}
	s := hr.decode(t, payload)
	kept := make([]float32, len(hr.base))
	for i := range kept {
		kept[i] = (hr.base[i] - hr.final.Params[i]) + hr.res[i]
	}
	for j, i := range s.Idx {
		kept[i] -= s.Val[j]
	}
	u := hr.clone()
	u.Payload, u.ResidualOut = payload, ResidualRoot(hr.spec, kept)
	return u, Evidence{Openings: hr.open(t, hr.res, kept, hr.blocks)}
}

// TestJudgeHonestPasses re-executes an honest round, with SGD and with
// AdamW (optimizer state in the snapshots), and checks its payload on the
// tests' blocks, on blocks drawn as a challenger draws them, and on every
// block: each passes, resting on the last segment, and no step hashes are
// asked for.
func TestJudgeHonestPasses(t *testing.T) {
	for _, opt := range []string{OptSGD, OptAdamW} {
		hr := newHonestRound(t, opt)
		n := ResidualBlocks(hr.spec, len(hr.base))
		all := make([]int, n)
		for b := range all {
			all[b] = b
		}
		drawn := spot.Blocks(Hash{1}, Hash{2}, "12D3KooWchallenger", n, runspec.Default().Verify.Openings, nil)
		for _, blocks := range [][]int{hr.blocks, drawn, all} {
			ev := Evidence{Openings: hr.open(t, hr.res, hr.kept, blocks)}
			asked := 0
			f, err := Check(hr.spec, hr.base, hr.u, blocks, ev, hr.replayer(t), func(int) *consensus.Answer { asked++; return nil })
			if err != nil || f.Fault != consensus.FaultNone || f.Segment != hr.spec.Segments()-1 || asked != 0 {
				t.Errorf("%s: honest round on blocks %v: %s, %v (step hashes asked %d times)", opt, blocks, brief(f), err, asked)
			}
			if err := Judge(hr.spec, hr.base, hr.u, blocks, ev, hr.replayer(t)); err != nil {
				t.Errorf("%s: Judge of an honest round on blocks %v: %v", opt, blocks, err)
			}
		}
	}
}

// TestJudgeCatchesEachLie fails every way of misreporting a round, with
// the fault and the segment a challenger names (no step hashes come: a
// missed root is then the accused's silence).
func TestJudgeCatchesEachLie(t *testing.T) {
	hr := newHonestRound(t, OptAdamW)
	S := hr.spec.Segments()
	bs := hr.spec.Verify.ResidualBlock
	sent := hr.decode(t, hr.u.Payload)
	// firstSent is the first coordinate the payload sends in an opened
	// block, loudest the one of largest |v| there, quiet the first it
	// does not send in the first opened block.
	v := func(i int) float32 { return (hr.base[i] - hr.final.Params[i]) + hr.res[i] }
	opened := func(i int) bool { return slices.Contains(hr.blocks, i/bs) }
	firstSent, loudest := -1, -1
	for _, i := range sent.Idx {
		if !opened(int(i)) {
			continue
		}
		if firstSent < 0 {
			firstSent = int(i)
		}
		if loudest < 0 || abs(v(int(i))) > abs(v(loudest)) {
			loudest = int(i)
		}
	}
	quiet := hr.blocks[0] * bs
	for slices.Contains(sent.Idx, uint32(quiet)) {
		quiet++
	}
	if firstSent < 0 || firstSent == loudest || quiet/bs != hr.blocks[0] {
		t.Fatalf("blocks %v, sent %v: no two sent coordinates opened", hr.blocks, sent.Idx)
	}
	// The construction of encodeWith, applied honestly, is the honest
	// update: what the lies below change is theirs alone.
	if u, ev := hr.encodeWith(t, hr.res); u.ResidualOut != hr.u.ResidualOut || hr.judge(t, u, ev) != nil {
		t.Fatal("encodeWith with the committed residual is not the honest update")
	}
	// encoded is the residual hr.res with coordinate i set to x, as a
	// cheater encodes with.
	encoded := func(i int, x float32) []float32 {
		r := slices.Clone(hr.res)
		r[i] = x
		return r
	}

	withRoot := func(seg int, s Snapshot) func() (*consensus.Update, Evidence) {
		return func() (*consensus.Update, Evidence) {
			u := hr.clone()
			u.Segments[seg] = s.Hash()
			return u, hr.evidence(t)
		}
	}
	forged := hr.starts[1]
	forged.Params = slices.Clone(forged.Params)
	forged.Params[0] += 1e-3
	optAltered := hr.starts[2]
	optAltered.Opt = map[string][]float32{}
	for k, b := range hr.starts[2].Opt {
		optAltered.Opt[k] = slices.Clone(b)
		optAltered.Opt[k][1] *= 2
	}
	relinked := func(far func(i int) float32) func() (*consensus.Update, Evidence) {
		return func() (*consensus.Update, Evidence) {
			fin := make([]float32, len(hr.base))
			for i := range fin {
				fin[i] = far(i)
			}
			payload, out, err := Link(hr.spec, hr.base, fin, hr.res)
			if err != nil {
				t.Fatal(err)
			}
			u := hr.clone()
			u.Payload, u.ResidualOut = payload, ResidualRoot(hr.spec, out)
			return u, Evidence{Openings: hr.open(t, hr.res, out, hr.blocks)}
		}
	}
	// keptAltered commits to a residual kept that differs from what the
	// encoding left at coordinate i, and opens it.
	keptAltered := func(i int) func() (*consensus.Update, Evidence) {
		return func() (*consensus.Update, Evidence) {
			out := slices.Clone(hr.kept)
			out[i] += 1e-3
			u := hr.clone()
			u.ResidualOut = ResidualRoot(hr.spec, out)
			return u, Evidence{Openings: hr.open(t, hr.res, out, hr.blocks)}
		}
	}
	honest := func() (*consensus.Update, Evidence) { return hr.u, hr.evidence(t) }
	tampered := func(edit func(ops []Opening) []Opening) func() (*consensus.Update, Evidence) {
		return func() (*consensus.Update, Evidence) {
			ev := hr.evidence(t)
			ev.Openings = edit(ev.Openings)
			return hr.u, ev
		}
	}
	other := 0 // a block the challenger does not open
	for slices.Contains(hr.blocks, other) {
		other++
	}

	for _, tc := range []struct {
		name   string
		lie    func() (*consensus.Update, Evidence)
		peer   PeerID // whose batches the challenger re-executes; "" hr's
		fault  consensus.Fault
		seg    int
		reason string // in the finding's reason, when the check that must catch it is one
	}{
		{"made-up first root", func() (*consensus.Update, Evidence) {
			u := hr.clone()
			u.Segments[0][3] ^= 1
			return u, hr.evidence(t)
		}, "", consensus.FaultSilent, 0, ""},
		{"made-up middle root", func() (*consensus.Update, Evidence) {
			u := hr.clone()
			u.Segments[1][0] ^= 1
			return u, hr.evidence(t)
		}, "", consensus.FaultSilent, 1, ""},
		{"made-up last root", func() (*consensus.Update, Evidence) {
			u := hr.clone()
			u.Segments[S-1][0] ^= 1
			return u, hr.evidence(t)
		}, "", consensus.FaultSilent, S - 1, ""},
		{"root of a forged state", withRoot(0, forged), "", consensus.FaultSilent, 0, ""},
		{"root of a state with its optimizer state altered", withRoot(1, optAltered), "", consensus.FaultSilent, 1, ""},
		{"trained on another peer's batches", honest, "12D3KooWother", consensus.FaultSilent, 0, ""},
		{"one root short", func() (*consensus.Update, Evidence) {
			u := hr.clone()
			u.Segments = u.Segments[:S-1]
			return u, hr.evidence(t)
		}, "", consensus.FaultSilent, S - 1, ""},

		// The payload against the committed final state.
		{"payload scaled ×50", relinked(func(i int) float32 {
			return hr.base[i] - 50*(hr.base[i]-hr.final.Params[i]) // base − far = 50 × (base − final)
		}), "", consensus.FaultLink, S - 1, ""},
		{"payload of a state past the base", relinked(func(i int) float32 {
			return hr.base[i] + (hr.base[i] - hr.final.Params[i])
		}), "", consensus.FaultLink, S - 1, ""},
		{"payload sends a coordinate below the threshold", func() (*consensus.Update, Evidence) {
			return hr.encodeWith(t, encoded(quiet, hr.res[quiet]+1))
		}, "", consensus.FaultLink, S - 1, "below the threshold"},
		{"payload withholds a coordinate above the threshold", func() (*consensus.Update, Evidence) {
			return hr.encodeWith(t, encoded(firstSent, -(hr.base[firstSent]-hr.final.Params[firstSent])))
		}, "", consensus.FaultLink, S - 1, "above the threshold"},
		{"payload sends a coordinate with the wrong sign", func() (*consensus.Update, Evidence) {
			return hr.encodeWith(t, encoded(loudest, -2*v(loudest)+hr.res[loudest]))
		}, "", consensus.FaultLink, S - 1, "quantizes"},
		{"residual out misreported", func() (*consensus.Update, Evidence) {
			u := hr.clone()
			u.ResidualOut[0] ^= 1
			return u, hr.evidence(t)
		}, "", consensus.FaultLink, S - 1, "not the committed"},
		{"residual kept altered in an opened block", keptAltered(hr.blocks[2]*bs + 1), "", consensus.FaultLink, S - 1, "not the committed"},
		{"residual kept altered in the last, shorter block", keptAltered(len(hr.base) - 1), "", consensus.FaultLink, S - 1, "not the committed"},

		// Openings that do not hold are no answer.
		{"nothing opened", tampered(func([]Opening) []Opening { return nil }), "", consensus.FaultSilent, S - 1, ""},
		{"a block missing", tampered(func(ops []Opening) []Opening { return ops[:len(ops)-1] }), "", consensus.FaultSilent, S - 1, ""},
		{"another block opened", tampered(func(ops []Opening) []Opening {
			blocks := slices.Clone(hr.blocks)
			blocks[1] = other
			return hr.open(t, hr.res, hr.kept, blocks)
		}), "", consensus.FaultSilent, S - 1, ""},
		{"blocks out of order", tampered(func(ops []Opening) []Opening { slices.Reverse(ops); return ops }), "", consensus.FaultSilent, S - 1, ""},
		{"a truncated block", tampered(func(ops []Opening) []Opening {
			last := len(ops) - 1
			ops[last].In = ops[last].In[:len(ops[last].In)-1]
			return ops
		}), "", consensus.FaultSilent, S - 1, "values, want"},
		{"a tampered value", tampered(func(ops []Opening) []Opening {
			ops[1].In = slices.Clone(ops[1].In)
			ops[1].In[3] += 1e-3
			return ops
		}), "", consensus.FaultSilent, S - 1, ""},
		{"a bad path", tampered(func(ops []Opening) []Opening { ops[0].InPath[0][0] ^= 1; return ops }), "", consensus.FaultSilent, S - 1, ""},
		{"a path cut short", tampered(func(ops []Opening) []Opening { ops[2].InPath = ops[2].InPath[1:]; return ops }), "", consensus.FaultSilent, S - 1, ""},
		{"residual in not the committed one", func() (*consensus.Update, Evidence) {
			in := slices.Clone(hr.res)
			in[hr.blocks[1]*bs] += 1
			return hr.u, Evidence{Openings: hr.open(t, in, hr.kept, hr.blocks)}
		}, "", consensus.FaultSilent, S - 1, ""},
	} {
		u, ev := tc.lie()
		r := hr.replayer(t)
		if tc.peer != "" {
			var err error
			if r, err = NewReplayer(hr.spec, 0, tc.peer, hr.set.Train); err != nil {
				t.Fatal(err)
			}
		}
		f, err := Check(hr.spec, hr.base, u, hr.blocks, ev, r, func(int) *consensus.Answer { return nil })
		switch {
		case err != nil:
			t.Errorf("%s: the check failed: %v", tc.name, err)
		case f.Fault != tc.fault || f.Segment != tc.seg || !strings.Contains(f.Reason, tc.reason):
			t.Errorf("%s: %s fault on segment %d (%s), want %s on %d (%q)", tc.name, f.Fault, f.Segment, f.Reason, tc.fault, tc.seg, tc.reason)
		case f.Fault == consensus.FaultLink && (len(f.Keep) != 1 || !f.Keep[0].IsLight() || f.Keep[0].Hash() != u.Segments[S-1] || len(f.KeepOpenings) != len(hr.blocks)):
			t.Errorf("%s: a link fault keeps %d states and %d openings, want the light final state and the openings", tc.name, len(f.Keep), len(f.KeepOpenings))
		}
		if err := Judge(hr.spec, hr.base, u, hr.blocks, ev, r); !errors.Is(err, ErrChallenge) {
			t.Errorf("%s: Judge = %v, want a failed challenge", tc.name, err)
		}
	}

	// The limit of sampling: a residual kept that is wrong only in a
	// block nobody opened passes this challenge. Each challenger opens
	// verify.openings blocks of its own draw (spot.Blocks), so a lie in a
	// fraction q of the blocks escapes one challenger with probability
	// about (1−q)^openings; the residual it left is carried into the next
	// round's encoding, where it is opened again.
	if slices.Contains(hr.blocks, other) {
		t.Fatal("the unopened block is opened")
	}
	u, ev := keptAltered(other*bs + 1)()
	if err := hr.judge(t, u, ev); err != nil {
		t.Errorf("a residual kept altered in an unopened block: %v (the check opens it after all?)", err)
	}
}

func abs(x float32) float32 { return max(x, -x) }

// brief is a finding for a test's message: what it names and keeps,
// without the states' values.
func brief(f Finding) string {
	steps := make([]int64, len(f.Keep))
	for i, s := range f.Keep {
		steps[i] = s.Step
	}
	return fmt.Sprintf("%s fault, segment %d, step %d, states kept at steps %v, %d openings kept, answer %t (%s)",
		f.Fault, f.Segment, f.Step, steps, len(f.KeepOpenings), f.Answer != nil, f.Reason)
}

// TestSnapshotResumesBitExactly: k steps, a snapshot, a fresh trainer set
// to it and k more steps land where 2k straight steps do.
func TestSnapshotResumesBitExactly(t *testing.T) {
	hr := newHonestRound(t, OptAdamW)
	r, _ := NewReplayer(hr.spec, 0, hr.peer, hr.set.Train)
	st, err := r.Start(hr.base)
	if err != nil {
		t.Fatal(err)
	}
	straight, _ := r.Run(st, 10)
	half, _ := r.Run(st, 5)
	resumed, _ := r.Run(half, 5)
	if straight.Hash() != resumed.Hash() || straight.Hash() != hr.u.Segments[1] {
		t.Fatal("resuming from a snapshot is not bit-exact")
	}
}
