package consensus

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"

	"github.com/vtrain/vtrain/runspec"
)

// Hash is a SHA-256 digest: of a state, an update, a value, a beacon.
type Hash [32]byte

// Short is the first 8 hex digits, for logs.
func (h Hash) Short() string { return hex.EncodeToString(h[:4]) }

// String is the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero hash (a vote for nothing).
func (h Hash) IsZero() bool { return h == Hash{} }

func hashLess(a, b Hash) bool { return bytes.Compare(a[:], b[:]) < 0 }

func sortHashes(hs []Hash) {
	slices.SortFunc(hs, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
}

// PeerID names a peer: a libp2p peer ID in string form. The engine treats
// it as opaque; the signatures it checks are made by the key it names.
type PeerID string

// RunID is a run's identity: the SHA-256 of its canonical spec.
type RunID = runspec.ID

// Verdict is the engine's answer to a message, with pubsub's meaning:
// Accept (valid, forward it), Reject (invalid: penalise the sender), Ignore
// (stale, duplicate or not judgeable here: drop without penalty).
type Verdict int

// Verdicts.
const (
	Accept Verdict = iota
	Reject
	Ignore
)

func (v Verdict) String() string { return [...]string{"accept", "reject", "ignore"}[v] }

// Decision is a verdict with its reason. Kept marks an ignored message the
// engine holds on to and may act on later (a message of the next height);
// Junk marks an ignored message that only an outsider or a misbehaving
// member sends (a vote from a non-voter, a far-future message from a
// non-member): the driver charges it to its sender like a rejection, but
// the message is not proven invalid.
//
// Invalid marks a rejection that holds whatever the receiver's state: the
// message is malformed or badly signed, so every honest node refuses it and
// whoever forwarded it is at fault too (gossip penalises the relay). Any
// other rejection depends on what this node has seen (an equivocation's
// first half, an exclusion, the round's voters): an honest relay that had
// not seen it yet forwards such a message in good faith, so only its author
// is charged.
type Decision struct {
	Verdict Verdict
	Reason  string
	Kept    bool
	Junk    bool
	Invalid bool
}

func accept() Decision { return Decision{Verdict: Accept} }
func reject(format string, a ...any) Decision {
	return Decision{Verdict: Reject, Reason: fmt.Sprintf(format, a...)}
}
func invalid(format string, a ...any) Decision {
	return Decision{Verdict: Reject, Reason: fmt.Sprintf(format, a...), Invalid: true}
}
func ignore(format string, a ...any) Decision {
	return Decision{Verdict: Ignore, Reason: fmt.Sprintf(format, a...)}
}
func junk(format string, a ...any) Decision {
	return Decision{Verdict: Ignore, Reason: fmt.Sprintf(format, a...), Junk: true}
}
func kept(format string, a ...any) Decision {
	return Decision{Verdict: Ignore, Reason: fmt.Sprintf(format, a...), Kept: true}
}

func (d Decision) String() string { return d.Verdict.String() + ": " + d.Reason }

// OK reports whether the message was accepted.
func (d Decision) OK() bool { return d.Verdict == Accept }

// Costly reports whether the sender should pay for the message: it was
// rejected, or it is junk.
func (d Decision) Costly() bool { return d.Verdict == Reject || d.Junk }

// enc builds the fixed binary encodings that hashes and signatures cover:
// big-endian integers, length-prefixed byte strings, domain-separated.
type enc struct{ b []byte }

func newEnc(domain string) *enc { return &enc{b: append(make([]byte, 0, 256), domain...)} }
func (e *enc) u8(v uint8)       { e.b = append(e.b, v) }
func (e *enc) u32(v uint32)     { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64)     { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) hash(h Hash)      { e.b = append(e.b, h[:]...) }
func (e *enc) bytes(p []byte)   { e.u64(uint64(len(p))); e.b = append(e.b, p...) }
func (e *enc) str(s string)     { e.u64(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) flag(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}
func (e *enc) sum() Hash { return sha256.Sum256(e.b) }

// floatsLE appends v as little-endian float32.
func floatsLE(b []byte, v []float32) []byte {
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}
