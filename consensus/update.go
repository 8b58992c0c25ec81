package consensus

import (
	"crypto/sha256"
	"encoding/binary"
	"math"

	"github.com/vtrain/vtrain/internal/prng"
	"github.com/vtrain/vtrain/runspec"
)

// Update is a member's compressed pseudo-gradient for one round, with the
// commitments to the work behind it, signed by its author.
type Update struct {
	Round   uint64
	Base    Hash // the state hash the update starts from
	From    PeerID
	Samples uint64  // samples the inner steps processed
	Loss    float32 // mean training loss of the inner steps
	Payload []byte  // gossip/compress message

	// Commitments to the work behind the payload (see trainer.Check): the
	// batch-order seed (RoundSeed of the round and author), the hash of the
	// trainer's state after every verify.segment inner steps, the last one
	// the final state, and the Merkle roots (trainer.ResidualRoot) of the
	// error-feedback residual before and after this payload was encoded.
	Seed        uint64
	Segments    []Hash
	ResidualIn  Hash
	ResidualOut Hash

	Sig []byte // the author's signature over UpdateSignBytes
}

// ID is the update's content ID: SHA-256 over a fixed encoding of every
// field but the signature, and the run ID, so the same update in another
// run, round or under another author has another ID.
func (u *Update) ID(run RunID) Hash {
	h := sha256.New()
	h.Write([]byte("vtrain/update/v2\x00"))
	h.Write(run[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], u.Round)
	h.Write(b[:])
	h.Write(u.Base[:])
	binary.BigEndian.PutUint64(b[:], uint64(len(u.From)))
	h.Write(b[:])
	h.Write([]byte(u.From))
	binary.BigEndian.PutUint64(b[:], u.Samples)
	h.Write(b[:])
	binary.BigEndian.PutUint32(b[:4], math.Float32bits(u.Loss))
	h.Write(b[:4])
	binary.BigEndian.PutUint64(b[:], u.Seed)
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(len(u.Segments)))
	h.Write(b[:])
	for _, s := range u.Segments {
		h.Write(s[:])
	}
	h.Write(u.ResidualIn[:])
	h.Write(u.ResidualOut[:])
	h.Write(u.Payload)
	var out Hash
	h.Sum(out[:0])
	return out
}

// UpdateSignBytes is what an update's author signs: its ID.
func UpdateSignBytes(run RunID, u *Update) []byte {
	e := newEnc("vtrain/sig/update/v1\x00")
	e.hash(u.ID(run))
	return e.b
}

// RoundSeed is the batch-order seed of peer's inner steps in round: what an
// update commits to as its Seed, and what a challenger re-executes.
func RoundSeed(spec runspec.Spec, round uint64, peer PeerID) uint64 {
	return prng.Derive(spec.Run.Seed, prng.String64("round"), round, prng.String64(string(peer)))
}

// ShardOf is the data shard a peer trains.
func ShardOf(spec runspec.Spec, peer PeerID) int {
	return int(prng.String64(string(peer)) % uint64(spec.Shards()))
}
