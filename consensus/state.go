package consensus

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/runspec"
)

// State is the agreed state at the start of a round: the model, the outer
// optimizer's momentum and the membership. It is what a checkpoint holds
// and what a joining or lagging peer fetches, and it is adopted only when
// its hash is the certified result of the round before (see Proof).
type State struct {
	Round    uint64
	Theta    []float32
	Momentum []float32
	Members  Members
}

// Hash returns the state's identity (see StateHash).
func (st *State) Hash() Hash {
	return StateHash(st.Round, ParamsDigest(st.Theta, st.Momentum), st.Members.Digest())
}

// Clone returns a deep copy.
func (st State) Clone() State {
	return State{Round: st.Round, Theta: append([]float32(nil), st.Theta...), Momentum: append([]float32(nil), st.Momentum...),
		Members: st.Members.Clone()}
}

// ParamsDigest is the identity of the model part of a state: SHA-256 over
// the parameters and the outer momentum (each length-prefixed,
// little-endian float32).
func ParamsDigest(theta, momentum []float32) Hash {
	h := sha256.New()
	h.Write([]byte("vtrain/params/v1\x00"))
	buf := make([]byte, 0, 1<<16)
	for _, v := range [][]float32{theta, momentum} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		for i := 0; i < len(v); i += 1 << 14 {
			buf = floatsLE(buf[:0], v[i:min(len(v), i+1<<14)])
			h.Write(buf)
		}
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// StateHash is the identity of an agreed state: SHA-256 over the round, the
// parameter digest and the membership digest.
func StateHash(round uint64, params, members Hash) Hash {
	e := newEnc("vtrain/state/v2\x00")
	e.u64(round)
	e.hash(params)
	e.hash(members)
	return e.sum()
}

// Genesis returns round 0's state for a spec: θ₀ from the seed, zero
// momentum, the founders as members.
func Genesis(spec runspec.Spec) (State, error) {
	m, err := spec.ModelSpec()
	if err != nil {
		return State{}, err
	}
	if len(spec.Members.Genesis) == 0 {
		return State{}, fmt.Errorf("consensus: the spec names no founders (members.genesis)")
	}
	theta := models.Init(m, spec.Run.Seed)
	return State{Theta: theta, Momentum: make([]float32, len(theta)), Members: GenesisMembers(spec)}, nil
}
