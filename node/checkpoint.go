package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/gossip/pb"
	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/verify/audit"
	"google.golang.org/protobuf/proto"
)

// The local checkpoint: the agreed state (with its membership) and the
// compression residual, so that a crashed node restarts where it was, and
// the chain of certified decisions it holds, to serve proofs after a
// restart and to check verdicts against.
const (
	checkpointFile = "state.safetensors"
	chainFile      = "chain.pb"
)

func writeAtomic(p string, b []byte) error {
	if err := os.WriteFile(p+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

func (n *node) saveCheckpoint() error {
	st, _ := n.eng.Latest()
	chain, err := gossip.ProofPB(&consensus.Proof{Links: n.eng.Chain()})
	if err != nil {
		return err
	}
	cb, err := proto.Marshal(chain)
	if err != nil {
		return err
	}
	// The chain first: a state never outruns the chain that leads to it.
	if err := writeAtomic(filepath.Join(n.cfg.OutDir, chainFile), cb); err != nil {
		return err
	}
	// The residual the run expects this node to continue (its last
	// aggregated update's), which may be behind the encoder's.
	res := n.enc.Residual()
	n.mu.RLock()
	if r, ok := n.residuals[n.eng.ResidualMark(n.self)]; ok {
		res = r
	}
	n.mu.RUnlock()
	b := audit.EncodeState(st, map[string]string{"run": n.spec.RunID().String()},
		safetensors.Tensor{Name: "residual", Shape: []int{len(st.Theta)}, Data: res})
	return writeAtomic(filepath.Join(n.cfg.OutDir, checkpointFile), b)
}

// loadCheckpoint returns the node's checkpoint of this run, an error
// wrapping os.ErrNotExist when there is none, or another error when it is
// damaged or of another run.
func (n *node) loadCheckpoint() (consensus.State, []consensus.Link, error) {
	p := filepath.Join(n.cfg.OutDir, checkpointFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return consensus.State{}, nil, err
	}
	st, f, err := audit.DecodeState(b)
	if err != nil {
		return consensus.State{}, nil, fmt.Errorf("node: checkpoint %s: %w", p, err)
	}
	if f.Metadata["run"] != n.spec.RunID().String() {
		return consensus.State{}, nil, fmt.Errorf("node: checkpoint %s is of run %s, not %s", p, f.Metadata["run"], n.spec.RunID())
	}
	re, ok := f.Get("residual")
	if d := n.model.NumParams(); !ok || len(st.Theta) != d || len(re.Data) != d {
		return consensus.State{}, nil, fmt.Errorf("node: checkpoint %s does not fit %s", p, n.model)
	}
	cb, err := os.ReadFile(filepath.Join(n.cfg.OutDir, chainFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return consensus.State{}, nil, err
	}
	var chain pb.Proof
	if err := proto.Unmarshal(cb, &chain); err != nil {
		return consensus.State{}, nil, fmt.Errorf("node: %s: %w", chainFile, err)
	}
	pr, err := gossip.ProofFromPB(&chain)
	if err != nil {
		return consensus.State{}, nil, fmt.Errorf("node: %s: %w", chainFile, err)
	}
	if err := n.enc.SetResidual(re.Data); err != nil {
		return consensus.State{}, nil, err
	}
	n.noteResidual(slices.Clone(re.Data))
	return st, pr.Links, nil
}
