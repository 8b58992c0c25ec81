package trainer

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/engine"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/runspec"
)

// Attacks on the spot-check of commit 4c92575, each as the party that
// gains by it. A test that fails is a weakness the code has now; one that
// passes guards a defence that holds.

// linkWith is hr's round committed by a peer that encoded the honest work
// with its committed residual under params p rather than the run's: the
// payload and the residual it leaves are the honest encoder's under p.
func (hr *honestRound) linkWith(t *testing.T, p compress.Params) (*consensus.Update, Evidence) {
	t.Helper()
	spec := hr.spec
	spec.Compression = runspec.Compression{Fraction: p.Fraction, Bits: p.Bits, Chunk: p.Chunk}
	payload, out, err := Link(spec, hr.base, hr.final.Params, hr.res)
	if err != nil {
		t.Fatal(err)
	}
	u := hr.clone()
	u.Payload, u.ResidualOut = payload, ResidualRoot(hr.spec, out)
	return u, Evidence{Openings: hr.open(t, hr.res, out, hr.blocks)}
}

// TestAttackPayloadOffSpecPasses: the payload's k, bits and chunk are the
// accused's to choose. Nothing compares them with the run's compression
// (ValidateUpdate decodes with the model's size only; CheckRange
// re-quantizes with the frame's own bits, chunk and scales), so a payload
// that is not the run's encoding of the work passes the check: the dense
// exact delta (every coordinate, float32), or 8 bits at 40 % where the
// run sends 1 bit at 0.5 %. The accused sends far more than its share
// (and bypasses error feedback's delay) and is never caught.
//
// Fix: trainer.ValidateUpdate (run by the gossip validator and the engine)
// must refuse a payload whose len(Idx) != spec.CompressParams().K(D),
// Bits != spec.Compression.Bits, Chunk != spec.Compression.Chunk, or that
// carries no threshold (format 1/2: Threshold < 0).
func TestAttackPayloadOffSpecPasses(t *testing.T) {
	hr := newHonestRound(t, OptSGD)
	dec, err := compress.NewDecoder(len(hr.base))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for _, p := range []compress.Params{
		{Fraction: 1, Bits: 32, Chunk: 256},
		{Fraction: 0.4, Bits: 8, Chunk: 1},
	} {
		u, ev := hr.linkWith(t, p)
		_, verr := ValidateUpdate(hr.spec, u, dec)
		f := hr.check(t, u, ev)
		if verr == nil && f.Fault == consensus.FaultNone {
			t.Errorf("a payload encoded with %+v (the run's is %+v) is accepted and passes the check", p, hr.spec.Compression)
		}
	}
}

// TestAttackInflatedScaleIsADebt: a 1-bit scale is the mean magnitude of
// its chunk's sent values, which span the whole vector, so no sample of
// blocks bounds it from above (CheckRange bounds it from below by τ). A
// cheater that inflates it ×748 and keeps the residual that follows passes
// every draw; the inflation is then a debt in its committed residual,
// which consensus chains from round to round. One that hides the debt
// (commits the honest residual) lies on every block its payload sends
// from and is caught by nearly every draw.
func TestAttackInflatedScaleIsADebt(t *testing.T) {
	hr := newHonestRound(t, OptSGD)
	bs := hr.spec.Verify.ResidualBlock
	s := hr.decode(t, hr.u.Payload)
	if s.Bits != 1 {
		t.Fatalf("the default run sends %d bits", s.Bits)
	}
	enc := slices.Clone(hr.res)
	opened := 0
	for _, i := range s.Idx {
		if slices.Contains(hr.blocks, int(i)/bs) {
			opened++
			continue
		}
		v := (hr.base[i] - hr.final.Params[i]) + hr.res[i]
		enc[i] = 1000*v - (hr.base[i] - hr.final.Params[i])
	}
	u, ev := hr.encodeWith(t, enc)
	cheat := hr.decode(t, u.Payload)
	ratio := norm(cheat.Val) / norm(s.Val)
	f := hr.check(t, u, ev)
	t.Logf("%d of %d sent coordinates opened; payload norm ×%.0f; check on the blocks the cheater knew: %s", opened, len(s.Idx), ratio, brief(f))
	if opened == 0 || ratio < 100 {
		t.Fatalf("the construction did not inflate an opened chunk (opened %d, ×%.1f)", opened, ratio)
	}
	// No sample bounds a 1-bit scale from above (it is a mean over the
	// whole chunk): the check passes on any draw. What the cheater cannot
	// escape is the debt: the residual it keeps, checked bit for bit on
	// every opened block and chained from round to round by consensus
	// (ResidualIn is the author's last aggregated ResidualOut), carries
	// the inflation with the opposite sign, which its next updates must
	// send back (or be caught lying about the residual).
	honestKept := norm(hr.kept)
	if !(norm(residualOf(hr, cheat)) > 10*honestKept) {
		t.Errorf("the kept residual does not carry the inflation: %.3g against the honest %.3g", norm(residualOf(hr, cheat)), honestKept)
	}
	// Hiding the debt (committing the honest kept residual with the
	// inflated payload) is a lie on every block the payload sends from:
	// the draw, half among those blocks, catches it.
	uh := hr.clone()
	uh.Payload = u.Payload
	const draws = 100
	caught := 0
	for k := range draws {
		blocks, err := DrawBlocks(hr.spec, Hash{byte(k), 7}, uh, Hash{3}, "12D3KooWchallenger", len(hr.base))
		if err != nil {
			t.Fatal(err)
		}
		f, err := Check(hr.spec, hr.base, uh, blocks, Evidence{Openings: hr.open(t, hr.res, hr.kept, blocks)}, hr.replayer(t), func(int) *consensus.Answer { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if f.Fault == consensus.FaultLink {
			caught++
		}
	}
	if caught < draws*99/100 {
		t.Errorf("an inflated payload committed with the honest residual is caught by %d of %d drawn checks", caught, draws)
	}
}

// residualOf is what an encoder that sent s from hr's round keeps.
func residualOf(hr *honestRound, s *compress.Sparse) []float32 {
	kept := make([]float32, len(hr.base))
	for i := range kept {
		kept[i] = (hr.base[i] - hr.final.Params[i]) + hr.res[i]
	}
	for j, i := range s.Idx {
		kept[i] -= s.Val[j]
	}
	return kept
}

func norm(v []float32) float64 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	return math.Sqrt(n)
}

// TestAttackForgedResidualInDefeatsCheck: the check re-encodes the opened
// blocks from the residual the accused committed to carry in
// (ResidualIn), and nothing in trainer can tell a forged one. Carrying in
// r' = t − delta makes the honest encoder send the encoding of any target
// t: here the sign-flipped honest update (−(delta + r)), which passes on
// every block, not merely on a sample. The only anchor is consensus's
// chain (ResidualIn = the previous ResidualOut), which is checked only
// when the author's update of the previous round was aggregated
// (consensus.TestAttackResidualResetAfterSkippedRound). This test passes:
// it documents that trainer relies on that anchor entirely.
func TestAttackForgedResidualInDefeatsCheck(t *testing.T) {
	hr := newHonestRound(t, OptSGD)
	forged := make([]float32, len(hr.base))
	for i := range forged {
		delta := hr.base[i] - hr.final.Params[i]
		forged[i] = -(delta + hr.res[i]) - delta // encodes −(delta + r)
	}
	payload, out, err := Link(hr.spec, hr.base, hr.final.Params, forged)
	if err != nil {
		t.Fatal(err)
	}
	u := hr.clone()
	u.ResidualIn, u.Payload, u.ResidualOut = ResidualRoot(hr.spec, forged), payload, ResidualRoot(hr.spec, out)
	honest, cheat := hr.decode(t, hr.u.Payload), hr.decode(t, payload)
	flipped := 0
	for j := range cheat.Val {
		if j < len(honest.Val) && cheat.Idx[j] == honest.Idx[j] && (cheat.Val[j] < 0) != (honest.Val[j] < 0) {
			flipped++
		}
	}
	if flipped != len(honest.Val) {
		t.Fatalf("the forged residual flips %d of %d signs", flipped, len(honest.Val))
	}
	n := ResidualBlocks(hr.spec, len(hr.base))
	all := make([]int, n)
	for b := range all {
		all[b] = b
	}
	ev := Evidence{Openings: hr.open(t, forged, out, all)}
	f, err := Check(hr.spec, hr.base, u, all, ev, hr.replayer(t), func(int) *consensus.Answer { return nil })
	if err != nil || f.Fault != consensus.FaultNone {
		t.Errorf("the sign-flipped payload from a forged residual: %s, %v (the check now catches it: update this test)", brief(f), err)
	}
}

// TestAttackSignFlipDetection measures what the consensus doc promises
// for a payload "false nearly everywhere" (sign flips, IPM/ALIE): "caught
// with near certainty". A sign flip is false only at the k sent
// coordinates; the kept ones stay honest, so only an opened block that
// holds a sent coordinate catches it. At the default spec (D = 203,530,
// k = 1,018, blocks of 64, 4 openings) that is about 1 − (1 − 0.27)^4 ≈
// 72 % per check with uniformly spread sent coordinates, and less when
// they cluster (as top-k of a real update does, by layer). Here, on a
// synthetic update of the default size, the accused flips every sent sign
// and commits the residual that follows; each draw is a fresh beacon.
//
// Fix: draw some of the openings among the blocks that hold sent
// coordinates (spot.Blocks gets the payload's Idx: block Idx[x mod k]/B
// for beacon draws x), so that a lie on a share g of the sent values is
// caught with 1 − (1 − g)^m regardless of sparsity; and correct the doc's
// figures.
func TestAttackSignFlipDetection(t *testing.T) {
	spec := runspec.Default()
	const d = 784*256 + 256 + 256*10 + 10
	rng := rand.New(rand.NewPCG(1, 2))
	base, final, res := make([]float32, d), make([]float32, d), make([]float32, d)
	for i := range base {
		base[i] = float32(rng.NormFloat64())
		x := rng.NormFloat64()
		final[i] = base[i] - float32(1e-3*x*x*x) // heavy-tailed delta
		res[i] = float32(1e-4 * rng.NormFloat64())
	}
	payload, _, err := Link(spec, base, final, res)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := compress.NewDecoder(d)
	defer dec.Close()
	s, err := dec.Decode(payload)
	if err != nil {
		t.Fatal(err)
	}
	// The cheater encodes −v on the coordinates it sends.
	enc := slices.Clone(res)
	for _, i := range s.Idx {
		delta := base[i] - final[i]
		enc[i] = -2*delta - res[i]
	}
	cheat, _, err := Link(spec, base, final, enc)
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := dec.Decode(cheat)
	kept := make([]float32, d)
	for i := range kept {
		kept[i] = (base[i] - final[i]) + res[i]
	}
	for j, i := range cs.Idx {
		kept[i] -= cs.Val[j]
	}
	u := &consensus.Update{ResidualIn: ResidualRoot(spec, res), ResidualOut: ResidualRoot(spec, kept), Payload: cheat}
	ti, to := NewResidualTree(res, spec.Verify.ResidualBlock), NewResidualTree(kept, spec.Verify.ResidualBlock)
	n := ResidualBlocks(spec, d)
	const draws = 400
	caught := 0
	for k := range draws {
		blocks, err := DrawBlocks(spec, Hash{byte(k), byte(k >> 8)}, u, Hash{9}, "12D3KooWchallenger", d)
		if err != nil || len(blocks) != spec.Verify.Openings || n < len(blocks) {
			t.Fatal(blocks, err)
		}
		var ops []Opening
		for _, b := range blocks {
			ip, _ := ti.Path(b)
			op, _ := to.Path(b)
			lo, hi := blockRange(spec, d, b)
			ops = append(ops, Opening{Block: b, In: res[lo:hi], InPath: ip, OutPath: op})
		}
		if err := CheckOpenings(spec, u, d, blocks, ops); err != nil {
			t.Fatal(err)
		}
		if LinkOpenings(spec, u, base, final, ops) != nil {
			caught++
		}
	}
	rate := float64(caught) / draws
	t.Logf("a payload with every sent sign flipped is caught by %d of %d checks (%.0f%%)", caught, draws, 100*rate)
	if rate < 0.99 {
		t.Errorf("a sign-flip payload is caught by %.0f%% of checks, not with near certainty as consensus/doc.go says", 100*rate)
	}
}

// accusedAnswer is the accused's signed step hashes of segment seg,
// computed on its own engine (opts).
func (hr *honestRound) accusedAnswer(t *testing.T, seg int, opts ...Option) *consensus.Answer {
	t.Helper()
	r, err := NewReplayer(hr.spec, 0, hr.peer, hr.set.Train, opts...)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := AnswerLeaves(hr.spec, hr.starts[seg], seg, r)
	if err != nil {
		t.Fatal(err)
	}
	return &consensus.Answer{Round: 0, Segment: seg, Leaves: leaves}
}

// TestAttackFaultStepInToleranceRun: runs with verify.tolerance exist
// because peers train on different engines, whose steps are not
// bit-exact; there a dispute must rest on the whole round (FaultSegment).
// But nothing refuses a FaultStep verdict in such a run: consensus's
// checkDraw accepts it, and trainer.Referee re-executes the one step on
// the referee's engine and compares hashes bit for bit. A hostile
// challenger drawn against an honest accused asks it for its signed step
// hashes of any segment (node.Answer serves anyone), files FaultStep on
// its first step, and every referee on another engine upholds it: the
// honest accused is excluded.
//
// Fix: consensus.Engine.checkDraw must treat FaultStep (and FaultAnswer
// is fine) as a lie on its face when spec.Verify.Tolerance > 0, and
// trainer.Referee must return Overturned for FaultStep when
// spec.Verify.Tolerance > 0 (and FaultSegment only when it is > 0).
func TestAttackFaultStepInToleranceRun(t *testing.T) {
	hr := newHonestRound(t, OptAdamW, WithEngine(engine.CPU()))
	hr.spec.Verify.Tolerance = 1e-4
	if err := hr.judge(t, hr.u, hr.evidence(t)); err != nil {
		t.Fatalf("the honest round on another engine fails within tolerance: %v", err)
	}
	a := hr.accusedAnswer(t, 0, WithEngine(engine.CPU()))
	lo, _ := SegmentSteps(hr.spec, 0)
	x := &consensus.VerdictMsg{Segment: 0, Fault: consensus.FaultStep, Step: lo + 1, Answer: a}
	got, err := Referee(hr.spec, hr.base, hr.u, x, hr.blocks, hr.replayer(t), hr.keep(t, Finding{}), nil)
	if got == consensus.Upheld {
		t.Errorf("a FaultStep claim against an honest accused of a tolerance run is upheld by a referee on another engine (%v)", err)
	}
}

// TestAttackChallengerFalseOpenings: a challenger that files a false link
// claim against an honest accused and serves referees openings that do
// not hold gets the claim lapsed, never upheld; served the accused's true
// openings the referee overturns it. A challenger that serves openings of
// the same blocks under the committed roots cannot change the values
// (they are bound by the roots). This defence holds in trainer.Referee;
// the node's fetchOpenings (node/referee.go) however returns the first
// source's openings unchecked and never falls back to the accused, so the
// false accuser always gets Lapsed instead of Overturned: false link
// claims cost their signer nothing (see the report).
func TestAttackChallengerFalseOpenings(t *testing.T) {
	hr := newHonestRound(t, OptSGD)
	S := hr.spec.Segments()
	x := &consensus.VerdictMsg{Segment: S - 1, Fault: consensus.FaultLink}
	fin := only(Finding{Keep: []Snapshot{hr.final.Light()}})
	forged := hr.evidence(t).Openings
	forged[0].In = slices.Clone(forged[0].In)
	forged[0].In[0] += 1
	for name, ops := range map[string][]Opening{
		"values changed":   forged,
		"another block":    hr.open(t, hr.res, hr.kept, []int{hr.blocks[0], hr.blocks[1], hr.blocks[2], hr.blocks[3] - 1}),
		"a block repeated": hr.open(t, hr.res, hr.kept, []int{hr.blocks[0], hr.blocks[0], hr.blocks[2], hr.blocks[3]}),
		"none":             nil,
	} {
		got, _ := Referee(hr.spec, hr.base, hr.u, x, hr.blocks, hr.replayer(t), fin, func() ([]Opening, error) { return ops, nil })
		if got == consensus.Upheld {
			t.Errorf("%s: a false link claim on an honest accused is upheld", name)
		}
	}
	got, err := Referee(hr.spec, hr.base, hr.u, x, hr.blocks, hr.replayer(t), fin, func() ([]Opening, error) { return hr.evidence(t).Openings, nil })
	if got != consensus.Overturned {
		t.Errorf("a false link claim with the accused's true openings: %s, %v, want overturned", got, err)
	}
	// A step claim on a segment whose root matched: overturned.
	a := hr.answer(t, 0)
	lo, _ := SegmentSteps(hr.spec, 0)
	for step := lo + 1; step <= lo+2; step++ {
		xs := &consensus.VerdictMsg{Segment: 0, Fault: consensus.FaultStep, Step: step, Answer: a}
		if got, err := Referee(hr.spec, hr.base, hr.u, xs, hr.blocks, hr.replayer(t), hr.keep(t, Finding{}), nil); got != consensus.Overturned {
			t.Errorf("a step claim on step %d of a matching segment: %s, %v", step, got, err)
		}
	}
}

// TestAttackOpeningsEdgeCases: openings the accused may send that the
// existing tests do not: the same block twice when two are asked, a block
// past the end, non-finite or negative-zero values committed in the
// residual, and a payload without a threshold (format 2). Each must fail
// the check and none may panic; an honest −0 must pass.
func TestAttackOpeningsEdgeCases(t *testing.T) {
	hr := newHonestRound(t, OptSGD)
	n := ResidualBlocks(hr.spec, len(hr.base))
	bs := hr.spec.Verify.ResidualBlock
	d := len(hr.base)
	u := hr.u

	// The same block twice, for blocks asked twice (spot.Blocks never
	// repeats, but a caller may pass anything).
	twice := []int{hr.blocks[0], hr.blocks[0]}
	if err := CheckOpenings(hr.spec, u, d, twice, hr.open(t, hr.res, hr.kept, twice)); err != nil {
		t.Logf("a repeated block is refused: %v", err)
	}
	// A block past the end, with a path the accused makes up.
	past := []Opening{{Block: n, In: make([]float32, bs), InPath: make([]Hash, 12)}}
	if CheckOpenings(hr.spec, u, d, []int{n}, past) == nil {
		t.Error("an opening of a block past the end holds")
	}
	// Non-finite values committed in ResidualIn on a drawn block: the
	// check must name a fault (not panic, not pass).
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		in := slices.Clone(hr.res)
		i := hr.blocks[1]*bs + 1
		in[i] = bad
		payload, out, err := Link(hr.spec, hr.base, hr.final.Params, hr.res)
		if err != nil {
			t.Fatal(err)
		}
		// The kept residual the accused commits: honest except at i,
		// where it keeps the bad value (as if not sent).
		out = slices.Clone(out)
		out[i] = bad
		v := hr.clone()
		v.ResidualIn, v.Payload, v.ResidualOut = ResidualRoot(hr.spec, in), payload, ResidualRoot(hr.spec, out)
		f := hr.check(t, v, Evidence{Openings: hr.open(t, in, out, hr.blocks)})
		if f.Fault == consensus.FaultNone {
			t.Errorf("a residual of %v on an opened block passes", bad)
		}
	}
	// −0 against +0: bit for bit, a kept zero committed with the other
	// sign fails; the honest one passes.
	{
		in := slices.Clone(hr.res)
		i := hr.blocks[2] * bs
		for slices.Contains(hr.decode(t, hr.u.Payload).Idx, uint32(i)) {
			i++
		}
		in[i] = -(hr.base[i] - hr.final.Params[i]) // v = 0 there
		payload, out, err := Link(hr.spec, hr.base, hr.final.Params, in)
		if err != nil {
			t.Fatal(err)
		}
		v := hr.clone()
		v.ResidualIn, v.Payload, v.ResidualOut = ResidualRoot(hr.spec, in), payload, ResidualRoot(hr.spec, out)
		if f := hr.check(t, v, Evidence{Openings: hr.open(t, in, out, hr.blocks)}); f.Fault != consensus.FaultNone {
			t.Errorf("an honest zero on an opened block fails: %s", brief(f))
		}
		if out[i] != 0 {
			t.Fatalf("v = %g at %d, not zero", out[i], i)
		}
		flipped := slices.Clone(out)
		flipped[i] = math.Float32frombits(math.Float32bits(out[i]) ^ 1<<31)
		v.ResidualOut = ResidualRoot(hr.spec, flipped)
		if f := hr.check(t, v, Evidence{Openings: hr.open(t, in, flipped, hr.blocks)}); f.Fault != consensus.FaultLink {
			t.Errorf("a kept zero committed with the other sign: %s", brief(f))
		}
	}
	// A format-2 payload (no threshold): not checkable, so a link fault.
	{
		v := hr.clone()
		v.Payload = formatTwo(t, hr.u.Payload, d)
		if v.Payload == nil {
			t.Log("the payload is zstd-compressed: format-2 case skipped")
		} else {
			if f := hr.check(t, v, hr.evidence(t)); f.Fault != consensus.FaultLink {
				t.Errorf("a format-2 payload: %s", brief(f))
			}
		}
	}
}

// formatTwo rewrites a raw-codec format-3 payload as format 2 (the
// threshold dropped), or returns nil if the payload is zstd-compressed.
func formatTwo(t *testing.T, p []byte, d int) []byte {
	t.Helper()
	if p[0] != 0 || p[1] != 3 {
		return nil
	}
	// Header: codec, version, uvarint D, uvarint k, bits, uvarint chunk, τ.
	off := 2
	for range 2 {
		for p[off]&0x80 != 0 {
			off++
		}
		off++
	}
	off++ // bits
	for p[off]&0x80 != 0 {
		off++
	}
	off++
	out := append([]byte{0, 2}, p[2:off]...)
	out = append(out, p[off+4:]...)
	dec, _ := compress.NewDecoder(d)
	defer dec.Close()
	if s, err := dec.Decode(out); err != nil || s.Threshold >= 0 {
		t.Fatalf("format-2 rewrite: %v", err)
	}
	return out
}

// TestAttackHonestTwoBitRoundFailsCheck: an honest round of a run that
// sends 2 bits per value, checked on every block, fails with a link fault
// that a referee upholds: the sign of a zero level (see compress's
// TestAttackHonestNegativeZeroFailsCheck). Honest peers of such runs are
// excluded.
func TestAttackHonestTwoBitRoundFailsCheck(t *testing.T) {
	hr := newHonestRound(t, OptSGD)
	hr.spec.Compression.Bits = 2
	payload, out, err := Link(hr.spec, hr.base, hr.final.Params, hr.res)
	if err != nil {
		t.Fatal(err)
	}
	u := hr.clone()
	u.Payload, u.ResidualOut = payload, ResidualRoot(hr.spec, out)
	all := make([]int, ResidualBlocks(hr.spec, len(hr.base)))
	for b := range all {
		all[b] = b
	}
	ops := hr.open(t, hr.res, out, all)
	f, err := Check(hr.spec, hr.base, u, all, Evidence{Openings: ops}, hr.replayer(t), func(int) *consensus.Answer { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if f.Fault != consensus.FaultNone {
		x := &consensus.VerdictMsg{Segment: f.Segment, Fault: f.Fault}
		r, _ := Referee(hr.spec, hr.base, u, x, all, hr.replayer(t), only(f), func() ([]Opening, error) { return ops, nil })
		t.Errorf("an honest 2-bit round: %s; a referee rules %s", brief(f), r)
	}
}
