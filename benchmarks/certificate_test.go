package benchmarks

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/runspec"
)

// BenchmarkCertificate measures what the round protocol's certificates
// cost at n = 4, 8, 16 voters with real Ed25519 keys and the real wire
// encoding: the bytes of a prevote or precommit message, of a proposal
// naming n updates, and of a commit (value and a quorum certificate); the
// signature checks a member makes per round (the proposal and every
// voter's two votes; a certificate's signatures are those votes, checked
// once); and the time to check a certificate from scratch (a joiner or
// an auditor, nothing cached).
//
//	go test -run - -bench Certificate ./benchmarks/
func BenchmarkCertificate(b *testing.B) {
	for _, n := range []int{4, 8, 16} {
		b.Run(fmt.Sprintf("voters=%d", n), func(b *testing.B) {
			keys := make([]crypto.PrivKey, n)
			founders := make([]string, n)
			for i := range keys {
				k, _, err := crypto.GenerateEd25519Key(rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				keys[i], founders[i] = k, peerOf(k)
			}
			spec := runspec.Default().WithFounders(founders...)
			spec.Members.Voters = n // every founder votes: the figure is per voter count
			run := spec.RunID()
			g, err := consensus.Genesis(spec)
			if err != nil {
				b.Fatal(err)
			}
			voters := g.Members.Voters()
			v := &consensus.Value{Round: 7, Base: g.Hash(), Voters: consensus.VotersDigest(voters), Next: consensus.Hash{1}, NextVoters: consensus.VotersDigest(voters)}
			for i := range n {
				v.Updates = append(v.Updates, consensus.UpdateRef{ID: consensus.Hash{byte(i), 1}, From: voters[i]})
			}
			id := v.ID(run)
			vote := func(i int, kind consensus.VoteKind) *consensus.Vote {
				x := &consensus.Vote{Kind: kind, Round: 7, Value: id, ValidView: -1, From: consensus.PeerID(peerOf(keys[i]))}
				x.Sig = gossip.Signer(keys[i])(consensus.VoteSignBytes(run, x))
				return x
			}
			q := consensus.Quorum(n)
			c := &consensus.Commit{Value: v, Cert: consensus.Certificate{Round: 7, Value: id}}
			byID := map[consensus.PeerID]int{}
			for i := range keys {
				byID[consensus.PeerID(peerOf(keys[i]))] = i
			}
			for _, p := range voters[:q] {
				c.Cert.Sigs = append(c.Cert.Sigs, consensus.Signature{From: p, Sig: vote(byID[p], consensus.KindPrecommit).Sig})
			}
			size := func(m consensus.Message) int {
				raw, err := gossip.Encode(keys[0], run, m)
				if err != nil {
					b.Fatal(err)
				}
				return len(raw)
			}
			prop := &consensus.Proposal{Vote: consensus.Vote{Kind: consensus.KindProposal, Round: 7, Value: id, ValidView: -1, From: consensus.PeerID(peerOf(keys[0]))}, Value: v}
			prop.Vote.Sig = gossip.Signer(keys[0])(consensus.VoteSignBytes(run, &prop.Vote))
			voteBytes := size(consensus.Message{Vote: vote(0, consensus.KindPrevote)})
			propBytes := size(consensus.Message{Proposal: prop})
			commitBytes := size(consensus.Message{Commit: c})
			b.ResetTimer()
			for range b.N {
				if err := consensus.VerifyCertificate(run, &c.Cert, voters, gossip.VerifySig); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(voteBytes), "B/vote")
			b.ReportMetric(float64(propBytes), "B/proposal")
			b.ReportMetric(float64(commitBytes), "B/commit")
			// Per member and round, in view 0: its own two votes out (and a
			// proposal out on its turn, 1/n), every other voter's two votes
			// and one proposal in, each checked once.
			b.ReportMetric(float64(2*voteBytes)+float64(propBytes)/float64(n), "B-out/round")
			b.ReportMetric(float64(2*(n-1)*voteBytes+propBytes), "B-in/round")
			b.ReportMetric(float64(2*(n-1)+1), "sigchecks/round")
			b.ReportMetric(float64(q), "sigs/cert")
		})
	}
}

func peerOf(k crypto.PrivKey) string {
	id, _ := peer.IDFromPrivateKey(k)
	return id.String()
}
