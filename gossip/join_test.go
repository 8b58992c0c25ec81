package gossip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/vtrain/vtrain/runspec"
)

// A joiner that dials a peer not up yet asks again until it is, and gets
// the spec; one whose address does not parse, or whose peer sends a spec
// that is not the run it asked for, gets an error at once.
func TestFetchSpecPatiently(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := testSpec(t)
	var tries []error
	note := func(_ int, err error, _ time.Duration) { tries = append(tries, err) }

	if _, err := FetchSpecPatiently(ctx, "/ip4/127.0.0.1/tcp/1", spec.RunID(), time.Minute, note); !errors.Is(err, ErrBadJoin) || len(tries) != 0 {
		t.Fatalf("an address without a peer ID: %v after %d tries, want %v at once", err, len(tries), ErrBadJoin)
	}

	// A port to listen on later.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	k := newKey(t)
	addr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, pidOf(k))
	up := make(chan *Transport, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		tr, err := New(ctx, Config{Key: k, Listen: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}, Spec: spec}, stubServer{spec})
		if err != nil {
			t.Error(err)
		}
		up <- tr
	}()
	info, err := FetchSpecPatiently(ctx, addr, spec.RunID(), time.Minute, note)
	if tr := <-up; tr != nil {
		defer tr.Close()
	}
	if err != nil || info.Spec.RunID() != spec.RunID() {
		t.Fatalf("the peer came up after 1.5 s: %v, spec of run %s", err, info.Spec.RunID())
	}
	if len(tries) == 0 {
		t.Error("got the spec at the first try from a peer that was not up")
	}

	tries = nil
	if _, err := FetchSpecPatiently(ctx, addr, runspec.ID{1}, time.Minute, note); !errors.Is(err, ErrBadJoin) || len(tries) != 0 {
		t.Fatalf("the spec of another run: %v after %d tries, want %v at once", err, len(tries), ErrBadJoin)
	}
	tries = nil
	if _, err := FetchSpecPatiently(ctx, "/ip4/127.0.0.1/tcp/1/p2p/"+string(pidOf(newKey(t))), spec.RunID(), 2*time.Second, note); err == nil || errors.Is(err, ErrBadJoin) || len(tries) == 0 {
		t.Fatalf("nobody there: %v after %d tries, want a connection error after some", err, len(tries))
	}
}
