package node_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/node/nodetest"
	"github.com/vtrain/vtrain/runspec"
)

// TestPrivateRunRefusals: a node of a run with private peers refuses to
// start, with a usage error that says what to give, when the spec lists
// no private peer, when it has no keys, or when its keys directory is
// not the run's; nothing is left half started. (The run itself, with real
// proofs, is cli's TestDemoPrivate.)
func TestPrivateRunRefusals(t *testing.T) {
	dir := t.TempDir()
	_, id, err := node.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := nodetest.Spec(t, 2, []string{id.String()})
	s.Inner.Optimizer, s.Inner.Momentum, s.Inner.WeightDecay, s.Inner.Batch = "sgd", 0, 0, 4
	s.Privacy = runspec.Privacy{Mode: "zk", Depth: 16, VKSHA256: strings.Repeat("0", 64)}
	set := data.Synthetic(1, 64, 16)
	run := func(s runspec.Spec, keys string) error {
		_, err := node.Run(context.Background(), node.Config{Spec: &s, OutDir: t.TempDir(), Data: set, Listen: []string{"/ip4/127.0.0.1/tcp/0"},
			Out: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ZKDir: keys})
		return err
	}
	if err := run(s, ""); !errors.Is(err, node.ErrUsage) || !strings.Contains(err.Error(), "[privacy] peers") {
		t.Errorf("no private peer listed: %v", err)
	}
	s.Privacy.Peers = []runspec.PrivatePeer{{Peer: id.String(), DataRoot: strings.Repeat("0", 63) + "1", DataSize: 64}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := run(s, ""); !errors.Is(err, node.ErrUsage) || !strings.Contains(err.Error(), "--zk-keys") {
		t.Errorf("no keys: %v", err)
	}
	if err := run(s, t.TempDir()); !errors.Is(err, node.ErrUsage) || !strings.Contains(err.Error(), "--zk-keys") {
		t.Errorf("an empty keys directory: %v", err)
	}
}
