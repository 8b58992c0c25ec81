package cli

import (
	"fmt"
	"io"

	"github.com/vtrain/vtrain/node"
)

// runID prints a node's peer ID, creating its identity in --out if there
// is none yet: what a run's creator collects from the founders for the
// spec's members.genesis before the run starts.
func runID(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("id", "id --out DIR", stderr)
	out := fs.String("out", "", "the node's output directory (where vtrain node --out keeps its identity)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	_, id, err := node.LoadIdentity(*out)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}
