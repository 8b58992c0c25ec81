package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/trainer"
)

// ruled is a referee's finding on a failed verdict, for the loop to hand
// the engine.
type ruled struct {
	x       *consensus.VerdictMsg
	r       consensus.Ruling
	why     string
	seconds float64
}

// referee checks a failed verdict the engine asks about (see
// consensus.Fault and trainer.Referee): it re-executes the one step, the
// encoding or the segment the claim rests on from states fetched by hash
// from the challenger or the accused, or, for a claim that the accused was
// silent, asks the accused itself.
func (n *node) referee(ctx context.Context, req consensus.RefereeRequest, out chan<- ruled) {
	x, u := req.Verdict, req.Update
	done := ruled{x: x, r: consensus.Lapsed}
	start := time.Now()
	defer func() {
		done.seconds = time.Since(start).Seconds()
		out <- done
	}()
	// The update's own round: a late update (consensus/late.go) was
	// trained in the round before the verdict's.
	base := n.stateOf(u.Round, u.Base)
	if base == nil {
		done.why = "the round's state is no longer held"
		return
	}
	if n.spec.IsPrivate(string(x.Accused)) {
		if x.Fault != consensus.FaultSilent || n.priv == nil {
			done.why = fmt.Sprintf("a %s claim on a private update is settled by its proof", x.Fault)
			return
		}
		done.r, done.why = n.refereePrivate(ctx, x, u)
		return
	}
	blocks, err := trainer.DrawBlocks(n.spec, req.Beacon, u, x.Update, x.From, len(base))
	if err != nil {
		done.why = err.Error()
		return
	}
	if x.Fault == consensus.FaultSilent {
		done.r, done.why = n.askAccused(ctx, x, u, blocks, len(base))
		return
	}
	rep, err := trainer.NewReplayer(n.spec, u.Round, u.From, n.cfg.Data.Train, n.engineOpts()...)
	if err != nil {
		done.why = err.Error()
		return
	}
	r, err := trainer.Referee(n.spec, base, u, x, blocks, rep, n.fetchBlob(ctx, x), n.fetchOpenings(ctx, x, u, blocks, len(base)))
	done.r = r
	if err != nil {
		done.why = err.Error()
	}
}

// fetchBlob fetches states by hash for a referee: its own, else the
// challenger's, else the accused's.
func (n *node) fetchBlob(ctx context.Context, x *consensus.VerdictMsg) trainer.Fetch {
	return func(h consensus.Hash, step int) (*trainer.Snapshot, error) {
		req := gossip.BlobRequest{Hash: h, Round: x.Round, Update: x.Update, Step: step}
		if s, ok := n.Blob(req); ok {
			return s, nil
		}
		var last error = errors.New("nobody to ask")
		for _, p := range []consensus.PeerID{x.From, x.Accused} {
			pid, err := peer.Decode(string(p))
			if err != nil || pid == n.tr.ID() {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, n.spec.Verify.Timeout.Duration)
			s, err := n.tr.FetchBlob(cctx, pid, req)
			cancel()
			// A light state (no optimizer buffers) hashes the same, but
			// only the final one is never re-executed from: another
			// source may have the whole state.
			if err == nil && s != nil && s.Hash() == h && (!s.IsLight() || step == n.spec.Inner.Steps) {
				return s, nil
			}
			if err == nil {
				err = fmt.Errorf("%s served something else", p)
			}
			last = err
		}
		return nil, last
	}
}

// fetchOpenings fetches the residual blocks a link claim rests on for a
// referee: its own (as the challenger), else the challenger's, else the
// accused's; the first set that holds under the update's commitments (a
// false accuser serving junk cannot keep the referee from the accused's).
func (n *node) fetchOpenings(ctx context.Context, x *consensus.VerdictMsg, u *consensus.Update, blocks []int, d int) trainer.FetchOpenings {
	return func() ([]trainer.Opening, error) {
		var last error = errors.New("nobody to ask")
		for _, p := range []consensus.PeerID{x.From, x.Accused} {
			var ev trainer.Evidence
			var err error
			if p == n.self {
				ev, err = n.Evidence(x.Round, x.Update, blocks)
			} else {
				pid, perr := peer.Decode(string(p))
				if perr != nil {
					continue
				}
				cctx, cancel := context.WithTimeout(ctx, n.spec.Verify.Timeout.Duration)
				ev, err = n.tr.FetchEvidence(cctx, pid, x.Round, x.Update, blocks)
				cancel()
			}
			if err == nil {
				if err = trainer.CheckOpenings(n.spec, u, d, blocks, ev.Openings); err == nil {
					return ev.Openings, nil
				}
				err = fmt.Errorf("%s's openings do not hold: %v", p, err)
			}
			last = err
		}
		return nil, last
	}
}

// askAccused referees a claim that the accused did not answer: this node
// asks the accused for the same evidence (retrying until verify.timeout).
// A valid answer makes the claim lapse (the challenger may have been cut
// off; nobody is proven at fault); none, a refusal or an answer that does
// not hold upholds it. Only when a quorum of voters upholds it does the
// accused go: a challenger alone cannot fake silence.
func (n *node) askAccused(ctx context.Context, x *consensus.VerdictMsg, u *consensus.Update, blocks []int, d int) (consensus.Ruling, string) {
	if x.Accused == n.self {
		return consensus.Lapsed, "this node is the accused, and answers"
	}
	pid, err := peer.Decode(string(x.Accused))
	if err != nil {
		return consensus.Upheld, "the accused is not a peer ID"
	}
	ev, err := n.fetchEvidence(ctx, pid, x.Round, x.Update, blocks)
	switch {
	case ctx.Err() != nil:
		return consensus.Lapsed, "stopped"
	case err != nil:
		return consensus.Upheld, fmt.Sprintf("no answer to this referee either: %v", err)
	}
	if err := trainer.CheckEvidence(n.spec, u, d, blocks, ev); err != nil {
		return consensus.Upheld, fmt.Sprintf("the accused's answer to this referee does not hold: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, n.spec.Verify.Timeout.Duration)
	defer cancel()
	a, err := n.tr.FetchAnswer(cctx, pid, x.Round, x.Update, x.Segment)
	if err != nil || a.Round != x.Round || a.Update != x.Update || a.Segment != x.Segment ||
		!gossip.VerifySig(x.Accused, consensus.AnswerSignBytes(n.eng.RunID(), a), a.Sig) || consensus.Contradicts(n.spec, u, x.Segment, a) {
		return consensus.Upheld, fmt.Sprintf("the accused gave this referee no consistent signed step hashes: %v", err)
	}
	return consensus.Lapsed, "the accused answered this referee"
}

// finishReferee hands a referee's finding to the engine.
func (n *node) finishReferee(d ruled) {
	n.checking.Add(-1)
	n.mu.Lock()
	n.challenges.Refereed++
	n.challenges.RefereeSeconds += d.seconds
	n.mu.Unlock()
	n.note(Note{Kind: NoteDispute, Round: d.x.Round, Peer: string(d.x.Accused), Reason: d.r.String(), Detail: d.why, Seconds: d.seconds})
	n.log.Info("refereed", "round", d.x.Round, "accused", d.x.Accused, "challenger", d.x.From, "fault", d.x.Fault, "ruling", d.r, "why", d.why)
	n.event(EventRefereed, []any{"round", d.x.Round, "challenger", string(d.x.From), "accused", string(d.x.Accused), "fault", fmt.Sprint(d.x.Fault), "ruling", fmt.Sprint(d.r)}, "round %d: refereed %s's %s claim against %s: %s", d.x.Round, short(string(d.x.From)), d.x.Fault, short(string(d.x.Accused)), d.r)
	n.eng.Rule(d.x, d.r)
}
