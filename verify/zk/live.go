package zk

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/klauspost/compress/zstd"
)

// A private peer's update in a live run. The run aggregates what the peer
// proves it computed: the peer starts each round from the agreed state,
// quantized (ThetaFromFloat), trains its inner steps in fixed point,
// commits to θ after every step (Contribution.Steps) and sends the exact
// fixed-point change of the round, Δ = θ_K − θ_0. Any member links the
// update to the chain of commitments before it counts it (CheckUpdate):
// the first commitment must be the agreed state's, and the last that of
// the agreed state plus Δ. A proof of any one step (Prover.Respond,
// CheckResponse) then vouches for that step of the very chain whose end
// the run aggregates. The node (node/private.go) and the protocol
// (consensus/private.go) carry this into live runs.

// ErrUpdate means a private update does not match its commitments, or
// cannot be decoded.
var ErrUpdate = errors.New("zk: private update")

// Delta is the fixed-point change of a round's inner steps, θ_K − θ_0, in
// θ's layout.
type Delta []int64

// deltaBound bounds |δ|: the difference of two values in (−ThetaBound,
// ThetaBound).
const deltaBound = 2 * ThetaBound

// Apply returns θ + Δ. It fails if a value leaves the circuit's range of
// θ, which no proven step can reach.
func (d Delta) Apply(theta Theta) (Theta, error) {
	if len(d) != len(theta) {
		return nil, fmt.Errorf("%w: %d changes for %d parameters", ErrUpdate, len(d), len(theta))
	}
	out := make(Theta, len(theta))
	for i, v := range theta {
		w := v + d[i]
		if w <= -ThetaBound || w >= ThetaBound {
			return nil, fmt.Errorf("%w: parameter %d leaves the fixed-point range", ErrUpdate, i)
		}
		out[i] = w
	}
	return out, nil
}

// Float returns Δ as the float change the run aggregates (Δ / 2^FracTheta,
// the same scale as Theta.Float).
func (d Delta) Float(dst []float32) []float32 { return Theta(d).Float(dst) }

// Encode serializes Δ: zig-zag varints, zstd-compressed. The encoding is
// exact: what a member decodes is what the peer committed to.
func (d Delta) Encode() []byte {
	raw := make([]byte, 0, 3*len(d))
	for _, v := range d {
		raw = binary.AppendVarint(raw, v)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		panic(fmt.Sprintf("zk: zstd writer: %v", err)) // no options that can fail
	}
	defer enc.Close()
	return enc.EncodeAll(raw, nil)
}

// maxVarint is the longest varint of a value below deltaBound in size.
const maxVarint = 5

// DecodeDelta decodes n changes from b, as a member decodes a peer's: at
// most n·maxVarint bytes are decompressed, and every value must be in
// range and used.
func DecodeDelta(b []byte, n int) (Delta, error) {
	if n < 1 {
		return nil, fmt.Errorf("%w: %d parameters", ErrUpdate, n)
	}
	dec, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(n*maxVarint)+1<<10))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUpdate, err)
	}
	defer dec.Close()
	raw, err := io.ReadAll(io.LimitReader(dec, int64(n*maxVarint)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUpdate, err)
	}
	if len(raw) > n*maxVarint {
		return nil, fmt.Errorf("%w: more than %d bytes for %d changes", ErrUpdate, n*maxVarint, n)
	}
	d := make(Delta, n)
	for i := range d {
		v, k := binary.Varint(raw)
		if k <= 0 {
			return nil, fmt.Errorf("%w: change %d of %d is missing or malformed", ErrUpdate, i, n)
		}
		if v <= -deltaBound || v >= deltaBound {
			return nil, fmt.Errorf("%w: change %d out of range", ErrUpdate, i)
		}
		d[i], raw = v, raw[k:]
	}
	if len(raw) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the %d changes", ErrUpdate, len(raw), n)
	}
	return d, nil
}

// CheckUpdate links a private update to its commitments: the contribution
// must start at the commitment to the agreed state base (quantized) and
// end at the commitment to base + Δ. It checks no step in between: a
// proof of a drawn step does that.
func (p Params) CheckUpdate(base []float32, c Contribution, d Delta) error {
	if len(c.Steps) < 2 {
		return fmt.Errorf("%w: %d commitments, want one per step and the start", ErrUpdate, len(c.Steps))
	}
	if len(base) != p.NumParams() {
		return fmt.Errorf("%w: the agreed state has %d parameters, the circuit %d", ErrUpdate, len(base), p.NumParams())
	}
	start, err := ThetaFromFloat(base)
	if err != nil {
		return fmt.Errorf("%w: the agreed state: %v", ErrUpdate, err)
	}
	if h := p.CommitTheta(start); !h.Equal(&c.Steps[0]) {
		return fmt.Errorf("%w: the first commitment is not the agreed state's", ErrUpdate)
	}
	end, err := d.Apply(start)
	if err != nil {
		return err
	}
	if h := p.CommitTheta(end); !h.Equal(&c.Steps[len(c.Steps)-1]) {
		return fmt.Errorf("%w: the last commitment is not the agreed state plus the update", ErrUpdate)
	}
	return nil
}

// SetTheta replaces the trainer's parameters (a new round's agreed state).
func (t *Trainer) SetTheta(theta Theta) error {
	if len(theta) != t.p.NumParams() {
		return fmt.Errorf("%w: %d parameters, want %d", ErrParams, len(theta), t.p.NumParams())
	}
	t.theta = append(Theta(nil), theta...) // a Prover keeps the old slices of its last round
	return nil
}

// StartFrom sets the θ the next Round trains from: the run's agreed state,
// quantized.
func (pr *Prover) StartFrom(theta Theta) error { return pr.tr.SetTheta(theta) }

// Delta returns the last round's change, θ_K − θ_0.
func (pr *Prover) Delta() (Delta, error) {
	if len(pr.thetas) < 2 {
		return nil, fmt.Errorf("zk: no round trained")
	}
	first, last := pr.thetas[0], pr.thetas[len(pr.thetas)-1]
	d := make(Delta, len(first))
	for i := range d {
		d[i] = last[i] - first[i]
	}
	return d, nil
}

// ContributionOf is the contribution a private update states: its chain
// of step commitments (32-byte big-endian canonical field elements, the
// first the agreed state's), under the data root and size the run pins
// for its author, with the round's batch seed. It fails on a commitment
// that is not a canonical field element.
func ContributionOf(ctx Context, root fr.Element, size, seed uint64, steps [][32]byte) (Contribution, error) {
	c := Contribution{Context: ctx, DataRoot: root, DataSize: size, Seed: seed, Steps: make([]fr.Element, len(steps))}
	for i := range steps {
		if err := c.Steps[i].SetBytesCanonical(steps[i][:]); err != nil {
			return Contribution{}, fmt.Errorf("%w: commitment %d is not a field element", ErrUpdate, i)
		}
	}
	return c, nil
}

// Commitments returns the contribution's step commitments as 32-byte
// big-endian field elements, as an update carries them.
func (c Contribution) Commitments() [][32]byte {
	out := make([][32]byte, len(c.Steps))
	for i := range c.Steps {
		out[i] = c.Steps[i].Bytes()
	}
	return out
}

// circuitVersion names the circuit's statement and gadgets, and the
// format of its keys directory; change it with any change to what
// StepCircuit constrains (LoadProver refuses keys of another constraint
// system, but a cache keyed by CircuitID would then hold them).
//
// v5: lookups in own tables, sponge leaves. v6: the same circuit, its
// keys directories with circuit.json (LoadProver refuses one without):
// the demo's cache of v5 keys has none.
const circuitVersion = "step/v6"

// CircuitID names the circuit of p for caches of its keys: its version,
// its parameters, and the commitments the circuit computes (of a fixed θ
// and a fixed sample), so that keys cached for another commitment scheme
// are never taken for this one's.
func CircuitID(p Params) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s/%d/%d/%d/%d/%d/", circuitVersion, p.Features, p.Classes, p.Batch, p.Depth, p.LR)
	theta := make(Theta, p.NumParams())
	for i := range theta {
		theta[i] = int64(i%7) - 3
	}
	c := p.CommitTheta(theta)
	b := c.Bytes()
	h.Write(b[:])
	l := Leaf(Sample{Pixels: make([]byte, p.Features), Label: 1})
	b = l.Bytes()
	h.Write(b[:])
	return hex.EncodeToString(h.Sum(nil))[:16]
}
