package zk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	groth16bn254 "github.com/consensys/gnark/backend/groth16/bn254"
)

// hugeCount is an empty proof's encoding (points at infinity, no
// commitments) with its commitment count at offset, a peer's bytes, set to
// 2³²−1: gnark's decoder allocates that many points (256 GiB) before it
// reads one, which no recover catches.
func hugeCount(t *testing.T, enc func(w *bytes.Buffer) error, offset int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := enc(&buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if len(b) < offset+4 || binary.BigEndian.Uint32(b[offset:]) != 0 {
		t.Fatalf("the encoding has no empty count at offset %d: % x", offset, b)
	}
	binary.BigEndian.PutUint32(b[offset:], 1<<32-1)
	return b
}

// TestVerifyRefusesHugeCount: a proof of a few bytes that declares four
// billion commitments is refused with ErrProof before gnark decodes it (a
// hostile private peer signs such an answer: every node that verifies it
// would die allocating 256 GiB).
func TestVerifyRefusesHugeCount(t *testing.T) {
	b := hugeCount(t, func(w *bytes.Buffer) error { _, err := new(groth16bn254.Proof).WriteTo(w); return err },
		2*32+64) // after Ar, Bs and Krs, compressed
	k := &Keys{Params: small}
	if err := k.Verify(Statement{}, b); !errors.Is(err, ErrProof) || !strings.Contains(err.Error(), "commitments declared") {
		t.Fatalf("a proof declaring 2^32-1 commitments: %v, want ErrProof for its count", err)
	}
	// The same count after uncompressed points is found too.
	var p groth16bn254.Proof
	var buf bytes.Buffer
	if _, err := p.WriteRawTo(&buf); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	binary.BigEndian.PutUint32(raw[2*64+128:], 1<<32-1)
	if err := k.Verify(Statement{}, raw); !errors.Is(err, ErrProof) || !strings.Contains(err.Error(), "commitments declared") {
		t.Fatalf("an uncompressed proof declaring 2^32-1 commitments: %v, want ErrProof for its count", err)
	}
}

// TestVerifierFromBytesRefusesHugeCount: a ledger's key entry is the
// keeper's word until it hashes to what the spec pins; a key whose point
// count says 2^32-1 is refused before gnark decodes it (an audit of a
// hostile keeper's ledger died allocating 256 GiB).
func TestVerifierFromBytesRefusesHugeCount(t *testing.T) {
	vk := keysForSmall(t).VK
	want := VKHash(vk)
	if _, err := VerifierFromBytes(small, VKBytes(vk), want); err != nil {
		t.Fatalf("the honest key: %v", err)
	}
	b := VKBytes(vk)
	const kAt = 32 + 32 + 64 + 64 + 32 + 64 // α, β, β, γ, δ, δ: then the count of K
	if n := binary.BigEndian.Uint32(b[kAt:]); n == 0 || n > 64 {
		t.Fatalf("no count of K at offset %d (%d)", kAt, n)
	}
	binary.BigEndian.PutUint32(b[kAt:], 1<<32-1)
	if _, err := VerifierFromBytes(small, b, want); !errors.Is(err, ErrKeys) {
		t.Fatalf("a key declaring 2^32-1 points: %v, want ErrKeys", err)
	}
}

// savedSmall saves the small circuit's keys (with the proving key) in a
// fresh directory.
func savedSmall(t *testing.T, k *Keys) string {
	t.Helper()
	dir := t.TempDir()
	if err := k.Save(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rewrite applies edit to the bytes of a key file.
func rewrite(t *testing.T, path string, edit func(b []byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadVerifierRefusesHugeCount: a verifying key file is whatever the
// auditor downloaded (vtrain verify-proof --keys, with or without a
// pinned hash); one that declares 2^32-1 points, or 2^32-1 lists of
// committed indices, is refused with ErrKeys before gnark's decoder
// allocates them (it died allocating 256 GiB).
func TestLoadVerifierRefusesHugeCount(t *testing.T) {
	keys := keysForSmall(t)
	const kAt = 32 + 32 + 64 + 64 + 32 + 64 // α, β, β, γ, δ, δ: then the count of K
	nK := binary.BigEndian.Uint32(VKBytes(keys.VK)[kAt:])
	for _, c := range []struct {
		name string
		at   int
	}{
		{"points of K", kAt},
		{"lists of committed indices", kAt + 4 + int(nK)*32},
	} {
		dir := savedSmall(t, keys)
		if _, err := LoadVerifier(dir, VKHash(keys.VK)); err != nil {
			t.Fatalf("the honest key: %v", err)
		}
		rewrite(t, filepath.Join(dir, VKFile), func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[c.at:], 1<<32-1)
			return b
		})
		for _, pin := range []string{"", VKHash(keys.VK)} {
			if _, err := LoadVerifier(dir, pin); !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), "declare") {
				t.Errorf("a key declaring 2^32-1 %s (pin %q): %v, want ErrKeys for its count", c.name, pin, err)
			}
		}
	}
	// Trailing bytes and an oversized file are refused too.
	dir := savedSmall(t, keys)
	rewrite(t, filepath.Join(dir, VKFile), func(b []byte) []byte { return append(b, 0) })
	if _, err := LoadVerifier(dir, ""); !errors.Is(err, ErrKeys) {
		t.Errorf("a key with a trailing byte: %v, want ErrKeys", err)
	}
	rewrite(t, filepath.Join(dir, VKFile), func(b []byte) []byte { return make([]byte, maxVKBytes+1) })
	if _, err := LoadVerifier(dir, ""); !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), "over") {
		t.Errorf("a key file of %d bytes: %v, want ErrKeys for its size", maxVKBytes+1, err)
	}
}

// TestLoadProverRefusesBadLayout: a proving key whose counts lie (a domain
// of 2^62 points, whose twiddles the decoder would compute; 2^32-1 points
// of A) or which is cut short is refused with ErrKeys before gnark's
// decoder trusts it.
func TestLoadProverRefusesBadLayout(t *testing.T) {
	keys := keysForSmall(t)
	const aAt = 8 + 5*32 + 1 + 3*64 // the domain, then α, β and δ uncompressed: then the count of A
	for _, c := range []struct {
		name, want string
		edit       func(b []byte) []byte
	}{
		{"a domain of 2^62 points", "domain", func(b []byte) []byte { binary.BigEndian.PutUint64(b, 1<<62); return b }},
		{"2^32-1 points of A", "declares", func(b []byte) []byte { binary.BigEndian.PutUint32(b[aAt:], 1<<32-1); return b }},
		{"a key cut short", "truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"a key with a trailing byte", "after the key", func(b []byte) []byte { return append(b, 0) }},
	} {
		dir := savedSmall(t, keys)
		rewrite(t, filepath.Join(dir, PKFile), c.edit)
		if _, err := LoadProver(dir, VKHash(keys.VK)); !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrKeys saying %q", c.name, err, c.want)
		}
	}
}

// TestLoadProverRefusesOtherSetup: a proving key of the same circuit from
// another setup (the demo's single-party keys copied into a ceremony's
// directory, say) loaded without complaint and made proofs that every
// member refused, so the peer was excluded as a forger; it is refused at
// load, naming the mismatch.
func TestLoadProverRefusesOtherSetup(t *testing.T) {
	keys := keysForSmall(t)
	other, err := Setup(small)
	if err != nil {
		t.Fatal(err)
	}
	dir, otherDir := savedSmall(t, keys), savedSmall(t, other)
	if _, err := LoadProver(dir, VKHash(keys.VK)); err != nil {
		t.Fatalf("the keys as saved: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(otherDir, PKFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, PKFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadProver(dir, VKHash(keys.VK)); !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), "another setup") {
		t.Fatalf("a proving key of another setup: %v, want ErrKeys naming it", err)
	}
}

// TestPKLayoutDomain: a proving key's domain may be any power of two from
// the circuit's own up to 2^MaxCeremonyPower (a ceremony's keys have its
// phase 1's domain, which may be larger than the circuit needs:
// TestLoadProverCeremonyLargerDomain); anything else is refused.
func TestPKLayoutDomain(t *testing.T) {
	keys := keysForSmall(t)
	var buf bytes.Buffer
	if _, err := keys.PK.WriteRawTo(&buf); err != nil {
		t.Fatal(err)
	}
	nc, wires := keys.CCS.GetNbConstraints(), ccsWires(keys.CCS)
	own := binary.BigEndian.Uint64(buf.Bytes())
	for _, c := range []struct {
		card uint64
		ok   bool
	}{
		{own, true}, {2 * own, true}, {1 << MaxCeremonyPower, true},
		{own / 2, false}, {3 * own, false}, {1 << (MaxCeremonyPower + 1), false}, {1 << 62, false},
	} {
		b := bytes.Clone(buf.Bytes())
		binary.BigEndian.PutUint64(b, c.card)
		err := checkPKLayout(bytes.NewReader(b), nc, wires)
		if (err == nil) != c.ok {
			t.Errorf("a domain of %d points (the circuit's %d): %v, want ok=%v", c.card, own, err, c.ok)
		}
	}
}
