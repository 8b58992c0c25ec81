package zk

import (
	"bytes"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/consensys/gnark-crypto/ecc"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark/backend"
	"github.com/consensys/gnark/backend/groth16"
	"github.com/consensys/gnark/test"

	"github.com/vtrain/vtrain/models/data"
)

// small is a circuit small enough to set up and prove in well under a
// second: 6 features, 3 classes, batch 2, 8 samples.
var small = Params{Features: 6, Classes: 3, Batch: 2, Depth: 3, LR: 1 << 12}

// tinyData is a seeded dataset of the small circuit's shape.
func tinyData(seed uint64, n int) *data.Dataset {
	r := rand.New(rand.NewPCG(seed, 1))
	d := &data.Dataset{Name: "tiny", Rows: 2, Cols: 3, Classes: 3, Images: make([]byte, n*6), Labels: make([]uint8, n)}
	for i := range d.Images {
		d.Images[i] = byte(r.IntN(256))
	}
	for i := range d.Labels {
		d.Labels[i] = uint8(r.IntN(3))
	}
	return d
}

func randTheta(p Params, seed uint64, scale float64) Theta {
	r := rand.New(rand.NewPCG(seed, 2))
	t := make(Theta, p.NumParams())
	for i := range t {
		t[i] = int64((r.Float64()*2 - 1) * scale * (1 << FracTheta))
	}
	return t
}

// fixture is a valid statement and witness for the small circuit.
type fixture struct {
	p    Params
	ds   *data.Dataset
	data *PeerData
	st   Statement
	w    Witness
	next Theta
}

func newFixture(t testing.TB, p Params, ds *data.Dataset, theta Theta, draw Draw) fixture {
	t.Helper()
	all := make([]int, ds.Len())
	for i := range all {
		all[i] = i
	}
	pd, err := NewPeerData(p, ds, all)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := pd.Drawn(draw.Seed, draw.Step)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pd.Witness(theta, idx)
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{p: p, ds: ds, data: pd, w: w}
	if f.next, err = p.Step(theta, f.w.Batch); err != nil {
		t.Fatal(err)
	}
	var run [32]byte
	run[0], run[31] = 0xAB, 0xCD
	f.st = Statement{ThetaIn: p.CommitTheta(theta), ThetaOut: p.CommitTheta(f.next), DataRoot: pd.Root(), Draw: draw,
		Context: Context{Run: run, Round: 7, Peer: "12D3KooWpeer"}}
	return f
}

func smallFixture(t testing.TB) fixture {
	return newFixture(t, small, tinyData(1, 8), randTheta(small, 1, 2), Draw{Seed: 0x5eed, Step: 1, Size: 8})
}

// refStep is the float64 softmax-regression SGD step that the fixed-point
// step approximates.
func refStep(p Params, theta []float64, batch []Sample) []float64 {
	c, nw := p.Classes, p.Features*p.Classes
	grad := make([]float64, len(theta))
	for _, s := range batch {
		z := make([]float64, c)
		for j := range z {
			z[j] = theta[nw+j]
			for i, x := range s.Pixels {
				z[j] += theta[i*c+j] * float64(x) / 256
			}
		}
		m := z[0]
		for _, v := range z {
			m = math.Max(m, v)
		}
		var sum float64
		for j := range z {
			z[j] = math.Exp(z[j] - m)
			sum += z[j]
		}
		for j := range z {
			d := z[j] / sum
			if j == int(s.Label) {
				d--
			}
			for i, x := range s.Pixels {
				grad[i*c+j] += d * float64(x) / 256
			}
			grad[nw+j] += d
		}
	}
	out := make([]float64, len(theta))
	for i := range theta {
		out[i] = theta[i] - p.LRFloat()*grad[i]/float64(p.Batch)
	}
	return out
}

func TestStepMatchesFloat(t *testing.T) {
	p := Params{Features: 784, Classes: 10, Batch: 4, Depth: 16, LR: 1 << 14} // η = 0.25: a large step
	ds := data.Synthetic(3, 64, 1).Train
	for seed := uint64(1); seed <= 5; seed++ {
		theta := randTheta(p, seed, 0.05)
		var batch []Sample
		for k := range p.Batch {
			i := (int(seed)*7 + k*13) % ds.Len()
			batch = append(batch, Sample{Pixels: ds.Images[i*784 : (i+1)*784], Label: ds.Labels[i]})
		}
		got, err := p.Step(theta, batch)
		if err != nil {
			t.Fatal(err)
		}
		f := make([]float64, len(theta))
		for i, v := range theta {
			f[i] = float64(v) / (1 << FracTheta)
		}
		want := refStep(p, f, batch)
		var num, den float64
		for i := range want {
			d := float64(got[i])/(1<<FracTheta) - want[i]
			u := want[i] - f[i]
			num += d * d
			den += u * u
		}
		// Relative L2 error of the update θ' − θ.
		rel := math.Sqrt(num / den)
		t.Logf("seed %d: relative error %.2e", seed, rel)
		if rel > 5e-4 {
			t.Errorf("seed %d: fixed-point update differs from float64 by %.2e relative", seed, rel)
		}
	}
}

func TestStepRejects(t *testing.T) {
	p := small
	ds := tinyData(1, 8)
	good := []Sample{{ds.Images[:6], 0}, {ds.Images[6:12], 1}}
	for name, tc := range map[string]struct {
		theta Theta
		batch []Sample
		want  error
	}{
		"short theta":   {make(Theta, 3), good, ErrBatch},
		"short batch":   {make(Theta, p.NumParams()), good[:1], ErrBatch},
		"bad label":     {make(Theta, p.NumParams()), []Sample{good[0], {ds.Images[:6], 3}}, ErrBatch},
		"short pixels":  {make(Theta, p.NumParams()), []Sample{good[0], {ds.Images[:5], 0}}, ErrBatch},
		"theta too big": {append(make(Theta, p.NumParams()-1), ThetaBound), good, ErrOverflow},
	} {
		if _, err := p.Step(tc.theta, tc.batch); err == nil || !strings.Contains(err.Error(), tc.want.Error()) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

func TestTreePaths(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 8} {
		leaves := make([]fr.Element, n)
		for i := range leaves {
			leaves[i].SetUint64(uint64(100 + i))
		}
		tree, err := NewTree(3, leaves)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			path, err := tree.Path(i)
			if err != nil {
				t.Fatal(err)
			}
			if got := RootFromPath(leaves[i], uint64(i), path); !got.Equal(ptr(tree.Root())) {
				t.Fatalf("n=%d leaf %d: path does not lead to the root", n, i)
			}
			if got := RootFromPath(leaves[i], uint64(i^1), path); got.Equal(ptr(tree.Root())) {
				t.Fatalf("n=%d leaf %d: wrong index leads to the root", n, i)
			}
		}
		if _, err := tree.Path(n); err == nil {
			t.Fatalf("n=%d: path to an absent leaf", n)
		}
	}
	if _, err := NewTree(2, make([]fr.Element, 5)); err == nil {
		t.Fatal("5 leaves fit a tree of depth 2")
	}
}

func ptr(e fr.Element) *fr.Element { return &e }

// TestCircuit checks the circuit on the gnark test engine and with real
// Groth16 proofs: the valid witness proves, and each tampered one fails.
func TestCircuit(t *testing.T) {
	f := smallFixture(t)
	valid, err := assign(f.p, f.st, f.w)
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(fn func(st *Statement, w *Witness)) *StepCircuit {
		st := f.st
		w := Witness{Theta: append(Theta(nil), f.w.Theta...), Indices: append([]uint64(nil), f.w.Indices...)}
		for _, s := range f.w.Batch {
			w.Batch = append(w.Batch, Sample{Pixels: append([]byte(nil), s.Pixels...), Label: s.Label})
		}
		for _, p := range f.w.Paths {
			w.Paths = append(w.Paths, append([]fr.Element(nil), p...))
		}
		fn(&st, &w)
		a, err := assign(f.p, st, w)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	other := tinyData(2, 8)
	otherTree, _ := DataTree(f.p, other, []int{0, 1, 2, 3, 4, 5, 6, 7})
	invalid := map[string]*StepCircuit{
		"one pixel changed":       mutate(func(_ *Statement, w *Witness) { w.Batch[1].Pixels[3]++ }),
		"label changed":           mutate(func(_ *Statement, w *Witness) { w.Batch[0].Label = (w.Batch[0].Label + 1) % 3 }),
		"label out of range":      mutate(func(_ *Statement, w *Witness) { w.Batch[0].Label = 3 }),
		"one weight of θ changed": mutate(func(_ *Statement, w *Witness) { w.Theta[4]++ }),
		"wrong θ'": mutate(func(st *Statement, _ *Witness) {
			bad := append(Theta(nil), f.next...)
			bad[0]++
			st.ThetaOut = f.p.CommitTheta(bad)
		}),
		"θ' of another batch": mutate(func(st *Statement, w *Witness) {
			next, _ := f.p.Step(f.w.Theta, []Sample{w.Batch[0], {Pixels: f.ds.Images[:6], Label: f.ds.Labels[0]}})
			st.ThetaOut = f.p.CommitTheta(next)
		}),
		"sample not under the root": mutate(func(_ *Statement, w *Witness) {
			w.Batch[0] = Sample{Pixels: other.Images[:6], Label: other.Labels[0]}
			p, _ := otherTree.Path(0)
			w.Paths[0], w.Indices[0] = p, 0
		}),
		"wrong data root": mutate(func(st *Statement, _ *Witness) { st.DataRoot = otherTree.Root() }),
		// The prover picks its batch: samples under the root, θ' right for
		// them, but not the leaves the seed drew.
		"a batch the seed did not draw": mutate(func(st *Statement, w *Witness) {
			mine, err := f.data.Witness(w.Theta, notDrawn(t, f))
			if err != nil {
				t.Fatal(err)
			}
			w.Batch, w.Indices, w.Paths = mine.Batch, mine.Indices, mine.Paths
			next, err := f.p.Step(w.Theta, w.Batch)
			if err != nil {
				t.Fatal(err)
			}
			st.ThetaOut = f.p.CommitTheta(next)
		}),
		"the statement's draw moved to another step": mutate(func(st *Statement, _ *Witness) { st.Draw.Step++ }),
		"wrong index": mutate(func(_ *Statement, w *Witness) { w.Indices[1] ^= 4 }),
	}
	field := ecc.BN254.ScalarField()
	if err := test.IsSolved(NewCircuit(f.p), valid, field); err != nil {
		t.Fatalf("valid witness: %v", err)
	}
	opts := []test.TestingOption{test.WithValidAssignment(valid), test.WithCurves(ecc.BN254),
		test.WithBackends(backend.GROTH16), test.NoFuzzing(), test.NoSerializationChecks()}
	for name, a := range invalid {
		if err := test.IsSolved(NewCircuit(f.p), a, field); err == nil {
			t.Errorf("%s: the circuit accepts it", name)
		}
		opts = append(opts, test.WithInvalidAssignment(a))
	}
	test.NewAssert(t).CheckCircuit(NewCircuit(f.p), opts...)
}

var (
	smallKeysOnce sync.Once
	smallKeys     *Keys
	smallKeysErr  error
)

func keysForSmall(t testing.TB) *Keys {
	smallKeysOnce.Do(func() { smallKeys, smallKeysErr = Setup(small) })
	if smallKeysErr != nil {
		t.Fatal(smallKeysErr)
	}
	return smallKeys
}

// TestProofBinding: a real proof verifies for its statement and for no
// other: not another run, round or peer, θ, θ' or data root, and no
// tampered proof bytes.
func TestProofBinding(t *testing.T) {
	keys := keysForSmall(t)
	f := smallFixture(t)
	proof, err := keys.Prove(f.st, f.w)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Verify(f.st, proof); err != nil {
		t.Fatalf("valid proof rejected: %v", err)
	}
	if len(proof) > 1024 {
		t.Errorf("proof is %d bytes", len(proof))
	}
	var one fr.Element
	one.SetOne()
	bump := func(e fr.Element) fr.Element { e.Add(&e, &one); return e }
	wrong := map[string]func(st *Statement){
		"run":       func(st *Statement) { st.Context.Run[5] ^= 1 },
		"round":     func(st *Statement) { st.Context.Round++ },
		"peer":      func(st *Statement) { st.Context.Peer += "x" },
		"theta_in":  func(st *Statement) { st.ThetaIn = bump(st.ThetaIn) },
		"theta_out": func(st *Statement) { st.ThetaOut = bump(st.ThetaOut) },
		"data_root": func(st *Statement) { st.DataRoot = bump(st.DataRoot) },
		"step":      func(st *Statement) { st.Draw.Step++ },
		"seed":      func(st *Statement) { st.Draw.Seed++ },
		"data size": func(st *Statement) { st.Draw.Size-- },
	}
	for name, fn := range wrong {
		st := f.st
		fn(&st)
		if err := keys.Verify(st, proof); err == nil {
			t.Errorf("proof verifies with another %s", name)
		}
	}
	// A cheating prover cannot make a proof at all.
	bad := f.w
	bad.Theta = append(Theta(nil), f.w.Theta...)
	bad.Theta[0]++
	if _, err := keys.Prove(f.st, bad); err == nil {
		t.Error("proved a statement with a wrong θ")
	}
	// Every bit flip, truncation and extension of the proof is rejected.
	r := rand.New(rand.NewPCG(9, 9))
	for range 64 {
		tampered := bytes.Clone(proof)
		tampered[r.IntN(len(tampered))] ^= 1 << r.IntN(8)
		if err := keys.Verify(f.st, tampered); err == nil {
			t.Fatal("a proof with a flipped bit verifies")
		}
	}
	for _, b := range [][]byte{nil, proof[:len(proof)-1], proof[:10], append(bytes.Clone(proof), 0), make([]byte, MaxProofBytes+1)} {
		if err := keys.Verify(f.st, b); err == nil {
			t.Errorf("a %d-byte proof verifies", len(b))
		}
	}
}

// TestChallengeEndToEnd: a peer trains on private data, commits, is
// challenged, and answers with a proof that verifies; a peer that changes
// one sample, one weight or one bit of the proof is rejected.
func TestChallengeEndToEnd(t *testing.T) {
	keys := keysForSmall(t)
	ds := tinyData(4, 8)
	shard := []int{0, 1, 2, 3, 4, 5, 6, 7}
	pr, err := NewProver(keys, randTheta(small, 4, 1), ds, shard, 42)
	if err != nil {
		t.Fatal(err)
	}
	var run [32]byte
	run[3] = 9
	ctx := Context{Run: run, Round: 2, Peer: "12D3KooWzk"}
	const seed = 0xfeed
	c, err := pr.Round(ctx, seed, 4)
	if err != nil {
		t.Fatal(err)
	}
	verifier := verifierOnly(t, keys)
	beacon := [32]byte{1, 2, 3}
	s := ChallengeStep(beacon, ctx, len(c.Steps)-1)
	b, err := pr.Respond(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckResponse(verifier, c, s, b); err != nil {
		t.Fatalf("honest answer rejected: %v", err)
	}
	// Every step is provable, and a proof of one step does not answer another.
	other := (s + 1) % (len(c.Steps) - 1)
	if err := CheckResponse(verifier, c, other, b); err == nil {
		t.Error("a proof of one step answers a challenge of another")
	}

	// A peer that trained its steps on batches of its own choosing (here:
	// another seed's) cannot answer for the run's seed: not as it is, and
	// not with the bundle's draw rewritten to the run's.
	cheat, err := NewProver(keys, randTheta(small, 4, 1), ds, shard, 42)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cheat.Round(ctx, seed+1, 4)
	if err != nil {
		t.Fatal(err)
	}
	cc.Seed = seed // what it publishes
	cb, err := cheat.Respond(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckResponse(verifier, cc, s, cb); err == nil || !strings.Contains(err.Error(), "not the batch drawn") {
		t.Errorf("a proof of another seed's batch: %v", err)
	}
	cb.Seed = seed
	if err := CheckResponse(verifier, cc, s, cb); err == nil {
		t.Error("a proof of another batch answers once its draw is rewritten")
	}

	// One bit of the proof.
	flipped := b
	flipped.Proof = bytes.Clone(b.Proof)
	flipped.Proof[len(flipped.Proof)/2] ^= 0x10
	if err := CheckResponse(verifier, c, s, flipped); err == nil {
		t.Error("a flipped proof bit was accepted")
	}
	// One weight: the peer's published θ' differs from what it trained.
	forged := c
	forged.Steps = append([]fr.Element(nil), c.Steps...)
	theta := append(Theta(nil), pr.thetas[s+1]...)
	theta[1]++
	forged.Steps[s+1] = small.CommitTheta(theta)
	if err := CheckResponse(verifier, forged, s, b); err == nil {
		t.Error("a proof answers for a changed weight")
	}
	pr.thetas[s+1] = theta
	if _, err := pr.Respond(s); err == nil {
		t.Error("the peer proved a step to a changed weight")
	}
	// One sample: the peer changes a sample it committed to.
	pr2, err := NewProver(keys, randTheta(small, 4, 1), ds, shard, 42)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pr2.Round(ctx, seed, 4); err != nil {
		t.Fatal(err)
	}
	idx := pr2.tr.BatchIndices(0)
	ds.Images[idx[0]*6+2] ^= 0x80
	if _, err := pr2.Respond(0); err == nil {
		t.Error("the peer proved a step on a changed sample")
	}
	// A context other than the challenge's.
	moved := b
	moved.Round++
	if err := CheckResponse(verifier, c, s, moved); err == nil {
		t.Error("a proof for another round was accepted")
	}
}

// verifierOnly round-trips the keys through their files, keeping only
// what a verifier has.
func verifierOnly(t *testing.T, k *Keys) *Keys {
	t.Helper()
	dir := t.TempDir()
	if err := (&Keys{Params: k.Params, VK: k.VK}).Save(dir); err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(dir, VKHash(k.VK))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadVerifier(dir, strings.Repeat("0", 64)); err == nil {
		t.Fatal("a verifying key with another hash was accepted")
	}
	return v
}

// FuzzVerifyProof feeds arbitrary bytes to the proof decoder and verifier:
// it must never panic, and nothing but the one valid proof (in any of its
// encodings) may verify.
func FuzzVerifyProof(f *testing.F) {
	keys := keysForSmall(f)
	fx := smallFixture(f)
	proof, err := keys.Prove(fx.st, fx.w)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(proof)
	f.Add(proof[:len(proof)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if keys.Verify(fx.st, b) != nil || bytes.Equal(b, proof) {
			return
		}
		// Another encoding of the same points is the same proof.
		pr := groth16.NewProof(ecc.BN254)
		if _, err := pr.ReadFrom(bytes.NewReader(b)); err != nil {
			t.Fatalf("verified but does not decode: %v", err)
		}
		var re bytes.Buffer
		pr.WriteTo(&re)
		if !bytes.Equal(re.Bytes(), proof) {
			t.Fatalf("a different proof verifies: %x", b)
		}
	})
}

// notDrawn returns a batch of the fixture's samples that its draw did not
// pick.
func notDrawn(t testing.TB, f fixture) []int {
	t.Helper()
	drawn, err := f.data.Drawn(f.st.Draw.Seed, f.st.Draw.Step)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for i := range f.ds.Len() {
		if !slices.Contains(drawn, i) && len(out) < f.p.Batch {
			out = append(out, i)
		}
	}
	return out
}

// TestDraw: the leaves a verifier draws are the batches the trainer
// trains on, for any shard, at every step and after a round's reseed; and
// draws that do not fit the circuit are refused.
func TestDraw(t *testing.T) {
	ds := tinyData(3, 8)
	shard := []int{6, 1, 7, 3, 0, 4} // not in order: leaf i is sample shard[i]
	pd, err := NewPeerData(small, ds, shard)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(small, randTheta(small, 3, 1), ds, shard, 77)
	if err != nil {
		t.Fatal(err)
	}
	for _, seed := range []uint64{77, 78} {
		if seed != 77 {
			if err := tr.StartRound(seed); err != nil {
				t.Fatal(err)
			}
		}
		for step := range uint64(7) { // past an epoch of 3 batches
			got, err := pd.Drawn(seed, step)
			if err != nil {
				t.Fatal(err)
			}
			if want := tr.BatchIndices(int64(step)); !slices.Equal(got, want) {
				t.Fatalf("seed %d step %d: drawn %v, the trainer trains on %v", seed, step, got, want)
			}
		}
	}
	a, _ := small.Leaves(Draw{Seed: 1, Step: 0, Size: 8})
	b, _ := small.Leaves(Draw{Seed: 2, Step: 0, Size: 8})
	c, _ := small.Leaves(Draw{Seed: 1, Step: 1, Size: 8})
	if slices.Equal(a, b) && slices.Equal(a, c) {
		t.Errorf("seed and step change nothing: %v %v %v", a, b, c)
	}
	for name, d := range map[string]Draw{
		"fewer samples than a batch": {Size: 1},
		"more than the tree holds":   {Size: 9},
		"step beyond the bound":      {Size: 8, Step: MaxDrawStep + 1},
	} {
		if _, err := small.Leaves(d); err == nil || !errors.Is(err, ErrBatch) {
			t.Errorf("%s: %v", name, err)
		}
	}
	big := FashionParams(4)
	big.Depth = 32
	if _, err := big.Leaves(Draw{Size: MaxDataSize + 1}); err == nil {
		t.Error("a draw over more than MaxDataSize samples")
	}
}

// TestCircuitPackingEdges checks the packed forward and backward passes at
// the edges of their lanes: weights near ±2^30, saturated and dark pixels,
// the largest learning rate, several groups of classes per packed element
// with a short last group, and a batch that is not a power of two. The
// honest step must satisfy the circuit (a lane too narrow would wrap and
// fail it) and a θ' off by one in the last class of the last group must
// not.
func TestCircuitPackingEdges(t *testing.T) {
	for _, p := range []Params{
		{Features: 40, Classes: 7, Batch: 5, Depth: 4, LR: 1 << FracLR},
		{Features: 6, Classes: 3, Batch: 1, Depth: 2, LR: 1},
	} {
		n := 1 << p.Depth
		ds := &data.Dataset{Name: "edges", Rows: 1, Cols: p.Features, Classes: p.Classes,
			Images: make([]byte, n*p.Features), Labels: make([]uint8, n)}
		for i := range ds.Images {
			if (i/p.Features)%2 == 0 || i%3 == 0 {
				ds.Images[i] = 255
			}
		}
		for i := range ds.Labels {
			ds.Labels[i] = uint8(i % p.Classes)
		}
		theta := make(Theta, p.NumParams())
		for i := range theta {
			theta[i] = ThetaBound - 1<<23
			if i%2 == 1 {
				theta[i] = -theta[i]
			}
		}
		f := newFixture(t, p, ds, theta, Draw{Seed: 3, Step: 0, Size: uint64(n)})
		valid, err := assign(f.p, f.st, f.w)
		if err != nil {
			t.Fatal(err)
		}
		field := ecc.BN254.ScalarField()
		if err := test.IsSolved(NewCircuit(p), valid, field); err != nil {
			t.Errorf("%+v: the honest step fails: %v", p, err)
		}
		bad := append(Theta(nil), f.next...)
		bad[p.Features*p.Classes-1]++
		st := f.st
		st.ThetaOut = p.CommitTheta(bad)
		invalid, err := assign(f.p, st, f.w)
		if err != nil {
			t.Fatal(err)
		}
		if err := test.IsSolved(NewCircuit(p), invalid, field); err == nil {
			t.Errorf("%+v: the circuit accepts a wrong θ'", p)
		}
	}
}

// TestLaneBounds checks the inequalities behind the packed passes'
// soundness (pack.go) for every shape Validate accepts: a forward lane
// holds F·255·(2^31 − 1); a backward lane holds, with its sign, any
// q·div + r with |q| < 2^31 and 0 ≤ r < div and any lr·G + div/2; the
// lanes of an element fit in packBits < log2(p) − 1. A lane too narrow
// would let a prover move a carry between classes: honest witnesses
// cannot show it, so the bounds are checked here.
func TestLaneBounds(t *testing.T) {
	p := ecc.BN254.ScalarField()
	if new(big.Int).Lsh(big.NewInt(1), packBits+1).Cmp(p) >= 0 {
		t.Fatalf("2^%d ≥ p", packBits+1)
	}
	for f := 1; f <= 1<<14; f++ {
		w, k := fwdLanes(f)
		max := new(big.Int).Mul(big.NewInt(int64(f)*255), big.NewInt(ThetaBound*2-1))
		if k < 1 || w*k > packBits || max.Cmp(new(big.Int).Lsh(big.NewInt(1), uint(w))) >= 0 {
			t.Fatalf("features %d: forward lanes of %d bits, %d per element", f, w, k)
		}
	}
	for b := 1; b <= 256; b++ {
		w, k := bwdLanes(b)
		div := new(big.Int).Lsh(big.NewInt(int64(b)), updateShift)
		qdr := new(big.Int).Mul(big.NewInt(ThetaBound*2), div) // |q| < 2^31
		qdr.Add(qdr, div)                                      // + r < div
		grad := new(big.Int).Lsh(big.NewInt(int64(b)), 26)     // |G| < B·2^26
		grad.Mul(grad, big.NewInt(1<<FracLR)).Add(grad, div)   // lr·G + div/2
		half := new(big.Int).Lsh(big.NewInt(1), uint(w-1))
		if k < 1 || w*k > packBits || qdr.Cmp(half) >= 0 || grad.Cmp(half) >= 0 {
			t.Fatalf("batch %d: backward lanes of %d bits, %d per element", b, w, k)
		}
	}
}
