package zk

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/consensys/gnark-crypto/ecc"
	"github.com/consensys/gnark-crypto/ecc/bn254"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark/backend/groth16"
	groth16bn254 "github.com/consensys/gnark/backend/groth16/bn254"
)

// Key files come from wherever an operator or an auditor got them: a
// ceremony's output, a download, a copy from another directory. gnark's
// decoders trust the counts in them: a slice's declared length is
// allocated before a point of it is read (2³²−1 points are 256 GiB, a fatal
// out-of-memory error that no recover catches), and so are a proving key's
// wire flags and its domain's twiddles. The walks below read every count
// a decoder will allocate from and check it against the bytes that follow
// it, or against the circuit, before the decoder runs.

// keyWalk reads a key file's encoding without decoding its points.
type keyWalk struct {
	r   *bufio.Reader
	off int64
}

func (w *keyWalk) skip(n int64, what string) error {
	if m, err := w.r.Discard(int(n)); err != nil {
		return fmt.Errorf("truncated in %s at byte %d", what, w.off+int64(m))
	}
	w.off += n
	return nil
}

func (w *keyWalk) u32(what string) (uint64, error) {
	var b [4]byte
	if _, err := io.ReadFull(w.r, b[:]); err != nil {
		return 0, fmt.Errorf("truncated in %s at byte %d", what, w.off)
	}
	w.off += 4
	return uint64(binary.BigEndian.Uint32(b[:])), nil
}

func (w *keyWalk) u64(what string) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(w.r, b[:]); err != nil {
		return 0, fmt.Errorf("truncated in %s at byte %d", what, w.off)
	}
	w.off += 8
	return binary.BigEndian.Uint64(b[:]), nil
}

// point skips one point of compressed size size, twice that when its
// first byte's top two bits say it is uncompressed (as the decoder reads
// it).
func (w *keyWalk) point(size int64, what string) error {
	b, err := w.r.Peek(1)
	if err != nil {
		return fmt.Errorf("truncated in %s at byte %d", what, w.off)
	}
	if b[0]>>6 == 0 {
		size *= 2
	}
	return w.skip(size, what)
}

// points skips a slice of points whose count may be at most limit.
func (w *keyWalk) points(size int64, limit uint64, what string) (uint64, error) {
	n, err := w.u32(what)
	if err != nil {
		return 0, err
	}
	if n > limit {
		return 0, fmt.Errorf("%s declares %d points, at most %d fit", what, n, limit)
	}
	for range n {
		if err := w.point(size, what); err != nil {
			return 0, err
		}
	}
	return n, nil
}

const (
	g1Compressed = bn254.SizeOfG1AffineCompressed
	g2Compressed = bn254.SizeOfG2AffineCompressed
)

// checkVKCounts walks a serialized BN254 Groth16 verifying key (gnark's
// layout: α, β, β₂, γ₂, δ, δ₂, the points K, the public-and-committed
// index lists, the commitment keys) and checks each count against the
// bytes left.
func checkVKCounts(b []byte) error {
	w := &keyWalk{r: bufio.NewReader(bytes.NewReader(b))}
	left := func() uint64 { return uint64(int64(len(b)) - w.off) }
	for i, size := range []int64{g1Compressed, g1Compressed, g2Compressed, g2Compressed, g1Compressed, g2Compressed} {
		if err := w.point(size, fmt.Sprintf("point %d", i)); err != nil {
			return err
		}
	}
	if _, err := w.points(g1Compressed, left()/g1Compressed, "K"); err != nil {
		return err
	}
	lists, err := w.u32("the committed indices")
	if err != nil {
		return err
	}
	if lists > left()/4 {
		return fmt.Errorf("%d lists of committed indices declared, room for %d", lists, left()/4)
	}
	for range lists {
		n, err := w.u32("the committed indices")
		if err != nil {
			return err
		}
		if n > left()/8 {
			return fmt.Errorf("%d committed indices declared, room for %d", n, left()/8)
		}
		if err := w.skip(int64(n)*8, "the committed indices"); err != nil {
			return err
		}
	}
	// The commitment keys are read one at a time (appended), each of two
	// fixed-size points: their count allocates nothing.
	return nil
}

// checkPKLayout walks a serialized BN254 Groth16 proving key (gnark's
// layout: the domain, α, β, δ, the points A, B, Z and K, β₂, δ₂, the
// points B₂, the wire count, the counts of points at infinity, one flag
// per wire for A and for B, the commitment keys) and checks it against
// the circuit it must serve: its domain fits the circuit, its wire count
// the circuit's, and no slice holds more points than the circuit has
// wires or domain points.
func checkPKLayout(r io.Reader, constraints, wires int) error {
	w := &keyWalk{r: bufio.NewReaderSize(r, 1<<20)}
	card, err := w.u64("the domain")
	if err != nil {
		return err
	}
	// A ceremony's keys have its phase 1's domain, which may be larger
	// than the circuit needs (a phase 1 made for a bigger circuit).
	if least := ecc.NextPowerOfTwo(uint64(constraints)); card < least || card > 1<<MaxCeremonyPower || card&(card-1) != 0 {
		return fmt.Errorf("a domain of %d points, where the circuit needs a power of two from %d to 2^%d", card, least, MaxCeremonyPower)
	}
	if err := w.skip(5*fr.Bytes+1, "the domain"); err != nil {
		return err
	}
	for i, size := range []int64{g1Compressed, g1Compressed, g1Compressed} {
		if err := w.point(size, fmt.Sprintf("point %d", i)); err != nil {
			return err
		}
	}
	limit := max(uint64(wires), card)
	for _, what := range []string{"A", "B", "Z", "K"} {
		if _, err := w.points(g1Compressed, limit, what); err != nil {
			return err
		}
	}
	for i, size := range []int64{g2Compressed, g2Compressed} {
		if err := w.point(size, fmt.Sprintf("G2 point %d", i)); err != nil {
			return err
		}
	}
	if _, err := w.points(g2Compressed, limit, "B₂"); err != nil {
		return err
	}
	nw, err := w.u64("the wire count")
	if err != nil {
		return err
	}
	if nw != uint64(wires) {
		return fmt.Errorf("a key for a circuit of %d wires, not this one of %d", nw, wires)
	}
	for _, what := range []string{"the count at infinity in A", "the count at infinity in B"} {
		n, err := w.u64(what)
		if err != nil {
			return err
		}
		if n > nw {
			return fmt.Errorf("%s is %d, of %d wires", what, n, nw)
		}
	}
	if err := w.skip(2*int64(nw), "the wire flags"); err != nil {
		return err
	}
	nc, err := w.u32("the commitment keys")
	if err != nil {
		return err
	}
	if nc > maxCommitments {
		return fmt.Errorf("%d commitment keys declared (limit %d)", nc, maxCommitments)
	}
	for i := range nc {
		for _, what := range []string{"basis", "σ basis"} {
			if _, err := w.points(g1Compressed, uint64(wires), fmt.Sprintf("commitment key %d's %s", i, what)); err != nil {
				return err
			}
		}
	}
	if _, err := w.r.Peek(1); err != io.EOF {
		return fmt.Errorf("bytes after the key, at byte %d", w.off)
	}
	return nil
}

// sameSetup reports whether a proving key and a verifying key come from
// one setup: they share α, β and δ in G1 and β and δ in G2, which a setup
// (single-party or a ceremony's) draws afresh, and the number of
// commitment keys.
func sameSetup(pk groth16.ProvingKey, vk groth16.VerifyingKey) error {
	p, ok1 := pk.(*groth16bn254.ProvingKey)
	v, ok2 := vk.(*groth16bn254.VerifyingKey)
	if !ok1 || !ok2 {
		return errors.New("keys of another curve than BN254")
	}
	if !p.G1.Alpha.Equal(&v.G1.Alpha) || !p.G1.Beta.Equal(&v.G1.Beta) || !p.G1.Delta.Equal(&v.G1.Delta) ||
		!p.G2.Beta.Equal(&v.G2.Beta) || !p.G2.Delta.Equal(&v.G2.Delta) {
		return errors.New("the proving key comes from another setup than the verifying key (its α, β or δ differ): every proof made with it would fail")
	}
	if len(p.CommitmentKeys) != len(v.CommitmentKeys) {
		return fmt.Errorf("the proving key has %d commitment keys, the verifying key %d", len(p.CommitmentKeys), len(v.CommitmentKeys))
	}
	return nil
}
