package gossip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip/pb"
	"github.com/vtrain/vtrain/trainer"
)

// A verdict pushed to a peer is judged as if gossiped; anything else, or
// a message that does not verify, is refused, at the pusher's cost.
func TestPushVerdict(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	run := spec.RunID()
	var mu sync.Mutex
	var judged []string
	judge := func(m *Msg) consensus.Decision {
		mu.Lock()
		judged = append(judged, m.Kind())
		mu.Unlock()
		if m.Verdict != nil && !m.Verdict.Pass {
			return consensus.Decision{Verdict: consensus.Reject, Reason: "made-up false accusation", Invalid: true}
		}
		return consensus.Decision{Verdict: consensus.Accept}
	}
	a := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	b := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec, Judge: judge}, stubServer{spec})
	if _, err := a.Connect(ctx, b.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	msgs := sampleMessages(t, k, run)
	var verdict, vote []byte
	for _, m := range msgs {
		raw, err := Encode(k, run, m)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Verdict != nil:
			verdict = raw
		case m.Vote != nil:
			vote = raw
		}
	}
	if err := a.Push(ctx, b.ID(), verdict); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "false accusation") {
		t.Fatalf("a failing verdict the judge refuses: %v", err)
	}
	var s pb.Signed
	proto.Unmarshal(verdict, &s)
	x := sampleMessages(t, k, run)[6].Verdict
	x.Pass, x.Reason = true, ""
	x.Sig = Signer(k)(consensus.VerdictSignBytes(run, x))
	pass, _ := Encode(k, run, consensus.Message{Verdict: x})
	if err := a.Push(ctx, b.ID(), pass); err != nil {
		t.Fatalf("a pass: %v", err)
	}
	if err := a.Push(ctx, b.ID(), vote); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "only verdicts") {
		t.Fatalf("a vote pushed: %v", err)
	}
	s.Signature = append([]byte(nil), s.Signature...)
	s.Signature[0] ^= 1
	forged, _ := proto.Marshal(&s)
	before := b.Penalty(a.ID())
	if err := a.Push(ctx, b.ID(), forged); !errors.Is(err, ErrRefused) {
		t.Fatalf("a forged verdict: %v", err)
	}
	if b.Penalty(a.ID()) <= before {
		t.Fatal("pushing a forged verdict cost the pusher nothing")
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(judged, ",") != "verdict,verdict" {
		t.Fatalf("judged %v, want the two verdicts only", judged)
	}
}

// notYetServer refuses evidence: for now (it has not decided the round),
// or for good.
type notYetServer struct {
	stubServer
	notYet bool
}

func (s notYetServer) Evidence(round uint64, _ consensus.Hash, _ []int) (trainer.Evidence, error) {
	if s.notYet {
		return trainer.Evidence{}, fmt.Errorf("%w: round %d is not decided here yet", ErrNotYet, round)
	}
	return trainer.Evidence{}, errors.New("not yet drawn, says a message that is not a not-yet")
}

// A refusal for now reaches the asker as ErrNotYet (which it retries);
// any other refusal does not, whatever its text says.
func TestRefusalNotYet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	asker := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, stubServer{spec})
	for _, notYet := range []bool{true, false} {
		srv := startTransport(ctx, t, Config{Key: newKey(t), Spec: spec}, notYetServer{stubServer{spec}, notYet})
		if _, err := asker.Connect(ctx, srv.Addrs()[0]); err != nil {
			t.Fatal(err)
		}
		_, err := asker.FetchEvidence(ctx, srv.ID(), 3, consensus.Hash{1}, []int{0})
		if !errors.Is(err, ErrRefused) || errors.Is(err, ErrNotYet) != notYet {
			t.Errorf("refused for now %v: got %v", notYet, err)
		}
	}
}
