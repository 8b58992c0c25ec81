package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/audit"
	"github.com/vtrain/vtrain/verify/ledger"
)

var errAudit = audit.ErrAudit

func readSummary(p string) (*node.Summary, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var s node.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &s, nil
}

func runAudit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit", "audit [flags] LEDGER...", stderr)
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	dataDir := fs.String("data", "", "the run's public data (Fashion-MNIST directory, or 'synthetic'): re-execute the keepers' challenges")
	var witness multiFlag
	fs.Var(&witness, "witness", "another node's summary.json (repeatable): check each ledger against the tree head that node received from its keeper by gossip")
	full := fs.Bool("full", false, "with --data: re-execute every segment of every aggregated update, and re-derive its payload")
	pos, err := parsePositional(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("usage: vtrain audit [flags] LEDGER...")
	}
	if *full && *dataDir == "" {
		return usagef("--full re-executes training: it needs --data")
	}
	opts := audit.Options{Heads: map[string]*ledger.SignedTreeHead{}, Witnessed: map[string]*ledger.SignedTreeHead{}, Full: *full}
	var spec *runspec.Spec
	for _, p := range pos {
		// Each keeper's summary.json, beside its ledger, holds the tree
		// head it published last, and says whether its run finished.
		sp := filepath.Join(filepath.Dir(p), "summary.json")
		if _, err := os.Stat(sp); err != nil {
			continue
		}
		s, err := readSummary(sp)
		if err != nil {
			return err
		}
		opts.Heads[p] = s.TreeHead
		for k, h := range s.Witnessed {
			if w := opts.Witnessed[k]; w == nil || h.Size > w.Size {
				opts.Witnessed[k] = h
			}
		}
		if c, err := ledger.Check(p, nil); err == nil {
			if sp, err := runspec.FromCanonical(c.Entries[0].Data, runspec.ID(c.Run)); err == nil {
				spec = &sp
				opts.Finished = opts.Finished || sp.Run.Rounds > 0 && s.Rounds >= uint64(sp.Run.Rounds)
			}
		}
	}
	for _, w := range witness {
		s, err := readSummary(w)
		if err != nil {
			return err
		}
		for k, h := range s.Witnessed {
			if w := opts.Witnessed[k]; w == nil || h.Size > w.Size {
				opts.Witnessed[k] = h
			}
		}
	}
	if *dataDir != "" {
		if spec == nil {
			c, err := ledger.Check(pos[0], nil)
			if err != nil {
				return fmt.Errorf("%w: %v", errAudit, err)
			}
			sp, err := runspec.FromCanonical(c.Entries[0].Data, runspec.ID(c.Run))
			if err != nil {
				return fmt.Errorf("%w: %v", errAudit, err)
			}
			spec = &sp
		}
		set, fellBack, err := data.Load(*dataDir, spec.Run.Seed)
		if err != nil {
			return err
		}
		if (fellBack || *dataDir == "synthetic") != (spec.Data.Source == "synthetic") {
			return usagef("--data %s does not hold the run's %s data", *dataDir, spec.Data.Source)
		}
		opts.Train = set.Train
	}
	if opts.Train != nil {
		// Re-execution takes minutes (--full: every segment of every
		// update): show how far each ledger's replay is.
		con := newConsole(stderr)
		var prog *progress
		cur := ""
		opts.Progress = func(ledger string, done, total int) {
			if ledger != cur {
				cur, prog = ledger, con.progress("entry", int64(total))
				prog.note("replaying " + ledger)
			}
			prog.update(int64(done), "")
			if done == total {
				prog.done()
			}
		}
	}
	rep, err := audit.Audit(pos, opts)
	if *asJSON {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(stdout, string(b))
	}
	if err != nil {
		if errors.Is(err, audit.ErrAudit) {
			return err
		}
		return fmt.Errorf("%w: %v", errAudit, err)
	}
	if *asJSON {
		return nil
	}
	for _, lr := range rep.Ledgers {
		printLedger(stdout, lr)
	}
	for _, s := range rep.Cross {
		fmt.Fprintf(stdout, "cross-checked: %s\n", s)
	}
	return nil
}

func printLedger(w io.Writer, lr *audit.LedgerReport) {
	fmt.Fprintf(w, "ok: %s: run %s, keeper %s, %d entries, %d tree heads, %d rounds decided\n",
		lr.Ledger, lr.Run[:16], lr.Keeper, lr.Entries, lr.TreeHeads, lr.Rounds)
	for _, s := range lr.Checked {
		fmt.Fprintf(w, "  checked: %s\n", s)
	}
	fmt.Fprintf(w, "%-54s %7s %8s %10s %8s %10s %6s %9s %11s %s\n", "peer", "updates", "accepted", "aggregated", "rejected", "acceptance", "wait", "samples", "challenges", "excluded")
	for _, p := range lr.Peers {
		rej := 0
		for _, n := range p.Rejected {
			rej += n
		}
		wait := "-"
		if p.WaitRounds != nil {
			wait = fmt.Sprint(*p.WaitRounds)
		}
		ex := "-"
		if p.Excluded != nil {
			ex = fmt.Sprintf("from round %d (%s)", *p.Excluded, p.Reason)
		}
		fmt.Fprintf(w, "%-54s %7d %8d %10d %8d %10.3f %6s %9d %5d/%-5d %s\n", p.Peer, p.Updates, p.Accepted, p.Aggregated, rej, p.Acceptance, wait, p.Samples, p.Passed, p.Passed+p.Failed, ex)
	}
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return fmt.Sprint([]string(*m)) }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }
