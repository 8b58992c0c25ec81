package trainer

import (
	"crypto/sha256"
	"fmt"
	"math"
	"sync"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/compress"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/zk"
)

// A private peer's update (runspec.Privacy, consensus/private.go): the
// payload is the exact fixed-point change of its round (zk.Delta), the
// Segments are the commitments to its parameters before its first inner
// step and after each, and it carries no error-feedback residual.

// validatePrivate checks what can be checked of a private update without
// the round's state: its size, that its change decodes within bounds, its
// samples and loss, and its norm. The decoded form is the pseudo-gradient
// θ_0 − θ_K as a dense update, which OuterStep aggregates with the others.
func validatePrivate(spec runspec.Spec, u *consensus.Update, d int) (*compress.Sparse, error) {
	p := spec.ZKParams()
	switch {
	case len(u.Payload) > spec.Rounds.MaxMessage:
		return nil, fmt.Errorf("oversize: payload of %d bytes exceeds %d", len(u.Payload), spec.Rounds.MaxMessage)
	case math.IsNaN(float64(u.Loss)) || math.IsInf(float64(u.Loss), 0) || u.Loss < 0:
		return nil, fmt.Errorf("non-finite: training loss %v", u.Loss)
	case !u.ResidualIn.IsZero() || !u.ResidualOut.IsZero():
		return nil, fmt.Errorf("malformed: a private update carries no error-feedback residual")
	case u.Samples != uint64(spec.Inner.Steps*p.Batch):
		return nil, fmt.Errorf("malformed: %d samples, a private peer's round takes %d", u.Samples, spec.Inner.Steps*p.Batch)
	case d != p.NumParams():
		return nil, fmt.Errorf("malformed: the model has %d parameters, the circuit %d", d, p.NumParams())
	}
	delta, err := zk.DecodeDelta(u.Payload, d)
	if err != nil {
		return nil, fmt.Errorf("malformed: %v", err)
	}
	s := &compress.Sparse{D: d, Idx: make([]uint32, d), Val: delta.Float(nil), Threshold: 0, Bits: 32, Chunk: d}
	var n2 float64
	for i, v := range s.Val {
		s.Idx[i] = uint32(i)
		s.Val[i] = -v // θ_0 − θ_K, as every update's pseudo-gradient
		n2 += float64(v) * float64(v)
	}
	if n := math.Sqrt(n2); !(n <= spec.Rounds.MaxUpdateNorm) {
		return nil, fmt.Errorf("bad norm: update norm %.4g exceeds %.4g", n, spec.Rounds.MaxUpdateNorm)
	}
	return s, nil
}

// Contribution is what a private update states for proofs: its chain of
// commitments under its author's pinned data root and size, with its
// batch seed.
func Contribution(spec runspec.Spec, u *consensus.Update) (zk.Contribution, error) {
	pp, ok := spec.PrivatePeer(string(u.From))
	if !ok {
		return zk.Contribution{}, fmt.Errorf("%s is not a private peer of the run", u.From)
	}
	root, err := zk.ParseHex(pp.DataRoot)
	if err != nil {
		return zk.Contribution{}, err
	}
	steps := make([][32]byte, len(u.Segments))
	for i, h := range u.Segments {
		steps[i] = h
	}
	return zk.ContributionOf(zk.Context{Run: spec.RunID(), Round: u.Round, Peer: string(u.From)}, root, pp.DataSize, u.Seed, steps)
}

// CheckLink implements consensus.Linker: a private update's change must
// lead from the first of its commitments, the agreed state base's, to the
// last (zk.Params.CheckUpdate).
func (a *App) CheckLink(u *consensus.Update, _ any, base []float32) error {
	return CheckPrivateLink(a.spec, u, base)
}

// CheckPrivateLink links a private update's change to its commitments
// from base, the agreed state of its round (as every node does before it
// takes the update, and an auditor again).
func CheckPrivateLink(spec runspec.Spec, u *consensus.Update, base []float32) error {
	c, err := Contribution(spec, u)
	if err != nil {
		return err
	}
	delta, err := zk.DecodeDelta(u.Payload, len(base))
	if err != nil {
		return fmt.Errorf("malformed: %v", err)
	}
	if err := spec.ZKParams().CheckUpdate(base, c, delta); err != nil {
		return fmt.Errorf("bad commitment: %v", err)
	}
	return nil
}

// Proofs verifies private peers' proofs (consensus.ProofChecker) with the
// run's verifying key, and remembers each verdict on a (update, step,
// proof), so that a proof that reaches a node in several verdicts, and in
// the values that carry them, is verified once.
type Proofs struct {
	spec runspec.Spec
	keys *zk.Keys

	mu       sync.Mutex
	seen     map[[32]byte]error
	verified int // distinct proofs that verified
	failed   int // distinct proofs that did not
}

// NewProofs returns the checker of a run's proofs; keys must hold the
// verifying key whose hash the spec pins.
func NewProofs(spec runspec.Spec, keys *zk.Keys) (*Proofs, error) {
	if keys == nil || keys.VK == nil {
		return nil, fmt.Errorf("trainer: a run with private peers needs the verifying key")
	}
	if h := zk.VKHash(keys.VK); h != spec.Privacy.VKSHA256 {
		return nil, fmt.Errorf("trainer: verifying key %s, the run pins %s", h, spec.Privacy.VKSHA256)
	}
	if keys.Params != spec.ZKParams() {
		return nil, fmt.Errorf("trainer: keys for circuit %+v, the run proves %+v", keys.Params, spec.ZKParams())
	}
	return &Proofs{spec: spec, keys: keys, seen: map[[32]byte]error{}}, nil
}

// maxSeen bounds the verdicts a Proofs remembers.
const maxSeen = 1 << 12

// CheckProof implements consensus.ProofChecker.
func (p *Proofs) CheckProof(u *consensus.Update, step int, proof []byte) error {
	run := p.spec.RunID()
	id := u.ID(run)
	h := sha256.New()
	h.Write(id[:])
	fmt.Fprintf(h, "/%d/", step)
	h.Write(proof)
	var k [32]byte
	h.Sum(k[:0])
	p.mu.Lock()
	err, ok := p.seen[k]
	p.mu.Unlock()
	if ok {
		return err
	}
	err = p.check(u, step, proof)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.seen[k]; !ok {
		if len(p.seen) >= maxSeen {
			clear(p.seen)
		}
		p.seen[k] = err
		if err == nil {
			p.verified++
		} else {
			p.failed++
		}
	}
	return err
}

func (p *Proofs) check(u *consensus.Update, step int, proof []byte) error {
	c, err := Contribution(p.spec, u)
	if err != nil {
		return err
	}
	b, err := zk.DecodeBundle(proof)
	if err != nil {
		return err
	}
	return zk.CheckResponse(p.keys, c, step, b)
}

// Counts returns the distinct proofs verified and refused so far.
func (p *Proofs) Counts() (verified, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.verified, p.failed
}
