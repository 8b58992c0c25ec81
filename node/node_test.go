package node_test

import (
	"testing"

	"github.com/vtrain/vtrain/node/nodetest"
)

// TestClusterAgrees runs four founders in process to the end of a short
// run: every node ends on the same certified state.
func TestClusterAgrees(t *testing.T) {
	c := nodetest.Start(t, 4, 4, nil)
	c.Wait()
	for _, n := range c.Nodes {
		if n.Summary == nil || n.Summary.FinalHash != c.Nodes[0].Summary.FinalHash || n.Summary.Rounds != 4 {
			t.Fatalf("node %s: %+v", n.ID, n.Summary)
		}
	}
}
