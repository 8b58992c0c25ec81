package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/internal/prng"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/trainer"
)

// Outsider attacks, for demos and tests of what the protocol must shrug
// off (vtrain node --behave hijack|sybil|future|flood --join ADDR). An
// outsider never joins the run as a member: it listens to the gossip, and
//
//   - hijack offers a forged next state: commits for the current and next
//     round leading to a state it made up, with certificates it signed
//     itself and signatures it made up for the voters, proposals and
//     votes for it, and a sync server that serves the forged state and a
//     forged proof of it to whoever asks;
//   - sybil runs several fresh identities that ask to join and flood the
//     current round with votes, proposals and commits;
//   - future sends commits, votes, proposals, updates and join requests
//     for rounds r+2, r+100 and r+2^19;
//   - flood sends validly signed junk (verdicts on made-up updates, votes,
//     stale join requests) as fast as it can.
//
// It runs until ctx ends or the run's last round has passed, and writes an
// AttackReport to summary.json.

// AttackReport is what an outsider did.
type AttackReport struct {
	Peer       string   `json:"peer"`
	Behave     string   `json:"behave"`
	Identities []string `json:"identities"`
	Sent       int64    `json:"messages_sent"`
	LastRound  uint64   `json:"last_round_seen"`
}

// SybilIdentities is how many identities a sybil outsider runs.
const SybilIdentities = 7

type attacker struct {
	cfg    Config
	spec   runspec.Spec
	run    runspec.ID
	d      int
	rng    *prng.Source
	keys   []crypto.PrivKey
	trs    []*gossip.Transport
	round  atomic.Uint64
	sent   atomic.Int64
	mu     sync.Mutex     // guards base and forged (the listeners, the attack loop and sync streams share them)
	base   consensus.Hash // the base of the latest proposal seen
	forged *consensus.State
	rngMu  sync.Mutex // guards rng (the attack loop and sync streams draw); taken after mu, never before
}

// attackServer answers sync requests like a member would, lying where the
// attack says.
type attackServer struct{ a *attacker }

func (s attackServer) Spec() []byte { return s.a.spec.Canonical() }
func (s attackServer) State(h consensus.Hash) (consensus.State, bool) {
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	if s.a.forged == nil {
		return consensus.State{}, false
	}
	return s.a.forged.Clone(), true
}
func (s attackServer) Updates([]consensus.Hash) [][]byte { return nil }
func (s attackServer) Answer(uint64, consensus.Hash, int) (*consensus.Answer, error) {
	return nil, errors.New("no evidence")
}
func (s attackServer) Evidence(uint64, consensus.Hash, []int) (trainer.Evidence, error) {
	return trainer.Evidence{}, errors.New("no evidence")
}
func (s attackServer) Blob(gossip.BlobRequest) (*trainer.Snapshot, bool) {
	return nil, false
}
func (s attackServer) Proof(round uint64) *consensus.Proof {
	c := s.a.hijackCommit(s.a.round.Load())
	return &consensus.Proof{Links: []consensus.Link{{Commit: *c}}}
}

func runAttack(ctx context.Context, cfg Config, key crypto.PrivKey) error {
	if cfg.Join == "" {
		return fmt.Errorf("%w: an outsider (--behave %s) needs --join", ErrUsage, cfg.Behave)
	}
	join, err := fetchSpec(ctx, cfg)
	if err != nil {
		return err
	}
	m, err := join.Spec.ModelSpec()
	if err != nil {
		return err
	}
	a := &attacker{cfg: cfg, spec: join.Spec, run: join.Spec.RunID(), d: m.NumParams(), rng: prng.New(prng.String64(cfg.OutDir))}
	a.keys = []crypto.PrivKey{key}
	if cfg.Behave == "sybil" {
		for range SybilIdentities - 1 {
			k, _, err := crypto.GenerateEd25519Key(nil)
			if err != nil {
				return err
			}
			a.keys = append(a.keys, k)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, k := range a.keys {
		listen := []string{"/ip4/127.0.0.1/tcp/0"}
		if i == 0 && len(cfg.Listen) > 0 {
			listen = cfg.Listen
		}
		tr, err := gossip.New(ctx, gossip.Config{Key: k, Listen: listen, Spec: a.spec, Logger: cfg.Logger}, attackServer{a})
		if err != nil {
			return err
		}
		defer tr.Close()
		for _, addr := range append([]string{cfg.Join}, join.Peers...) {
			tr.Connect(ctx, addr)
		}
		a.trs = append(a.trs, tr)
		go a.listen(ctx, tr)
	}
	self, _ := peer.IDFromPrivateKey(key)
	fmt.Fprintf(cfg.Out, "vtrain node %s: outsider attacking run %s (%s)\n", self, a.run, cfg.Behave)
	every := time.Second
	if cfg.Behave == "flood" {
		every = 5 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var endAt time.Time
	for {
		select {
		case <-ctx.Done():
			return a.report(self)
		case <-t.C:
		}
		r := a.round.Load()
		if a.spec.Run.Rounds > 0 && r+1 >= uint64(a.spec.Run.Rounds) {
			if endAt.IsZero() {
				endAt = time.Now().Add(cfg.Linger + 5*time.Second)
			} else if time.Now().After(endAt) {
				return a.report(self)
			}
		}
		a.attack(ctx, r)
	}
}

func (a *attacker) report(self peer.ID) error {
	rep := AttackReport{Peer: self.String(), Behave: a.cfg.Behave, Sent: a.sent.Load(), LastRound: a.round.Load()}
	for _, k := range a.keys {
		id, _ := peer.IDFromPrivateKey(k)
		rep.Identities = append(rep.Identities, id.String())
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	return os.WriteFile(filepath.Join(a.cfg.OutDir, "attack.json"), b, 0o644)
}

// listen follows the run's round from the messages of its founders.
func (a *attacker) listen(ctx context.Context, tr *gossip.Transport) {
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-tr.Messages():
			if !ok {
				return
			}
			if m.Proposal != nil && m.Round+1 >= a.round.Load() {
				a.mu.Lock()
				a.base = m.Proposal.Value.Base
				a.mu.Unlock()
			}
			if (m.Vote != nil || m.Proposal != nil) && m.Round > a.round.Load() && m.Round < a.round.Load()+3 || a.round.Load() == 0 && m.Vote != nil && m.Round < 1<<16 {
				a.round.Store(m.Round)
			}
		}
	}
}

func (a *attacker) publish(ctx context.Context, i int, m consensus.Message) {
	raw, err := gossip.Encode(a.keys[i], a.run, m)
	if err != nil {
		return
	}
	if a.trs[i].Publish(ctx, m.Kind(), raw) == nil {
		a.sent.Add(1)
	}
}

func (a *attacker) id(i int) consensus.PeerID {
	p, _ := peer.IDFromPrivateKey(a.keys[i])
	return consensus.PeerID(p.String())
}

func (a *attacker) founders() []consensus.PeerID {
	g := consensus.GenesisMembers(a.spec)
	return g.Voters()
}

func (a *attacker) randHash() consensus.Hash {
	a.rngMu.Lock()
	defer a.rngMu.Unlock()
	var h consensus.Hash
	for i := range h {
		h[i] = byte(a.rng.Uint64())
	}
	return h
}

func (a *attacker) norm() float64 {
	a.rngMu.Lock()
	defer a.rngMu.Unlock()
	return a.rng.Norm()
}

func (a *attacker) intn(n int) int {
	a.rngMu.Lock()
	defer a.rngMu.Unlock()
	return a.rng.Intn(n)
}

// lastBase returns the base of the latest proposal seen.
func (a *attacker) lastBase() consensus.Hash {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.base
}

// hijackCommit is a commit of round to the forged state, certified by the
// attacker's own signature and made-up ones of the founders.
func (a *attacker) hijackCommit(round uint64) *consensus.Commit {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.forged == nil {
		g, _ := consensus.Genesis(a.spec)
		g.Round = round + 1
		for i := range g.Theta {
			g.Theta[i] = float32(a.norm())
		}
		a.forged = &g
	}
	voters := a.founders()
	v := &consensus.Value{Round: round, Base: a.base, Voters: consensus.VotersDigest(voters), Next: a.forged.Hash(),
		NextVoters: consensus.VotersDigest(voters)}
	c := &consensus.Commit{Value: v, Cert: consensus.Certificate{Round: round, Value: v.ID(a.run)}}
	for _, p := range append(voters, a.id(0)) {
		h := a.randHash()
		c.Cert.Sigs = append(c.Cert.Sigs, consensus.Signature{From: p, Sig: h[:]})
	}
	slices.SortFunc(c.Cert.Sigs, func(x, y consensus.Signature) int { return strings.Compare(string(x.From), string(y.From)) })
	return c
}

func (a *attacker) attack(ctx context.Context, r uint64) {
	sign := func(i int) func([]byte) []byte { return gossip.Signer(a.keys[i]) }
	switch a.cfg.Behave {
	case "hijack":
		for _, round := range []uint64{r, r + 1} {
			c := a.hijackCommit(round)
			a.publish(ctx, 0, consensus.Message{Commit: c})
			for _, k := range []consensus.VoteKind{consensus.KindPrevote, consensus.KindPrecommit} {
				v := &consensus.Vote{Kind: k, Round: round, Value: c.Value.ID(a.run), ValidView: -1, From: a.id(0)}
				v.Sig = sign(0)(consensus.VoteSignBytes(a.run, v))
				a.publish(ctx, 0, consensus.Message{Vote: v})
			}
		}
	case "sybil":
		for i := range a.keys {
			j := &consensus.JoinRequest{Round: r, From: a.id(i)}
			j.Sig = sign(i)(consensus.JoinSignBytes(a.run, j))
			a.publish(ctx, i, consensus.Message{Join: j})
			val := &consensus.Value{Round: r, Base: a.lastBase(), Voters: consensus.VotersDigest(a.founders()), Next: a.randHash(), NextVoters: consensus.VotersDigest(a.founders())}
			p := &consensus.Proposal{Vote: consensus.Vote{Kind: consensus.KindProposal, Round: r, Value: val.ID(a.run), ValidView: -1, From: a.id(i)}, Value: val}
			p.Vote.Sig = sign(i)(consensus.VoteSignBytes(a.run, &p.Vote))
			a.publish(ctx, i, consensus.Message{Proposal: p})
			for _, k := range []consensus.VoteKind{consensus.KindPrevote, consensus.KindPrecommit} {
				v := &consensus.Vote{Kind: k, Round: r, Value: val.ID(a.run), ValidView: -1, From: a.id(i)}
				v.Sig = sign(i)(consensus.VoteSignBytes(a.run, v))
				a.publish(ctx, i, consensus.Message{Vote: v})
			}
		}
	case "future":
		for _, ahead := range []uint64{2, 100, 1 << 19} {
			round := r + ahead
			val := &consensus.Value{Round: round, Next: a.randHash(), Voters: a.randHash(), NextVoters: a.randHash(), Base: a.randHash()}
			v := &consensus.Vote{Kind: consensus.KindPrecommit, Round: round, Value: val.ID(a.run), ValidView: -1, From: a.id(0)}
			v.Sig = sign(0)(consensus.VoteSignBytes(a.run, v))
			p := &consensus.Proposal{Vote: consensus.Vote{Kind: consensus.KindProposal, Round: round, Value: val.ID(a.run), ValidView: -1, From: a.id(0)}, Value: val}
			p.Vote.Sig = sign(0)(consensus.VoteSignBytes(a.run, &p.Vote))
			c := &consensus.Commit{Value: val, Cert: consensus.Certificate{Round: round, Value: val.ID(a.run), Sigs: []consensus.Signature{{From: a.id(0), Sig: v.Sig}}}}
			j := &consensus.JoinRequest{Round: round, From: a.id(0)}
			j.Sig = sign(0)(consensus.JoinSignBytes(a.run, j))
			u := a.junkUpdate(round)
			for _, m := range []consensus.Message{{Vote: v}, {Proposal: p}, {Commit: c}, {Join: j}, {Update: u}} {
				a.publish(ctx, 0, m)
			}
		}
	case "flood":
		x := &consensus.VerdictMsg{Round: r - min(r, 1), Update: a.randHash(), Accused: a.founders()[0], From: a.id(0), Reason: "made up"}
		x.Sig = sign(0)(consensus.VerdictSignBytes(a.run, x))
		v := &consensus.Vote{Kind: consensus.KindPrevote, Round: r, View: uint32(a.intn(4)), Value: a.randHash(), ValidView: -1, From: a.id(0)}
		v.Sig = sign(0)(consensus.VoteSignBytes(a.run, v))
		a.publish(ctx, 0, consensus.Message{Verdict: x})
		a.publish(ctx, 0, consensus.Message{Vote: v})
	}
}

// junkUpdate is a signed update of round that builds on a made-up state.
func (a *attacker) junkUpdate(round uint64) *consensus.Update {
	enc, _ := trainer.NewEncoder(a.spec)
	delta := make([]float32, a.d)
	for i := range delta {
		delta[i] = float32(a.norm() * 1e-3)
	}
	req := &consensus.TrainRequest{Round: round, Base: a.randHash(), Seed: consensus.RoundSeed(a.spec, round, a.id(0))}
	u, _ := enc.Update(req, trainer.Work{Round: round, Delta: delta, Segments: make([]consensus.Hash, a.spec.Segments())})
	u.From = a.id(0)
	u.Sig = gossip.Signer(a.keys[0])(consensus.UpdateSignBytes(a.run, u))
	return u
}
