package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/monitor"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/runspec"
)

func runNode(args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlags("node", "node --spec run.toml | --join ADDR --run ID | --out DIR (restart) [flags]", stderr)
	specPath := fs.String("spec", "", "start a run from this TOML spec (see examples/run.toml)")
	join := fs.String("join", "", "join the run of the peer at this multiaddr (printed by a running node)")
	runID := fs.String("run", "", "the run ID to expect: all 64 hex digits when joining (the peer's spec must hash to it); when restarting from --out, a prefix of 8 or more is enough")
	listen := fs.String("listen", "/ip4/127.0.0.1/tcp/0", "multiaddrs to listen on, comma-separated (behind NAT: a private address; AutoNAT, relays and hole punching do the rest)")
	quic := fs.Bool("quic", true, "also listen on QUIC (UDP) beside each TCP address of --listen, on the same IP and port number")
	dataDir := fs.String("data", "", "Fashion-MNIST directory, or 'synthetic' (must match the spec's data.source)")
	out := fs.String("out", "", "directory for this node's identity, checkpoint, ledger, metrics.jsonl and summary; restart with the same --out alone (default: a new temporary directory, removed if the run fails)")
	asJSON := fs.Bool("json", false, "print one JSON object per event and per round ({\"t\":…,\"event\":…}) instead of text lines")
	linger := fs.Duration("linger", 5*time.Second, "after the last round, keep serving peers at least this long, and while members of the run have not finished (up to --linger-max)")
	lingerMax := fs.Duration("linger-max", 0, "after the last round, wait at most this long for members that have not finished (0: the spec's rounds.timeout + 8 × rounds.commit_timeout)")
	joinPatience := fs.Duration("join-patience", 0, "with --join: keep asking the peer for the run's spec this long while it is not up yet or the connection breaks (e.g. 1m when nodes start together); 0 asks once")
	evalEvery := fs.Int("eval-every", 5, "evaluate the agreed model on the test set every N rounds (and after the last)")
	minPeers := fs.Int("min-peers", 0, "before round 0, wait until this many peers of the run (this node included) are connected, showing who is there")
	logLvl := fs.String("log-level", "warn", "log to stderr from this level: debug, info, warn or error")
	verbose := fs.Bool("v", false, "same as --log-level info")
	device := addDeviceFlag(fs)
	zkKeys := fs.String("zk-keys", "", "the run's zk keys directory (vtrain ceremony finalize or vtrain keygen), in runs with private peers ([privacy] peers): the verifying key checks their proofs; a private peer also proves with the proving key")
	httpAddr := fs.String("http", "", "serve a live dashboard at / and Prometheus metrics at /metrics on this address (host:port, e.g. 127.0.0.1:9100)")
	behave := fs.String("behave", "honest", "how this node behaves: "+strings.Join(node.Behaviours, "|")+
		" (all but honest misbehave on purpose, to watch spot-checks catch them: lazy skips the inner steps, noise sends Gaussian noise of the honest norm, replay re-signs another peer's update, scaled multiplies its update by 50, stale trains from an old state, flip negates its update, alie shifts it by one standard deviation against its sign, ipm sends the negated mean of the round's other updates it has seen, accuse fails every check it is drawn for with a made-up dispute, accuse-any also fails updates it was not drawn for, collude passes every check without looking, forge spoils its signatures, forge-proof (a private peer) answers with a proof of another batch's step; a member's misbehaviour+N starts at round N)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if _, _, err := node.ParseBehave(*behave); err != nil {
		return usagef("--behave: %v", err)
	}
	level, err := logLevel(*logLvl)
	if err != nil {
		return err
	}
	if *verbose && !flagSet(fs, "log-level") {
		level = slog.LevelInfo
	}
	if *httpAddr != "" {
		if _, _, err := net.SplitHostPort(*httpAddr); err != nil {
			return usagef("--http must be HOST:PORT (e.g. 127.0.0.1:9100): %v", err)
		}
	}
	switch {
	case *specPath != "" && *join != "":
		return usagef("give one of --spec (start a run) and --join (join one), not both")
	case *specPath == "" && *join == "" && *out == "":
		return usagef("give --spec to start a run, --join to join one, or --out DIR to restart the node that ran there")
	case *evalEvery < 1:
		return usagef("--eval-every must be positive")
	case *linger < 0:
		return usagef("--linger must not be negative, got %v", *linger)
	case *lingerMax < 0:
		return usagef("--linger-max must not be negative, got %v", *lingerMax)
	case *joinPatience < 0:
		return usagef("--join-patience must not be negative, got %v", *joinPatience)
	case *joinPatience > 0 && *join == "":
		return usagef("--join-patience applies to --join")
	case *minPeers < 0:
		return usagef("--min-peers must not be negative, got %d", *minPeers)
	case *minPeers > 0 && *specPath == "":
		return usagef("--min-peers applies to the node that starts a run (--spec)")
	}
	if *join != "" {
		if err := checkJoinAddr(*join); err != nil {
			return err
		}
	}
	want, err := expectRun(*runID, *specPath != "", *join != "", *out)
	if err != nil {
		return err
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
	con := newConsole(stderr)
	cfg := node.Config{Join: *join, RunID: want, Listen: addrs, Out: con.out(stdout), JSONLines: *asJSON, EvalEvery: *evalEvery,
		Linger: *linger, LingerMax: *lingerMax, JoinPatience: *joinPatience, Device: eng, MinPeers: *minPeers, Logger: con.logger(level), ZKDir: *zkKeys}
	if *behave != "honest" {
		cfg.Behave = *behave
	}
	source := ""
	switch {
	case *specPath != "":
		spec, err := runspec.Load(*specPath)
		if err != nil {
			return err
		}
		cfg.Spec = &spec
		source = spec.Data.Source
	case *join == "":
		spec, _, err := node.SavedRun(*out)
		if errors.Is(err, node.ErrNoRun) {
			return usagef("give --spec to start a run or --join to join one: %v", err)
		}
		if err != nil {
			return err
		}
		source = spec.Data.Source
	}
	cfg.OutDir = *out
	if cfg.OutDir == "" {
		d, terr := os.MkdirTemp("", "vtrain-node-")
		if terr != nil {
			return terr
		}
		cfg.OutDir = d
		// A failed run leaves nothing behind; one that ran (or was
		// interrupted) keeps its directory, which the node names at start.
		defer func() {
			if err != nil && !errors.Is(err, context.Canceled) {
				os.RemoveAll(d)
			}
		}()
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
		con.println("vtrain node: no Fashion-MNIST installed; using the built-in synthetic dataset")
	}
	cfg.Data = set
	if *httpAddr != "" {
		m := monitor.New()
		srv, err := monitor.Serve(*httpAddr, m, cfg.Logger)
		if err != nil {
			return fmt.Errorf("--http: %w", err)
		}
		defer srv.Close()
		cfg.Observer = m
		con.println(fmt.Sprintf("vtrain node: dashboard at %s, metrics at %smetrics", srv.URL(), srv.URL()))
	}
	var prog *progress
	cfg.OnRound = func(r node.RoundReport, rounds int) {
		if rounds <= 0 || *asJSON {
			return // with --json, the round events are the progress
		}
		if prog == nil {
			prog = con.progress("round", int64(rounds))
		}
		prog.update(int64(r.Round+1), fmt.Sprintf("inner loss %.4f", r.Loss))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err = node.Run(ctx, cfg)
	con.clear()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if errors.Is(err, node.ErrUsage) {
		return usageError{strings.TrimPrefix(strings.TrimPrefix(err.Error(), node.ErrUsage.Error()), ": ")}
	}
	return err
}

// checkJoinAddr refuses a join address that is not a peer's full
// multiaddr: a usage error, found before anything starts.
func checkJoinAddr(s string) error {
	m, err := ma.NewMultiaddr(s)
	if err == nil {
		_, err = peer.AddrInfoFromP2pAddr(m)
	}
	if err != nil {
		return usagef("--join %q is not a peer's address (one like /ip4/127.0.0.1/tcp/40123/p2p/12D3KooW…, as a running node prints): %v", s, err)
	}
	return nil
}

// expectRun reads --run. Joining, it must be the full 64 hex digits: a
// joiner can only check a run ID against what the peer it dials serves,
// and that peer picks the spec it serves; matching a prefix of k digits
// takes it about 16^k tries to fake (for 8 digits, 2^32 hashes: minutes),
// so a prefix would check nothing against the one peer it must not trust.
// Restarting from --out, the run is on this node's own disk, which cannot
// be confused with another: there a prefix of 8 digits or more is enough,
// and it must match that run. An all-zero ID names no run.
func expectRun(s string, starting, joining bool, out string) (runspec.ID, error) {
	var id runspec.ID
	if s == "" {
		return id, nil
	}
	if starting {
		return id, usagef("--run applies to joining a run or restarting a node; a node started with --spec prints its run's ID")
	}
	if _, err := hex.DecodeString(s + strings.Repeat("0", len(s)%2)); err != nil || len(s) > 64 {
		return id, usagef("--run %q is not a run ID (64 hex digits)", s)
	}
	if strings.Trim(s, "0") == "" {
		return id, usagef("--run %s names no run: give the 64-digit ID the run's nodes print", s)
	}
	if len(s) == 64 {
		b, _ := hex.DecodeString(s)
		copy(id[:], b)
		return id, nil
	}
	if joining {
		return id, usagef("--run %s: give all 64 hex digits when joining; a prefix could only be checked against the spec of the peer you dial, which could make one up to match it (the run's nodes print the full ID)", s)
	}
	if len(s) < 8 {
		return id, usagef("--run %s: a prefix must have 8 hex digits or more", s)
	}
	spec, _, err := node.SavedRun(out)
	if errors.Is(err, node.ErrNoRun) {
		return id, usagef("--run %s: %v", s, err)
	}
	if err != nil {
		return id, err
	}
	if !strings.HasPrefix(spec.RunID().String(), strings.ToLower(s)) {
		return id, usagef("--run %s: %s holds run %s", s, out, spec.RunID())
	}
	return spec.RunID(), nil
}
