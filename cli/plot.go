package cli

import (
	"fmt"
	"io"

	"github.com/vtrain/vtrain/history"
)

func runPlot(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("plot", "plot RUN_DIR... --out curves.png", stderr)
	out := fs.String("out", "curves.png", "write the PNG here")
	pos, err := parsePositional(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("name one run directory or more: a node's --out directory or a demo's (each holds %s)", history.File)
	}
	var runs []history.Run
	for _, p := range pos {
		r, err := history.Load(p)
		if err != nil {
			return err
		}
		runs = append(runs, r)
	}
	if err := history.PlotFile(*out, runs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: accuracy, loss and bytes against round for %d run(s)\n", *out, len(runs))
	return nil
}
