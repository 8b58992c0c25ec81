package simnet

import (
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/internal/prng"
)

// Byzantine actors. Members run a real engine (so they know the state and
// can say plausible things) and twist what it says; outsiders run none.
// None of them can sign as anyone else: where they claim another's
// signature, it is made up.

// HonestActor answers everything honestly: the base of the others.
type HonestActor struct{}

func (HonestActor) Outgoing(n *Net, self int, m Message, to int) []Message         { return []Message{m} }
func (HonestActor) Tick(n *Net, self int)                                          {}
func (HonestActor) ServeState(n *Net, self int, h Hash) (*consensus.State, bool)   { return nil, false }
func (HonestActor) ServeProof(n *Net, self int, r uint64) (*consensus.Proof, bool) { return nil, false }

func randHash(r *prng.Source) Hash {
	var h Hash
	for i := range h {
		h[i] = byte(r.Uint64())
	}
	return h
}

func hb(h Hash) []byte { return slices.Clone(h[:]) }

// broadcast sends m from self to everyone.
func (sn *Net) broadcastFrom(self int, msgs ...Message) {
	for to := range sn.IDs {
		if to != self {
			for _, m := range msgs {
				sn.send(self, to, m)
			}
		}
	}
}

// Equivocator signs two versions of every vote and proposal it makes and
// sends one to the even peers, the other to the odd ones.
type Equivocator struct{ HonestActor }

func (Equivocator) Outgoing(sn *Net, self int, m Message, to int) []Message {
	sign := Sign(sn.IDs[self])
	run := sn.Spec.RunID()
	switch {
	case m.Vote != nil:
		if to%2 == 0 {
			return []Message{m}
		}
		v := *m.Vote
		if v.Value.IsZero() {
			v.Value = sha256.Sum256(fmt.Appendf(nil, "twin %d %d", v.Round, v.View))
		} else {
			v.Value = Hash{}
		}
		v.Sig = sign(consensus.VoteSignBytes(run, &v))
		return []Message{{Vote: &v}}
	case m.Proposal != nil:
		if to%2 == 0 || len(m.Proposal.Value.Updates) == 0 {
			return []Message{m}
		}
		val := *m.Proposal.Value
		val.Updates = val.Updates[:len(val.Updates)-1]
		p := &consensus.Proposal{Vote: m.Proposal.Vote, Value: &val, POL: m.Proposal.POL}
		p.Vote.Value = val.ID(run)
		p.Vote.Sig = sign(consensus.VoteSignBytes(run, &p.Vote))
		return []Message{{Proposal: p}}
	}
	return []Message{m}
}

// Withholder says nothing at all: no update, no proposal, no vote.
type Withholder struct{ HonestActor }

func (Withholder) Outgoing(sn *Net, self int, m Message, to int) []Message { return nil }

// MadeUp proposes values that lead to a made-up state and votes for
// made-up values.
type MadeUp struct{ HonestActor }

func (MadeUp) Outgoing(sn *Net, self int, m Message, to int) []Message {
	sign := Sign(sn.IDs[self])
	run := sn.Spec.RunID()
	switch {
	case m.Proposal != nil:
		val := *m.Proposal.Value
		val.Next = sha256.Sum256(fmt.Appendf(nil, "made-up state %d", val.Round))
		p := &consensus.Proposal{Vote: m.Proposal.Vote, Value: &val}
		p.Vote.Value = val.ID(run)
		p.Vote.ValidView = -1
		p.Vote.Sig = sign(consensus.VoteSignBytes(run, &p.Vote))
		return []Message{{Proposal: p}}
	case m.Vote != nil:
		v := *m.Vote
		v.Value = sha256.Sum256(fmt.Appendf(nil, "made-up value %d %d", v.Round, v.View))
		v.Sig = sign(consensus.VoteSignBytes(run, &v))
		return []Message{{Vote: &v}}
	}
	return []Message{m}
}

// Selective delivers each message to a random half of the peers.
type Selective struct{ HonestActor }

func (Selective) Outgoing(sn *Net, self int, m Message, to int) []Message {
	if sn.Rng.Intn(2) == 0 {
		return nil
	}
	return []Message{m}
}

// Future sends, every tick, signed messages for far future rounds:
// commits, votes, proposals, updates and join requests for r+2, r+100 and
// r+2^19.
type Future struct {
	HonestActor
	Rng *prng.Source
}

func (f *Future) Tick(sn *Net, self int) {
	id := sn.IDs[self]
	sign := Sign(id)
	run := sn.Spec.RunID()
	r := sn.CurrentRound()
	for _, ahead := range []uint64{2, 100, 1 << 19} {
		round := r + ahead
		val := &consensus.Value{Round: round, Next: randHash(f.Rng), Voters: randHash(f.Rng)}
		vote := consensus.Vote{Kind: consensus.KindPrecommit, Round: round, Value: val.ID(run), ValidView: -1, From: id}
		vote.Sig = sign(consensus.VoteSignBytes(run, &vote))
		prop := &consensus.Proposal{Vote: consensus.Vote{Kind: consensus.KindProposal, Round: round, Value: val.ID(run), ValidView: -1, From: id}, Value: val}
		prop.Vote.Sig = sign(consensus.VoteSignBytes(run, &prop.Vote))
		c := &consensus.Commit{Value: val, Cert: consensus.Certificate{Round: round, Value: val.ID(run), Sigs: []consensus.Signature{{From: id, Sig: vote.Sig}}}}
		u := &consensus.Update{Round: round, Base: randHash(f.Rng), From: id, Payload: ToyPayload(10, f.Rng.Uint64())}
		u.Sig = sign(consensus.UpdateSignBytes(run, u))
		j := &consensus.JoinRequest{Round: round, From: id}
		j.Sig = sign(consensus.JoinSignBytes(run, j))
		sn.broadcastFrom(self, Message{Vote: &vote}, Message{Proposal: prop}, Message{Commit: c}, Message{Update: u}, Message{Join: j})
	}
}

// Sybil is an outsider identity that floods the current round every tick:
// votes and proposals for made-up values, commits with certificates of
// made-up voter signatures, updates, and join requests. Admitted, it
// trains like a member but keeps flooding.
type Sybil struct {
	HonestActor
	Rng   *prng.Source
	Every int // flood every Every ticks (0: every tick)
	ticks int
}

func (s *Sybil) Tick(sn *Net, self int) {
	if s.ticks++; s.Every > 0 && s.ticks%s.Every != 0 {
		return
	}
	id := sn.IDs[self]
	sign := Sign(id)
	run := sn.Spec.RunID()
	r := sn.CurrentRound()
	voters, base := sn.honestView()
	val := &consensus.Value{Round: r, Base: base, Voters: consensus.VotersDigest(voters), Next: randHash(s.Rng), NextVoters: consensus.VotersDigest(voters)}
	vid := val.ID(run)
	var msgs []Message
	for _, k := range []consensus.VoteKind{consensus.KindPrevote, consensus.KindPrecommit} {
		v := &consensus.Vote{Kind: k, Round: r, View: uint32(s.Rng.Intn(3)), Value: vid, ValidView: -1, From: id}
		v.Sig = sign(consensus.VoteSignBytes(run, v))
		msgs = append(msgs, Message{Vote: v})
	}
	p := &consensus.Proposal{Vote: consensus.Vote{Kind: consensus.KindProposal, Round: r, Value: vid, ValidView: -1, From: id}, Value: val}
	p.Vote.Sig = sign(consensus.VoteSignBytes(run, &p.Vote))
	msgs = append(msgs, Message{Proposal: p})
	cert := consensus.Certificate{Round: r, Value: vid}
	for _, v := range voters {
		cert.Sigs = append(cert.Sigs, consensus.Signature{From: v, Sig: hb(randHash(s.Rng))})
	}
	msgs = append(msgs, Message{Commit: &consensus.Commit{Value: val, Cert: cert}})
	u := &consensus.Update{Round: r, Base: base, From: id, Payload: ToyPayload(10, s.Rng.Uint64()), Seed: consensus.RoundSeed(sn.Spec, r, id), Segments: make([]Hash, sn.Spec.Segments())}
	u.Sig = sign(consensus.UpdateSignBytes(run, u))
	msgs = append(msgs, Message{Update: u})
	j := &consensus.JoinRequest{Round: r, From: id}
	j.Sig = sign(consensus.JoinSignBytes(run, j))
	msgs = append(msgs, Message{Join: j})
	sn.broadcastFrom(self, msgs...)
}

// Liar is a member that serves forged states and proofs when asked, and
// gossips commits with forged certificates now and then.
type Liar struct {
	HonestActor
	Rng *prng.Source
}

func (l *Liar) ServeState(sn *Net, self int, h Hash) (*consensus.State, bool) {
	st, ok := sn.Engines[self].ServeState(h)
	if !ok {
		st = sn.Engines[self].State()
	}
	st = st.Clone()
	st.Theta[l.Rng.Intn(len(st.Theta))] += 1
	return &st, true
}

func (l *Liar) ServeProof(sn *Net, self int, round uint64) (*consensus.Proof, bool) {
	e := sn.Engines[self]
	p := e.ServeProof(round)
	val := &consensus.Value{Round: e.Round(), Base: e.Hash(), Voters: consensus.VotersDigest(e.Voters()), Next: randHash(l.Rng), NextVoters: consensus.VotersDigest(e.Voters())}
	cert := consensus.Certificate{Round: val.Round, Value: val.ID(sn.Spec.RunID())}
	for _, v := range e.Voters() {
		cert.Sigs = append(cert.Sigs, consensus.Signature{From: v, Sig: hb(randHash(l.Rng))})
	}
	p.Links = append(p.Links, consensus.Link{Commit: consensus.Commit{Value: val, Cert: cert}})
	return p, true
}

func (l *Liar) Tick(sn *Net, self int) {
	if l.Rng.Intn(10) != 0 {
		return
	}
	if p, _ := l.ServeProof(sn, self, 0); len(p.Links) > 0 {
		c := p.Links[len(p.Links)-1].Commit
		sn.broadcastFrom(self, Message{Commit: &c})
	}
}

// Accuser signs failed verdicts on updates the beacon did not draw it for:
// undrawn ones, and drawn ones with the wrong segment or challenger.
type Accuser struct {
	HonestActor
	Rng *prng.Source
}

func (a *Accuser) Tick(sn *Net, self int) {
	d, ok := sn.Last[self]
	if !ok || d.Restored || a.Rng.Intn(5) != 0 {
		return
	}
	drawn := map[Hash]int{}
	for k, ch := range d.Challenges {
		drawn[Hash(ch.Update)] = k
	}
	for _, r := range d.Value.Updates {
		if r.From == sn.IDs[self] {
			continue
		}
		x := &consensus.VerdictMsg{Round: d.Round, Update: r.ID, Accused: r.From, Segment: a.Rng.Intn(sn.Spec.Segments()), From: sn.IDs[self],
			Fault: consensus.FaultSilent, Reason: "made up"}
		if k, ok := drawn[r.ID]; ok {
			ch := d.Challenges[k]
			if PeerID(ch.Challenger) == sn.IDs[self] {
				continue // drawn for it: a referee judges that case (trainer's challenge simulation)
			}
		}
		x.Sig = Sign(sn.IDs[self])(consensus.VerdictSignBytes(sn.Spec.RunID(), x))
		sn.broadcastFrom(self, Message{Verdict: x})
	}
}

// LateReplayer is a member that trains and votes honestly but withholds
// its update in even rounds and, every few ticks, sends late updates a
// liar might try: its own earlier updates again (aggregated ones, stale
// ones), a fresh version of its update of the round before (with its
// current mark, or a made-up residual: after an odd round took its
// update, a second take of that round's work), and one of two rounds
// before.
type LateReplayer struct {
	HonestActor
	Rng   *prng.Source
	sent  []*consensus.Update
	ticks int
}

func (l *LateReplayer) Outgoing(sn *Net, self int, m Message, to int) []Message {
	if u := m.Update; u != nil && u.From == sn.IDs[self] && !slices.Contains(l.sent, u) {
		l.sent = append(l.sent, u)
		if len(l.sent) > 8 {
			l.sent = l.sent[1:]
		}
	}
	if u := m.Update; u != nil && u.From == sn.IDs[self] && u.Round%2 == 0 && u.Round+1 >= sn.Engines[self].Round() {
		return nil
	}
	return []Message{m}
}

func (l *LateReplayer) Tick(sn *Net, self int) {
	e := sn.Engines[self]
	if l.ticks++; e == nil || l.ticks%3 != 0 {
		return
	}
	id := sn.IDs[self]
	sign := Sign(id)
	run := sn.Spec.RunID()
	r := e.Round()
	var msgs []Message
	for _, u := range l.sent {
		if u.Round < r {
			msgs = append(msgs, Message{Update: u})
		}
	}
	for _, back := range []uint64{1, 2} {
		var base *consensus.Update
		for _, u := range l.sent {
			if u.Round+back == r {
				base = u
			}
		}
		if base == nil {
			continue
		}
		in := randHash(l.Rng)
		if l.Rng.Intn(2) == 0 {
			in = e.ResidualMark(id)
		}
		u := &consensus.Update{Round: base.Round, Base: base.Base, From: id, Samples: 100, Loss: 1, Payload: ToyPayload(10, l.Rng.Uint64()),
			Seed: base.Seed, Segments: base.Segments, ResidualIn: in, ResidualOut: randHash(l.Rng)}
		u.Sig = sign(consensus.UpdateSignBytes(run, u))
		msgs = append(msgs, Message{Update: u})
	}
	sn.broadcastFrom(self, msgs...)
}
