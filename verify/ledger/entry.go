package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Kinds of entries: every message a node acts on, and what it decides.
const (
	KindUpdate    = "update"    // a peer's update (payload in the store)
	KindChallenge = "challenge" // a spot-check drawn from the round beacon
	KindResponse  = "response"  // a challenged peer's answer
	KindVerdict   = "verdict"   // a challenger's signed verdict
	KindEvidence  = "evidence"  // a proof that a member signed conflicting votes
	KindReject    = "rejection" // messages of one peer refused in one round for one reason: the first reason, and the count
	KindJoin      = "join"      // a member: a founder at genesis, or a joiner a decision admitted
	KindLeave     = "leave"     // a member excluded or dropped by a decision
	KindDecision  = "decision"  // a round's certified decision: the commit (value and certificate), and a summary
	KindState     = "state"     // an agreed state the keeper adopted from a peer (payload in the store)
	KindTreeHead  = "tree_head" // the keeper's signed checkpoint of the entries before it
	KindGenesis   = "genesis"   // the run's canonical spec: always entry 0
	KindKey       = "key"       // the run's zk verifying key (in the store), in runs with private peers: after the founders
)

// Entry is one ledger record, encoded as compact JSON with the fields in
// this order. Wire carries the signed message exactly as received, so that
// an auditor can check its signature; Blob names a payload in the store.
type Entry struct {
	Kind   string          `json:"kind"`
	Round  uint64          `json:"round"`
	Peer   string          `json:"peer,omitempty"`
	Reason string          `json:"reason,omitempty"`
	Blob   string          `json:"blob,omitempty"`
	Wire   []byte          `json:"wire,omitempty"`
	Head   *SignedTreeHead `json:"head,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// Encode returns the entry's bytes.
func (e Entry) Encode() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		panic(err) // plain data: cannot fail
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

// DecodeEntry reads an entry strictly: unknown fields and trailing data are
// errors, and the bytes must be the entry's own encoding (so that one
// entry has one leaf hash).
func DecodeEntry(b []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("undecodable entry: %v", err)
	}
	if dec.More() {
		return e, fmt.Errorf("trailing data after the entry")
	}
	if !bytes.Equal(e.Encode(), b) {
		return e, fmt.Errorf("entry is not in canonical form")
	}
	switch e.Kind {
	case KindUpdate, KindChallenge, KindResponse, KindVerdict, KindEvidence, KindReject, KindJoin, KindLeave, KindGenesis, KindDecision, KindState, KindKey:
	case KindTreeHead:
		if e.Head == nil {
			return e, fmt.Errorf("tree_head entry without a head")
		}
	default:
		return e, fmt.Errorf("unknown kind %q", e.Kind)
	}
	return e, nil
}
