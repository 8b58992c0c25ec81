package cli

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/zk"
)

// provableSpec is the demo's spec for runs with private peers (demo
// --private N): softmax regression trained by plain SGD at batch 4, the
// step the circuit proves, with a shard of the training set per peer.
// With --private 0 every peer is public: the same training, the baseline.
func provableSpec(s runspec.Spec, peers int) runspec.Spec {
	s.Model = runspec.Model{Kind: models.LogReg}
	s.Inner.Optimizer, s.Inner.LR, s.Inner.Batch, s.Inner.Momentum, s.Inner.WeightDecay = "sgd", 0.05, 4, 0, 0
	s.Data.Shards = peers
	return s
}

// demoPrivacy makes the last founders of the demo private peers: it finds
// or makes the circuit's keys (a single-party setup, cached), pins their
// verifying key in the spec, and pins each private peer's data root and
// size over its shard. It returns the keys directory.
func demoPrivacy(spec *runspec.Spec, private []string, dataDir, keysDir string, stderr io.Writer) (string, error) {
	// A --spec file's proof timeout and wait policy stand (the demo
	// waits for its private peers unless the file says wait = false).
	spec.Privacy = runspec.Privacy{Mode: "zk", Depth: 16, ProofTimeout: spec.Privacy.ProofTimeout, Wait: spec.Privacy.Wait}
	p := spec.ZKParams()
	if err := p.Validate(); err != nil {
		return "", err
	}
	dir, hash, err := demoKeys(p, keysDir, stderr)
	if err != nil {
		return "", err
	}
	spec.Privacy.VKSHA256 = hash
	set, _, err := data.Load(dataDir, spec.Run.Seed)
	if err != nil {
		return "", err
	}
	for _, id := range private {
		root, size, err := node.PrivateData(*spec, id, set.Train)
		if err != nil {
			return "", err
		}
		spec.Privacy.Peers = append(spec.Privacy.Peers, runspec.PrivatePeer{Peer: id, DataRoot: root, DataSize: size})
	}
	slices.SortFunc(spec.Privacy.Peers, func(a, b runspec.PrivatePeer) int { return strings.Compare(a.Peer, b.Peer) })
	return dir, nil
}

// demoKeys returns a keys directory for circuit p and its verifying key's
// hash: dir if it holds keys for p, else the user cache's entry for p,
// made by a single-party Groth16 setup when absent (zk.DemoKeys).
func demoKeys(p zk.Params, dir string, stderr io.Writer) (string, string, error) {
	var start time.Time
	keys, dir, err := zk.DemoKeys(p, dir, func(dir string) {
		fmt.Fprintf(stderr, "vtrain demo: no keys for the circuit in %s: a single-party Groth16 setup for this demo (a real run takes its keys from vtrain ceremony); once, cached there\n", dir)
		start = time.Now()
	})
	var other *zk.OtherCircuitError
	if errors.As(err, &other) {
		return "", "", usagef("--zk-keys %s: keys for circuit %+v, the demo proves %+v", other.Dir, other.Got, other.Want)
	}
	if err != nil {
		return "", "", err
	}
	if keys.PK != nil { // made here
		fmt.Fprintf(stderr, "vtrain demo: keys made in %.0fs\n", time.Since(start).Seconds())
	}
	return dir, zk.VKHash(keys.VK), nil
}
