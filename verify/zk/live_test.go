package zk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/klauspost/compress/zstd"
)

// TestPrivateUpdate: a private peer trains a round from the agreed state;
// its exact change, encoded and decoded as a member would, links to its
// commitments, and a proof of a drawn step of that chain checks. A change
// that differs in one unit, a chain that starts elsewhere, or an update
// against another agreed state does not link.
func TestPrivateUpdate(t *testing.T) {
	keys := keysForSmall(t)
	ds := tinyData(5, 8)
	shard := []int{0, 1, 2, 3, 4, 5, 6, 7}
	pr, err := NewProver(keys, randTheta(small, 1, 1), ds, shard, 7)
	if err != nil {
		t.Fatal(err)
	}
	agreed := randTheta(small, 2, 1).Float(nil) // the run's state, as floats
	start, err := ThetaFromFloat(agreed)
	if err != nil {
		t.Fatal(err)
	}
	if err := pr.StartFrom(start); err != nil {
		t.Fatal(err)
	}
	ctx := Context{Round: 3, Peer: "12D3KooWzk"}
	c, err := pr.Round(ctx, 0xbeef, 4)
	if err != nil {
		t.Fatal(err)
	}
	d, err := pr.Delta()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeDelta(d.Encode(), small.NumParams())
	if err != nil {
		t.Fatal(err)
	}
	if err := small.CheckUpdate(agreed, c, got); err != nil {
		t.Fatalf("honest update: %v", err)
	}
	s := ChallengeStep([32]byte{4}, ctx, len(c.Steps)-1)
	b, err := pr.Respond(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckResponse(verifierOnly(t, keys), c, s, b); err != nil {
		t.Fatalf("the drawn step's proof: %v", err)
	}
	if f := got.Float(nil); len(f) != small.NumParams() || float64(f[0]) != float64(got[0])/(1<<FracTheta) {
		t.Errorf("float change %v for %d", f[:1], got[0])
	}

	off := append(Delta(nil), got...)
	off[len(off)/2]++
	if err := small.CheckUpdate(agreed, c, off); !errors.Is(err, ErrUpdate) {
		t.Errorf("a change off by one unit: %v", err)
	}
	other := append([]float32(nil), agreed...)
	other[0] += 0.5
	if err := small.CheckUpdate(other, c, got); !errors.Is(err, ErrUpdate) {
		t.Errorf("against another agreed state: %v", err)
	}
	// A chain from the peer's own state rather than the agreed one.
	own, err := NewProver(keys, randTheta(small, 1, 1), ds, shard, 7)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := own.Round(ctx, 0xbeef, 4)
	if err != nil {
		t.Fatal(err)
	}
	od, _ := own.Delta()
	if err := small.CheckUpdate(agreed, oc, od); !errors.Is(err, ErrUpdate) {
		t.Errorf("a chain that does not start at the agreed state: %v", err)
	}
	// The right end, but a chain that starts elsewhere.
	moved := Contribution{Steps: append([]fr.Element{c.Steps[1]}, c.Steps[1:]...)}
	if err := small.CheckUpdate(agreed, moved, got); !errors.Is(err, ErrUpdate) {
		t.Errorf("a chain whose start is not the agreed state's: %v", err)
	}
	if err := small.CheckUpdate(agreed, Contribution{Steps: c.Steps[:1]}, got); !errors.Is(err, ErrUpdate) {
		t.Errorf("a chain of one commitment: %v", err)
	}
}

// TestDecodeDeltaRefuses: what a peer sends is decoded within bounds.
func TestDecodeDeltaRefuses(t *testing.T) {
	const n = 6
	zst := func(raw []byte) []byte {
		enc, _ := zstd.NewWriter(nil)
		defer enc.Close()
		return enc.EncodeAll(raw, nil)
	}
	varints := func(vs ...int64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.AppendVarint(b, v)
		}
		return b
	}
	ok := Delta{1, -2, 3, 0, 1 << 20, -(1 << 20)}
	if d, err := DecodeDelta(ok.Encode(), n); err != nil || !slices.Equal(d, ok) {
		t.Fatalf("round trip: %v %v", d, err)
	}
	for name, b := range map[string][]byte{
		"not zstd":        []byte("not zstd at all"),
		"too few":         zst(varints(1, 2, 3)),
		"too many":        zst(varints(1, 2, 3, 4, 5, 6, 7)),
		"out of range":    zst(varints(1, 2, 3, 4, 5, deltaBound)),
		"trailing bytes":  zst(append(varints(1, 2, 3, 4, 5, 6), 0x80)),
		"a bomb":          zst(bytes.Repeat([]byte{0}, 1<<20)),
		"truncated frame": ok.Encode()[:5],
	} {
		if _, err := DecodeDelta(b, n); !errors.Is(err, ErrUpdate) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := (Delta{ThetaBound}).Apply(Theta{1}); !errors.Is(err, ErrUpdate) {
		t.Errorf("a change past the range: %v", err)
	}
}
