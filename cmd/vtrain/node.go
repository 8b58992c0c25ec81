package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/runspec"
)

func runNode(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node", "node --spec run.toml | --join ADDR [flags]", stderr)
	specPath := fs.String("spec", "", "start a run from this TOML spec (see examples/run.toml)")
	join := fs.String("join", "", "join the run of the peer at this multiaddr (printed by a running node)")
	runID := fs.String("run", "", "when joining: the run ID to expect (hex); the peer's spec must hash to it")
	listen := fs.String("listen", "/ip4/127.0.0.1/tcp/0", "multiaddrs to listen on, comma-separated (behind NAT: a private address; AutoNAT, relays and hole punching do the rest)")
	quic := fs.Bool("quic", true, "also listen on QUIC (UDP) beside each TCP address of --listen, on the same IP and port number")
	dataDir := fs.String("data", "", "Fashion-MNIST directory, or 'synthetic' (must match the spec's data.source)")
	out := fs.String("out", "", "directory for this node's identity, checkpoint and summary (default: a new temporary directory)")
	asJSON := fs.Bool("json", false, "print one JSON object per round (and events) instead of text lines")
	linger := fs.Duration("linger", 5*time.Second, "after the last round, keep serving peers this long")
	evalEvery := fs.Int("eval-every", 5, "evaluate on the test set every N rounds")
	verbose := fs.Bool("v", false, "log protocol events to stderr")
	device := addDeviceFlag(fs)
	behave := fs.String("behave", "honest", "how this node behaves: "+strings.Join(node.Behaviours, "|")+
		" (all but honest misbehave on purpose, to watch spot-checks catch them: lazy skips the inner steps, noise sends Gaussian noise of the honest norm, replay re-signs another peer's update, scaled multiplies its update by 50, stale trains from an old state, flip negates its update, alie shifts it by one standard deviation against its sign, ipm sends the negated mean of the round's other updates it has seen, accuse fails every check it is drawn for with a made-up dispute, accuse-any also fails updates it was not drawn for, collude passes every check without looking, forge spoils its signatures; a member's misbehaviour+N starts at round N)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if _, _, err := node.ParseBehave(*behave); err != nil {
		return usagef("--behave: %v", err)
	}
	if (*specPath == "") == (*join == "") {
		return usagef("give exactly one of --spec and --join")
	}
	var want runspec.ID
	if *runID != "" {
		b, err := hex.DecodeString(*runID)
		if err != nil || len(b) != len(want) {
			return usagef("--run must be a 64-digit hex run ID")
		}
		copy(want[:], b)
	}
	if *evalEvery < 1 {
		return usagef("--eval-every must be positive")
	}
	eng, err := openDevice(*device)
	if err != nil {
		return err
	}
	if eng != nil {
		defer eng.Close()
	}
	addrs := strings.Split(*listen, ",")
	if *quic {
		if addrs, err = gossip.ListenWithQUIC(addrs); err != nil {
			return usagef("--listen: %v", err)
		}
	}
	cfg := node.Config{Join: *join, RunID: want, Listen: addrs, Out: stdout, JSONLines: *asJSON, EvalEvery: *evalEvery, Linger: *linger, Device: eng}
	if *behave != "honest" {
		cfg.Behave = *behave
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	source := ""
	if *specPath != "" {
		spec, err := runspec.Load(*specPath)
		if err != nil {
			return err
		}
		cfg.Spec = &spec
		source = spec.Data.Source
	}
	cfg.OutDir = *out
	if cfg.OutDir == "" {
		d, err := os.MkdirTemp("", "vtrain-node-")
		if err != nil {
			return err
		}
		cfg.OutDir = d
	}
	// The spec names the data; a joiner learns it from the peer, so load
	// what --data says, or the installed set.
	dir := *dataDir
	if dir == "" && source == "synthetic" {
		dir = "synthetic"
	}
	var seed uint64 = 1
	if cfg.Spec != nil {
		seed = cfg.Spec.Run.Seed
	}
	set, fellBack, err := data.Load(dir, seed)
	if err != nil {
		return err
	}
	if fellBack {
		if source == "fashion-mnist" {
			return fmt.Errorf("the spec trains on fashion-mnist, which is not installed (apt-get install dataset-fashion-mnist, or --data DIR)")
		}
		fmt.Fprintln(stderr, "vtrain node: no Fashion-MNIST installed; using the built-in synthetic dataset")
	}
	cfg.Data = set
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := node.Run(ctx, cfg)
	if sum != nil {
		b, _ := json.MarshalIndent(sum, "", "  ")
		if werr := os.WriteFile(filepath.Join(cfg.OutDir, "summary.json"), b, 0o644); werr != nil && err == nil {
			err = werr
		}
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if errors.Is(err, node.ErrUsage) {
		return usageError{strings.TrimPrefix(err.Error(), "node: ")}
	}
	return err
}
