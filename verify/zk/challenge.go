package zk

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/vtrain/vtrain/models/data"
)

// DataTree builds the data tree over a peer's private samples: leaf i is
// the sample shard[i] of ds. The leaves are hashed on all cores.
func DataTree(p Params, ds *data.Dataset, shard []int) (*Tree, error) {
	if ds.Features() != p.Features || ds.Classes != p.Classes {
		return nil, fmt.Errorf("%w: data has %d features and %d classes, the circuit %d and %d",
			ErrParams, ds.Features(), ds.Classes, p.Features, p.Classes)
	}
	leaves := make([]fr.Element, len(shard))
	f := ds.Features()
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(shard); i += workers {
				s := shard[i]
				leaves[i] = Leaf(Sample{Pixels: ds.Images[s*f : (s+1)*f], Label: ds.Labels[s]})
			}
		}()
	}
	wg.Wait()
	return NewTree(p.Depth, leaves)
}

// Contribution is what a zk peer publishes for a round: its data root and
// size, the round's batch seed, and the commitment to θ after every inner
// step (Steps[0] is the agreed base). Step s trained on the batch
// Draw{Seed, s, DataSize}. Any step can be challenged and answered with a
// proof alone. The verifier must check Seed against the run (the round's
// seed for this peer) and DataRoot and DataSize against what the peer
// published before the round.
type Contribution struct {
	Context  Context
	DataRoot fr.Element
	DataSize uint64
	Seed     uint64
	Steps    []fr.Element
}

// ChallengeStep picks the step to challenge from a public beacon (for
// example the hash of the agreed commit): a uniform index in [0, steps).
func ChallengeStep(beacon [32]byte, c Context, steps int) int {
	if steps < 1 {
		panic("zk: ChallengeStep: no steps")
	}
	h := sha256.New()
	h.Write([]byte("vtrain/zk/challenge\x00"))
	h.Write(beacon[:])
	h.Write([]byte(c.Peer))
	var sum [32]byte
	h.Sum(sum[:0])
	return int(binary.BigEndian.Uint64(sum[:8]) % uint64(steps))
}

// PeerData is a peer's private samples with their data tree: what builds
// the witness of a step on any batch of them.
type PeerData struct {
	p      Params
	ds     *data.Dataset
	tree   *Tree
	shard  []int       // leaf index → dataset index
	leafOf map[int]int // dataset index → leaf index
}

// NewPeerData hashes the shard's samples of ds into their data tree.
func NewPeerData(p Params, ds *data.Dataset, shard []int) (*PeerData, error) {
	tree, err := DataTree(p, ds, shard)
	if err != nil {
		return nil, err
	}
	leafOf := make(map[int]int, len(shard))
	for i, s := range shard {
		leafOf[s] = i
	}
	return &PeerData{p: p, ds: ds, tree: tree, shard: append([]int(nil), shard...), leafOf: leafOf}, nil
}

// Root is the data root.
func (d *PeerData) Root() fr.Element { return d.tree.Root() }

// Size is the number of samples under the root.
func (d *PeerData) Size() uint64 { return uint64(len(d.shard)) }

// Drawn returns the dataset indices of the batch that the sampler draws
// at step of a round with the batch seed seed.
func (d *PeerData) Drawn(seed, step uint64) ([]int, error) {
	leaves, err := d.p.Leaves(Draw{Seed: seed, Step: step, Size: d.Size()})
	if err != nil {
		return nil, err
	}
	idx := make([]int, len(leaves))
	for i, l := range leaves {
		idx[i] = d.shard[l]
	}
	return idx, nil
}

// Witness is θ with the batch of dataset indices idx and their Merkle
// paths. It fails if a sample is not the peer's.
func (d *PeerData) Witness(theta Theta, idx []int) (Witness, error) {
	w := Witness{Theta: theta}
	f := d.ds.Features()
	for _, s := range idx {
		leaf, ok := d.leafOf[s]
		if !ok {
			return Witness{}, fmt.Errorf("%w: sample %d is not in the peer's data", ErrBatch, s)
		}
		path, err := d.tree.Path(leaf)
		if err != nil {
			return Witness{}, err
		}
		w.Batch = append(w.Batch, Sample{Pixels: d.ds.Images[s*f : (s+1)*f], Label: d.ds.Labels[s]})
		w.Indices = append(w.Indices, uint64(leaf))
		w.Paths = append(w.Paths, path)
	}
	return w, nil
}

// Prover is a peer that trains on private data and answers challenges
// with proofs. Its data never leaves it: it publishes the Contribution and
// proofs only.
type Prover struct {
	keys   *Keys
	tr     *Trainer
	data   *PeerData
	thetas []Theta // θ before each step of the round, and after the last
	ctx    Context
	seed   uint64 // the round's batch seed
}

// NewProver trains on the shard's samples of ds from θ; the keys must hold
// a proving key for p.
func NewProver(keys *Keys, theta Theta, ds *data.Dataset, shard []int, seed uint64) (*Prover, error) {
	tr, err := NewTrainer(keys.Params, theta, ds, shard, seed)
	if err != nil {
		return nil, err
	}
	pd, err := NewPeerData(keys.Params, ds, shard)
	if err != nil {
		return nil, err
	}
	return &Prover{keys: keys, tr: tr, data: pd}, nil
}

// DataRoot is the root the peer publishes when it joins.
func (pr *Prover) DataRoot() fr.Element { return pr.data.Root() }

// Theta is the current parameter vector.
func (pr *Prover) Theta() Theta { return pr.tr.Theta() }

// Round trains steps inner steps on the batches that the run's sampler
// draws with the round's batch seed, and returns the contribution to
// publish. A Prover is one peer's: it trains one round at a time (the
// caller serializes Round, Delta and Last).
func (pr *Prover) Round(ctx Context, seed uint64, steps int) (Contribution, error) {
	p := pr.keys.Params
	pr.ctx, pr.seed = ctx, seed
	if err := pr.tr.StartRound(seed); err != nil {
		return Contribution{}, err
	}
	pr.thetas = append(pr.thetas[:0], pr.tr.Theta())
	c := Contribution{Context: ctx, DataRoot: pr.data.Root(), DataSize: pr.data.Size(), Seed: seed}
	for range steps {
		if err := pr.tr.Step(); err != nil {
			return c, err
		}
		pr.thetas = append(pr.thetas, pr.tr.Theta())
	}
	// The commitments cost more than the steps (a sponge over θ each):
	// made on all cores once the steps are taken.
	thetas := pr.thetas
	c.Steps = make([]fr.Element, len(thetas))
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(thetas))
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(thetas); i += workers {
				c.Steps[i] = p.CommitTheta(thetas[i])
			}
		}()
	}
	wg.Wait()
	return c, nil
}

// Respond proves step s (0-based) of the last round: Steps[s] → Steps[s+1].
func (pr *Prover) Respond(s int) (Bundle, error) { return pr.Last().Respond(s) }

// Last returns the last round trained, to answer for later: a node proves
// the step the beacon draws while it trains the next round.
func (pr *Prover) Last() *Proven {
	return &Proven{keys: pr.keys, data: pr.data, thetas: slices.Clone(pr.thetas), ctx: pr.ctx, seed: pr.seed}
}

// Proven is a trained round that its prover can still answer for: θ before
// each step and after the last, with the round's context and batch seed.
type Proven struct {
	keys   *Keys
	data   *PeerData
	thetas []Theta
	ctx    Context
	seed   uint64
}

// Steps is the number of steps the round took.
func (r *Proven) Steps() int { return len(r.thetas) - 1 }

// Respond proves step s (0-based) of the round: Steps[s] → Steps[s+1].
func (r *Proven) Respond(s int) (Bundle, error) {
	if s < 0 || s+1 >= len(r.thetas) {
		return Bundle{}, fmt.Errorf("zk: no step %d in the round's %d", s, len(r.thetas)-1)
	}
	return r.prove(s, Draw{Seed: r.seed, Step: uint64(s), Size: r.data.Size()})
}

// RespondOther proves a true statement that is not the round's step s:
// from θ before step s, one step on the batch the sampler draws at step
// other. A verifier must refuse it (CheckResponse: not the drawn batch);
// it is what a peer that forges its proofs sends (tests and demos).
func (r *Proven) RespondOther(s, other int) (Bundle, error) {
	if s < 0 || s+1 >= len(r.thetas) {
		return Bundle{}, fmt.Errorf("zk: no step %d in the round's %d", s, len(r.thetas)-1)
	}
	return r.prove(s, Draw{Seed: r.seed, Step: uint64(other), Size: r.data.Size()})
}

func (r *Proven) prove(s int, draw Draw) (Bundle, error) {
	p := r.keys.Params
	idx, err := r.data.Drawn(draw.Seed, draw.Step)
	if err != nil {
		return Bundle{}, err
	}
	w, err := r.data.Witness(r.thetas[s], idx)
	if err != nil {
		return Bundle{}, err
	}
	out := r.thetas[s+1]
	if draw.Step != uint64(s) {
		batch := make([]Sample, len(idx))
		f := r.data.ds.Features()
		for i, j := range idx {
			batch[i] = Sample{Pixels: r.data.ds.Images[j*f : (j+1)*f], Label: r.data.ds.Labels[j]}
		}
		if out, err = p.Step(r.thetas[s], batch); err != nil {
			return Bundle{}, err
		}
	}
	st := Statement{
		ThetaIn: p.CommitTheta(r.thetas[s]), ThetaOut: p.CommitTheta(out),
		DataRoot: r.data.Root(), Draw: draw, Context: r.ctx,
	}
	proof, err := r.keys.Prove(st, w)
	if err != nil {
		return Bundle{}, err
	}
	return NewBundle(p, st, proof), nil
}

// Loss is the mean softmax cross-entropy of the round's steps on their
// batches, each at θ before the step (as a float trainer reports its
// inner loss).
func (r *Proven) Loss() float64 {
	p := r.keys.Params
	f := r.data.ds.Features()
	z := make([]int64, p.Classes)
	var sum float64
	n := 0
	for s := range r.Steps() {
		idx, err := r.data.Drawn(r.seed, uint64(s))
		if err != nil {
			continue
		}
		for _, j := range idx {
			p.Logits(r.thetas[s], r.data.ds.Images[j*f:(j+1)*f], z)
			sum += crossEntropy(z[:p.Classes], int(r.data.ds.Labels[j]))
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// crossEntropy is −log softmax(z)[label] of fixed-point logits z.
func crossEntropy(z []int64, label int) float64 {
	m := z[0]
	for _, v := range z {
		m = max(m, v)
	}
	var den float64
	for _, v := range z {
		den += math.Exp(float64(v-m) / (1 << FracZ))
	}
	return math.Log(den) - float64(z[label]-m)/(1<<FracZ)
}

// CheckResponse verifies a challenge's answer: the bundle must be for the
// contribution's context and data root, for the batch the sampler drew at
// step s, prove exactly step s's two commitments, and verify under the
// run's key.
func CheckResponse(keys *Keys, c Contribution, s int, b Bundle) error {
	if s < 0 || s+1 >= len(c.Steps) {
		return fmt.Errorf("%w: step %d is not in the contribution", ErrProof, s)
	}
	if b.Params != keys.Params {
		return fmt.Errorf("%w: proof for circuit %+v, the run uses %+v", ErrProof, b.Params, keys.Params)
	}
	st, err := b.Statement()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProof, err)
	}
	switch {
	case st.Context != c.Context:
		return fmt.Errorf("%w: proof is for run %x round %d peer %s", ErrProof, st.Context.Run[:4], st.Context.Round, st.Context.Peer)
	case !st.DataRoot.Equal(&c.DataRoot):
		return fmt.Errorf("%w: proof is over another data root", ErrProof)
	case st.Draw != (Draw{Seed: c.Seed, Step: uint64(s), Size: c.DataSize}):
		return fmt.Errorf("%w: proof is for batch %d of seed %#x over %d samples, not the batch drawn at step %d (seed %#x, %d samples)",
			ErrProof, st.Draw.Step, st.Draw.Seed, st.Draw.Size, s, c.Seed, c.DataSize)
	case !st.ThetaIn.Equal(&c.Steps[s]) || !st.ThetaOut.Equal(&c.Steps[s+1]):
		return fmt.Errorf("%w: proof is not of step %d's committed states", ErrProof, s)
	}
	return keys.Verify(st, b.Proof)
}
