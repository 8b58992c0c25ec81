package zk

import (
	"bytes"
	"encoding/binary"
	"errors"
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
