package audit

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/zk"
)

// TestOverturnedOnUnloggedPrivateUpdate: a keeper that adopted a round
// (a certified state from its peers) logged the round's decision but not
// its updates; a later value it applied excludes a challenger for a false
// "proof failed" on that round's private update. The replay cannot verify
// the proof without the update: the verdict is inconclusive here, not a
// value that "excluded a challenger for a verdict its proof bears out"
// (the audit of an honest keeper's ledger failed on it).
func TestOverturnedOnUnloggedPrivateUpdate(t *testing.T) {
	r := rand.NewChaCha8([32]byte{7}) // seeded: the same peers every run
	key := func() (crypto.PrivKey, consensus.PeerID) {
		k, _, err := crypto.GenerateEd25519Key(r)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return k, consensus.PeerID(id.String())
	}
	pk, priv := key()
	ck, challenger := key()
	s := runspec.Default()
	s.Model = runspec.Model{Kind: "logreg"}
	s.Data.Source = "synthetic"
	s.Inner.Optimizer, s.Inner.Momentum, s.Inner.WeightDecay, s.Inner.Steps = "sgd", 0, 0, 20
	s = s.WithFounders(string(priv), string(challenger))
	var root fr.Element
	root.SetUint64(5)
	s.Privacy = runspec.Privacy{Mode: "zk", Depth: 16, VKSHA256: fmt.Sprintf("%064x", 1),
		Peers: []runspec.PrivatePeer{{Peer: string(priv), DataRoot: zk.Hex(root), DataSize: 1000}}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	rp, err := newReplay(s, nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	rp.proofs = new(trainer.Proofs) // the key entry read (the proof is never reached here)
	// Round 3, adopted: its value is logged, its updates are not.
	adopted := &consensus.Value{Round: 3, Updates: []consensus.UpdateRef{{ID: consensus.Hash{1}, From: priv}, {ID: consensus.Hash{2}, From: challenger}}}
	rp.values[3] = adopted
	beacon, chs := consensus.Draw(adopted, consensus.SpotPolicyOf(s))
	drawn := false
	for _, c := range chs {
		drawn = drawn || c.Peer == string(priv) && c.Challenger == string(challenger)
	}
	if !drawn {
		t.Fatalf("the draw %v does not check the private update", chs)
	}
	step := consensus.PrivateStep(beacon, consensus.Hash{1}, s.Inner.Steps)
	a := &consensus.Answer{Round: 3, Update: consensus.Hash{1}, Segment: step, Proof: []byte(`{"a":"proof"}`)}
	a.Sig = gossip.Signer(pk)(consensus.AnswerSignBytes(rp.run, a))
	x := consensus.VerdictMsg{Round: 3, Update: consensus.Hash{1}, Accused: priv, Segment: step, From: challenger, Fault: consensus.FaultProof, Answer: a}
	x.Sig = gossip.Signer(ck)(consensus.VerdictSignBytes(rp.run, &x))
	later := &consensus.Value{Round: 5, Overturned: []consensus.VerdictMsg{x}}
	if err := rp.carriedVerdicts(later); err != nil {
		t.Fatalf("a verdict on an update the ledger does not hold: %v", err)
	}
	if rp.Inconclusive != 1 {
		t.Errorf("%d disputes inconclusive, want the one the replay could not verify", rp.Inconclusive)
	}
}
