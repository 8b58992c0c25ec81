// Package cli is vtrain's command line: decentralized nodes and the demo,
// audits of their ledgers, local training, zk proofs, benchmarks and
// checkpoint export; a thin shell over the packages that do the work.
// Command vtrain (cmd/vtrain) is Main and nothing else.
//
// A binary with a user's own model is two lines: import the package that
// registers the model (models.Register), and call Main. The demo starts
// its nodes from the running binary, so they have the model too.
//
//	package main
//
//	import (
//		"os"
//
//		"github.com/vtrain/vtrain/cli"
//		_ "example.com/mymodel"
//	)
//
//	func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
//
// Exit codes: 0 success, 1 a failure while running, 2 a usage error.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// usageError marks errors in how vtrain was called (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"demo", "launch N node processes on loopback and train one model together", runDemo},
		{"node", "start a decentralized run (--spec) or join one (--join)", runNode},
		{"id", "print a node's peer ID (creating its identity): for a spec's founders", runID},
		{"train", "train a model locally and evaluate it", runTrain},
		{"bench", "benchmarks (bench step: time training steps)", runBench},
		{"export", "export a checkpoint's parameters as one safetensors file", runExport},
		{"plot", "plot runs' accuracy, loss and bytes against round (from each node's metrics.jsonl)", runPlot},
		{"audit", "verify nodes' ledgers from genesis (certificates, aggregates, verdicts) and report every peer's contributions", runAudit},
		{"keygen", "single-party Groth16 setup for a zk circuit (part of a private run's genesis)", runKeygen},
		{"ceremony", "multi-party Groth16 setup for a zk circuit: init, contribute, verify, finalize", runCeremony},
		{"prove", "prove one fixed-point SGD step on private data (zk)", runProve},
		{"verify-proof", "verify a zk proof bundle against a run's verifying key", runVerifyProof},
	}
}

func mainUsage(w io.Writer) {
	fmt.Fprintf(w, `vtrain — verifiable, decentralized training

Usage: vtrain <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'vtrain <command> --help' for a command's flags.\n")
}

// Main runs the vtrain command line on args (without the program name)
// and returns the process's exit code.
func Main(args []string, stdout, stderr io.Writer) int { return run(args, stdout, stderr) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		mainUsage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		mainUsage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			var ue usageError
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.As(err, &ue):
				fmt.Fprintf(stderr, "vtrain %s: %s (see 'vtrain %s --help')\n", c.name, message(c.name, err), c.name)
				return 2
			default:
				fmt.Fprintf(stderr, "vtrain %s: %s\n", c.name, message(c.name, err))
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "vtrain: unknown command %q\n\n", args[0])
	mainUsage(stderr)
	return 2
}

// message is err's text for one line after "vtrain CMD: ": on one line,
// and since errors wrapped
// through several layers can repeat a prefix ("node: node: ledger:
// ledger: …"), and the command's own name would repeat "vtrain node:".
func message(cmd string, err error) string {
	// One line: libp2p lists its dial attempts on lines of their own.
	text := strings.Join(strings.FieldsFunc(err.Error(), func(r rune) bool { return r == '\n' }), "; ")
	text = strings.ReplaceAll(text, ";   * ", "; ")
	parts := strings.Split(text, ": ")
	out := parts[:0]
	for _, p := range parts {
		if len(out) > 0 && p == out[len(out)-1] {
			continue
		}
		out = append(out, p)
	}
	if len(out) > 1 && out[0] == cmd {
		out = out[1:]
	}
	return strings.Join(out, ": ")
}

// newFlags returns a flag set that reports errors instead of exiting, with
// a usage text that lists every flag.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("vtrain "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: vtrain %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, turning flag errors into usage errors and refusing
// stray positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard) // print usage ourselves, once
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return err
	}
	if err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// parsePositional parses flags that may come before, between or after
// positional arguments (vtrain audit LEDGER --json), and returns the
// positional ones.
func parsePositional(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return pos, nil
}
