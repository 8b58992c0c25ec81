package cli

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vtrain/vtrain/history"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/node"
	"github.com/vtrain/vtrain/runspec"
)

type demoResult struct {
	Peers              int     `json:"peers"`
	Rounds             uint64  `json:"rounds"`
	Model              string  `json:"model"`
	Data               string  `json:"data"`
	RunID              string  `json:"run_id"`
	TestAccuracy       float64 `json:"test_accuracy"`
	TestLoss           float64 `json:"test_loss"`
	DenseBytesPerRound int     `json:"dense_bytes_per_round"` // the model in fp32: what a dense update would be
	// The compressed payload of an update alone (mean over every update
	// published), and the dense size over it.
	PayloadBytes     float64 `json:"payload_bytes"`
	CompressionRatio float64 `json:"compression_ratio"`
	// What each peer published (each message once) per round, the update
	// messages (payload, commitments, envelope, signature) apart, and every
	// kind of published message.
	BytesSentPerPeerRound   float64            `json:"bytes_sent_per_peer_round"`
	UpdateBytesPerPeerRound float64            `json:"update_bytes_per_peer_round"`
	UpdateCompressionRatio  float64            `json:"update_compression_ratio"`
	SentByKind              map[string]float64 `json:"sent_per_peer_round_by_kind"`
	// Everything a peer moved out on the wire (each copy of a gossip
	// message, relays, control, evidence, state sync, libp2p's own), per
	// peer and round: over the whole run, and from the round after the
	// last peer joined (steady_from_round) to the end, with the dense
	// size over each, and the breakdown by category.
	WireBytesPerPeerRound       float64            `json:"wire_bytes_out_per_peer_round"`
	WireCompressionRatio        float64            `json:"wire_compression_ratio"`
	WireByCategory              map[string]float64 `json:"wire_out_per_peer_round_by_category"`
	SteadyFrom                  uint64             `json:"steady_from_round"`
	SteadyWireBytesPerPeerRound float64            `json:"steady_wire_bytes_out_per_peer_round"`
	SteadyWireCompressionRatio  float64            `json:"steady_wire_compression_ratio"`
	SteadyWireByCategory        map[string]float64 `json:"steady_wire_out_per_peer_round_by_category"`
	// Gossip copies received that were already seen, per message
	// delivered (all peers).
	DuplicatesPerDelivered float64  `json:"duplicates_per_delivered"`
	Agreed                 bool     `json:"agreed"`
	FinalHash              string   `json:"final_hash"`
	Seconds                float64  `json:"seconds"`
	SecondsPerRound        float64  `json:"seconds_per_round"` // peer 0: median time between decisions
	Out                    string   `json:"out"`
	Disagreements          []string `json:"disagreements,omitempty"`
	Ledgers                []string `json:"ledgers"`        // each node's ledger, for vtrain audit
	Plot                   string   `json:"plot,omitempty"` // accuracy, loss and bytes against round (peer 0's metrics.jsonl)
	// Dashboards lists each peer's dashboard (its /metrics beside it),
	// by peer index, with --http-base.
	Dashboards []string `json:"dashboards,omitempty"`

	Byzantine        []demoPeer          `json:"byzantine"` // peers started with --behave (members) and outsiders
	Excluded         []demoExclusion     `json:"excluded"`
	HonestExcluded   []string            `json:"honest_excluded"` // honest peers any honest node saw excluded: none, in a sound run
	PeerOutcomes     []demoOutcome       `json:"peer_outcomes"`
	FalseChallenges  int                 `json:"false_challenges"`           // failed verdicts against honest peers
	Challenges       node.ChallengeStats `json:"challenges"`                 // all honest peers' spot-checks together
	ChallengeCompute float64             `json:"challenge_compute_fraction"` // re-execution time / training time, all peers
}

type demoPeer struct {
	Index  int    `json:"index"`
	Peer   string `json:"peer"`
	Behave string `json:"behave"`
}

// byzMode is one --byzantine entry: a misbehaviour, the round it starts
// (MODE+N), and for a member that joins mid-run instead of founding the
// run, the round it joins at (MODE@R).
type byzMode struct {
	spec     string
	behave   string
	from     uint64
	joinAt   int // -1: a founder
	outsider bool
}

func parseByzMode(s string) (byzMode, error) {
	m := byzMode{spec: s, joinAt: -1}
	b, at, ok := strings.Cut(s, "@")
	if ok {
		var r int
		if _, err := fmt.Sscan(at, &r); err != nil || r < 1 || fmt.Sprint(r) != at {
			return m, fmt.Errorf("%q: the round after @ must be a positive integer", s)
		}
		m.joinAt = r
	}
	if slices.Contains(node.Outsiders, b) {
		if ok {
			return m, fmt.Errorf("%q: an outsider never joins", s)
		}
		m.behave, m.outsider = b, true
		return m, nil
	}
	name, from, err := node.ParseBehave(b)
	if err != nil || name == "" {
		return m, fmt.Errorf("%q is not a misbehaviour (%s, %s; a member's may end in +ROUND, and @ROUND to join mid-run)", s, strings.Join(memberModes(), ", "), strings.Join(node.Outsiders, ", "))
	}
	m.behave, m.from = name, from
	return m, nil
}

// demoOutcome is what became of one peer of the demo.
type demoOutcome struct {
	demoPeer
	Outsider bool `json:"outsider"` // never a member: it attacked from outside
	// Members that misbehave: the round they start (a training cheat's
	// first cheating round), the round they joined at (-1 founders), and
	// how many of their updates from then on the run aggregated before
	// excluding them (peer 0's decisions).
	FirstCheatingRound        *uint64 `json:"first_cheating_round,omitempty"`
	JoinedAt                  int     `json:"joined_at_round"`
	AggregatedCheatingUpdates int     `json:"aggregated_cheating_updates"`
	RoundsToExclusion         *uint64 `json:"rounds_to_exclusion,omitempty"`
	Member                    bool    `json:"member_at_end"` // a member when its node stopped
	ExcludedFrom              *uint64 `json:"excluded_from"` // the first round it was excluded from, as the honest nodes saw it
	FinalHash                 string  `json:"final_hash"`    // its node's final state ("" for outsiders)
	Sent                      int64   `json:"messages_sent"` // outsiders: what they sent
	// Runs with private peers (--private): whether it is one, the proofs
	// of its steps it made, and the distinct proofs it verified (every
	// private update's drawn step, in the verdicts it took).
	Private        bool    `json:"private,omitempty"`
	ProofsMade     int     `json:"proofs_made,omitempty"`
	ProofsVerified int     `json:"proofs_verified"`
	ProofsRefused  int     `json:"proofs_refused,omitempty"`
	TestAccuracy   float64 `json:"test_accuracy"` // members: of their final state
}

type demoExclusion struct {
	demoPeer
	Round  uint64 `json:"round"` // the first round it was excluded from
	Reason string `json:"reason"`
}

func runDemo(args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlags("demo", "demo [flags]", stderr)
	peers := fs.Int("peers", 4, "number of node processes to launch on loopback")
	rounds := fs.Int("rounds", 30, "rounds to run")
	dataDir := fs.String("data", "", "Fashion-MNIST directory, or 'synthetic'; default: the installed dataset, else synthetic")
	specPath := fs.String("spec", "", "run spec to use instead of the defaults (its rounds are replaced by --rounds)")
	out := fs.String("out", "", "directory for the nodes' output (default: a new temporary directory)")
	asJSON := fs.Bool("json", false, "end with one JSON object on the last line of stdout")
	evalEvery := fs.Int("eval-every", 5, "each node evaluates the agreed model on the test set every N rounds (and after the last)")
	logLvl := fs.String("log-level", "warn", "the nodes log to stderr from this level: debug, info, warn or error")
	httpBase := fs.Int("http-base", 0, "serve each peer's dashboard and /metrics on 127.0.0.1, peer i on port PORT+i (0: none)")
	byzantine := fs.String("byzantine", "", "comma-separated misbehaviours: member ones for the last peers ("+strings.Join(memberModes(), ",")+"; MODE+N starts at round N, MODE@R joins mid-run at round R instead of founding the run), outsider attacks as extra processes ("+strings.Join(node.Outsiders, ",")+"), e.g. lazy,replay or alie+10 or lazy+16@3,hijack")
	private := fs.Int("private", -1, "the last N peers train on private data and prove their steps (zk): the run is then softmax regression by plain SGD at batch 4, the statement the circuit proves, on a shard per peer; --private 0 runs that same spec with every peer public (the baseline). The keys come from a single-party setup cached in --zk-keys")
	zkKeys := fs.String("zk-keys", "", "with --private: the circuit's keys directory (vtrain keygen, vtrain ceremony finalize); generated once and cached there when it holds none (default: the user cache directory)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if _, err := logLevel(*logLvl); err != nil {
		return err
	}
	if *private < -1 || *private >= *peers {
		return usagef("--private must be 0..%d (peer 0 starts the run as a public peer), got %d", *peers-1, *private)
	}
	if *zkKeys != "" && *private < 1 {
		return usagef("--zk-keys applies with --private N (N > 0)")
	}
	// Peers 0..peers-1 are the founders (the misbehaving ones last), then
	// the members that join mid-run, then the outsiders.
	var behave, joiners, outsiders []byzMode
	if *byzantine != "" {
		for _, b := range strings.Split(*byzantine, ",") {
			m, err := parseByzMode(b)
			switch {
			case err != nil:
				return usagef("--byzantine: %v", err)
			case m.outsider:
				outsiders = append(outsiders, m)
			case m.joinAt >= 0:
				joiners = append(joiners, m)
			default:
				behave = append(behave, m)
			}
		}
		if len(behave) >= *peers {
			return usagef("--byzantine: %d misbehaving members need at least %d peers (peer 0 starts the run honestly)", len(behave), len(behave)+1)
		}
	}
	extra := append(slices.Clone(joiners), outsiders...)
	mode := func(i int) (byzMode, bool) {
		if i >= *peers {
			return extra[i-*peers], true
		}
		if k := i - (*peers - len(behave)); k >= 0 {
			return behave[k], true
		}
		return byzMode{joinAt: -1}, false
	}
	behaviour := func(i int) string {
		m, _ := mode(i)
		return m.spec
	}
	isOutsider := func(i int) bool { m, _ := mode(i); return m.outsider }
	if *peers < 1 || *peers > 64 {
		return usagef("--peers must be 1..64, got %d", *peers)
	}
	if *evalEvery < 1 {
		return usagef("--eval-every must be positive, got %d", *evalEvery)
	}
	if *rounds < 1 {
		return usagef("--rounds must be positive, got %d", *rounds)
	}
	if *httpBase < 0 || *httpBase > 65535-(*peers+len(extra)-1) {
		return usagef("--http-base must be a port from 1 to %d, got %d", 65535-(*peers+len(extra)-1), *httpBase)
	}
	dashboard := func(i int) string {
		if *httpBase == 0 || i >= *peers+len(joiners) {
			return "" // none for outsiders: they run no node to watch
		}
		return fmt.Sprintf("127.0.0.1:%d", *httpBase+i)
	}
	spec := runspec.Default()
	if *specPath != "" {
		var err error
		if spec, err = runspec.Load(*specPath); err != nil {
			return err
		}
	}
	spec.Run.Rounds = *rounds
	spec.Run.Name = "demo"
	if *private >= 0 {
		spec = provableSpec(spec, *peers)
	}
	dir := *dataDir
	if dir == "" {
		if _, err := data.Find(); err != nil {
			fmt.Fprintln(stderr, "vtrain demo: no Fashion-MNIST installed; running on the built-in synthetic dataset (apt-get install dataset-fashion-mnist for the real one)")
			dir = "synthetic"
		}
	}
	if dir == "synthetic" {
		spec.Data.Source = "synthetic"
	}
	if *out == "" {
		d, terr := os.MkdirTemp("", "vtrain-demo-")
		if terr != nil {
			return terr
		}
		*out = d
		// A demo that fails leaves nothing behind (--out keeps it).
		defer func() {
			if err != nil {
				os.RemoveAll(d)
			}
		}()
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	// Every peer of the demo is a founder: its identity, made now, is in
	// the spec (and so in the run ID). Outsiders are not.
	var founders []string
	for i := range *peers {
		_, id, err := node.LoadIdentity(filepath.Join(*out, fmt.Sprintf("peer%02d", i)))
		if err != nil {
			return err
		}
		founders = append(founders, id.String())
	}
	spec = spec.WithFounders(founders...)
	var keysDir string
	if *private > 0 {
		if keysDir, err = demoPrivacy(&spec, founders[*peers-*private:], dir, *zkKeys, stderr); err != nil {
			return err
		}
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	specFile := filepath.Join(*out, "run.toml")
	if back, err := runspec.Parse([]byte(specTOML(spec))); err != nil || back.RunID() != spec.RunID() {
		return fmt.Errorf("vtrain demo: the run spec does not survive its TOML form (%v)", err)
	}
	if err := os.WriteFile(specFile, []byte(specTOML(spec)), 0o644); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	m, _ := spec.ModelSpec()
	con := newConsole(stderr)
	prog := con.progress("round", int64(*rounds))
	defer prog.done()
	con.println(fmt.Sprintf("vtrain demo: %d peers, %d rounds, %s on %s, run %s, output in %s", *peers, *rounds, m, spec.Data.Source, spec.RunID(), *out))
	for i := 0; i < *peers+len(extra); i++ {
		if a := dashboard(i); a != "" {
			con.println(fmt.Sprintf("vtrain demo: peer %d: dashboard at http://%s/, metrics at http://%s/metrics", i, a, a))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	var mu sync.Mutex
	progress := map[int]node.RoundReport{}
	reports := map[int][]node.RoundReport{} // every peer's rounds, for the steady-state bytes
	var times []float64                     // peer 0's decision times
	var wg, byzWG sync.WaitGroup
	byzCtx, stopByz := context.WithCancel(ctx)
	defer stopByz()
	errs := make([]error, *peers+len(extra))
	var authors [][]string // peer 0's decisions: the authors of each round's aggregated updates
	joinCh := make(chan string, 1)
	launch := func(i int, extra ...string) error {
		pdir := filepath.Join(*out, fmt.Sprintf("peer%02d", i))
		args := append([]string{"node", "--out", pdir, "--json", "--linger", "3s", "--log-level", *logLvl, "--eval-every", fmt.Sprint(*evalEvery)}, extra...)
		if a := dashboard(i); a != "" {
			args = append(args, "--http", a)
		}
		if dir != "" {
			args = append(args, "--data", dir)
		}
		if keysDir != "" && !isOutsider(i) {
			args = append(args, "--zk-keys", keysDir)
		}
		cctx, g := ctx, &wg
		if b := behaviour(i); b != "" {
			b, _, _ = strings.Cut(b, "@") // the node misbehaves; the demo decides when it joins
			args = append(args, "--behave", b)
			cctx, g = byzCtx, &byzWG
		}
		cmd := exec.CommandContext(cctx, self, args...)
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		cmd.Stderr = con
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := startDemoNode(cmd); err != nil {
			return err
		}
		g.Add(1)
		go func() {
			defer g.Done()
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				line := sc.Bytes()
				var ev struct {
					Event, Addr string
				}
				if json.Unmarshal(line, &ev) == nil && ev.Event != node.EventRound {
					if ev.Event == node.EventListening && ev.Addr != "" && i == 0 {
						select {
						case joinCh <- ev.Addr:
						default:
						}
					}
					continue
				}
				var rep node.RoundReport
				if json.Unmarshal(line, &rep) == nil {
					mu.Lock()
					progress[i] = rep
					reports[i] = append(reports[i], rep)
					if i == 0 {
						times = append(times, rep.Seconds)
						for uint64(len(authors)) <= rep.Round {
							authors = append(authors, nil)
						}
						authors[rep.Round] = rep.Authors
						acc := ""
						if rep.AgreedAccuracy != nil {
							acc = fmt.Sprintf(", agreed model: test accuracy %.4f, test loss %.4f", *rep.AgreedAccuracy, *rep.AgreedLoss)
						}
						prog.note(fmt.Sprintf("round %3d: inner loss %.4f%s, %d updates, %d peers connected (%.0fs)", rep.Round, rep.Loss, acc, rep.Updates, rep.Peers, time.Since(start).Seconds()))
						prog.update(int64(rep.Round+1), "")
					}
					mu.Unlock()
				}
			}
			errs[i] = cmd.Wait()
		}()
		return nil
	}
	if err := launch(0, "--spec", specFile); err != nil {
		return err
	}
	var joinAddr string
	select {
	case joinAddr = <-joinCh:
	case <-time.After(60 * time.Second):
		return fmt.Errorf("the first node did not print a join address within 60s")
	}
	for i := 1; i < *peers+len(extra); i++ {
		if m, _ := mode(i); m.joinAt > 0 {
			continue // joins mid-run, below
		}
		if err := launch(i, "--join", joinAddr, "--run", spec.RunID().String()); err != nil {
			return err
		}
	}
	for i := *peers; i < *peers+len(extra); i++ {
		m, _ := mode(i)
		if m.joinAt <= 0 {
			continue
		}
		for {
			mu.Lock()
			r, ok := progress[0]
			mu.Unlock()
			if ok && int(r.Round)+1 >= m.joinAt || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		con.println(fmt.Sprintf("vtrain demo: peer %d (%s) joins at round %d", i, m.spec, m.joinAt))
		if err := launch(i, "--join", joinAddr, "--run", spec.RunID().String()); err != nil {
			return err
		}
	}
	wg.Wait()
	stopByz() // misbehaving peers still running (not excluded) stop with the run
	byzWG.Wait()
	for i, e := range errs {
		if e != nil && behaviour(i) == "" {
			return fmt.Errorf("peer %d: %v", i, e)
		}
	}
	res := demoResult{Peers: *peers, Rounds: uint64(*rounds), Model: m.String(), Data: spec.Data.Source, RunID: spec.RunID().String(),
		DenseBytesPerRound: 4 * m.NumParams(), Seconds: time.Since(start).Seconds(), Out: *out, Agreed: true}
	for i := 0; i < *peers+len(extra); i++ {
		if a := dashboard(i); a != "" {
			res.Dashboards = append(res.Dashboards, "http://"+a+"/")
		}
	}
	var sums []*node.Summary
	index := map[string]demoPeer{}
	all := map[int]*node.Summary{}
	var trainSec float64
	for i := 0; i < *peers+len(extra); i++ {
		pdir := filepath.Join(*out, fmt.Sprintf("peer%02d", i))
		_, id, err := node.LoadIdentity(pdir)
		if err != nil {
			return err
		}
		index[id.String()] = demoPeer{Index: i, Peer: id.String(), Behave: behaviour(i)}
		if isOutsider(i) {
			o := demoOutcome{demoPeer: index[id.String()], Outsider: true}
			var rep node.AttackReport
			if b, err := os.ReadFile(filepath.Join(pdir, "attack.json")); err == nil && json.Unmarshal(b, &rep) == nil {
				o.Sent = rep.Sent
				for _, sid := range rep.Identities {
					index[sid] = o.demoPeer
				}
			}
			res.Byzantine = append(res.Byzantine, o.demoPeer)
			res.PeerOutcomes = append(res.PeerOutcomes, o)
			continue
		}
		s, err := readSummary(filepath.Join(pdir, "summary.json"))
		if err != nil {
			if behaviour(i) != "" {
				res.Byzantine = append(res.Byzantine, index[id.String()])
				continue
			}
			return fmt.Errorf("peer %d left no summary: %w", i, err)
		}
		all[i] = s
		trainSec += s.TrainSeconds
		res.Challenges.Seconds += s.Challenges.Seconds
		if behaviour(i) != "" {
			res.Byzantine = append(res.Byzantine, index[s.Peer])
			continue
		}
		sums = append(sums, s)
		res.Ledgers = append(res.Ledgers, s.Ledger)
	}
	for _, s := range sums {
		c := s.Challenges
		res.Challenges.Run += c.Run
		res.Challenges.Passed += c.Passed
		res.Challenges.Failed += c.Failed
		res.Challenges.Against += c.Against
		res.Challenges.ProofsVerified += c.ProofsVerified
		res.Challenges.ProofsRefused += c.ProofsRefused
		res.Challenges.Proofs += c.Proofs
		res.Challenges.ProofSeconds += c.ProofSeconds
		for _, a := range c.Accused {
			if index[a].Behave == "" {
				res.FalseChallenges++
			}
		}
		for _, x := range s.Excluded {
			i := slices.IndexFunc(res.Excluded, func(e demoExclusion) bool { return e.Peer == x.Peer })
			switch {
			case i < 0:
				res.Excluded = append(res.Excluded, demoExclusion{demoPeer: index[x.Peer], Round: x.Round, Reason: x.Reason})
				if index[x.Peer].Behave == "" {
					res.HonestExcluded = append(res.HonestExcluded, x.Peer)
				}
			case len(x.Reason) > len(res.Excluded[i].Reason):
				res.Excluded[i].Reason = x.Reason
			}
		}
	}
	for i := 0; i < *peers+len(extra); i++ {
		if isOutsider(i) {
			continue
		}
		_, id, _ := node.LoadIdentity(filepath.Join(*out, fmt.Sprintf("peer%02d", i)))
		m, byz := mode(i)
		o := demoOutcome{demoPeer: index[id.String()], JoinedAt: m.joinAt}
		if s := all[i]; s != nil {
			o.Member, o.FinalHash, o.TestAccuracy = s.Member, s.FinalHash, s.TestAccuracy
			o.ProofsMade, o.ProofsVerified, o.ProofsRefused = s.Challenges.Proofs, s.Challenges.ProofsVerified, s.Challenges.ProofsRefused
		}
		o.Private = spec.IsPrivate(id.String())
		for _, x := range res.Excluded {
			if x.Peer == id.String() {
				r := x.Round
				o.ExcludedFrom = &r
			}
		}
		if byz && !m.outsider {
			from := m.from
			o.FirstCheatingRound = &from
			mu.Lock()
			for r := from; r < uint64(len(authors)) && slices.Contains(node.TrainingCheats, m.behave); r++ {
				if slices.Contains(authors[r], id.String()) {
					o.AggregatedCheatingUpdates++
				}
			}
			mu.Unlock()
			if o.ExcludedFrom != nil {
				d := *o.ExcludedFrom - min(*o.ExcludedFrom, from)
				o.RoundsToExclusion = &d
			}
		}
		res.PeerOutcomes = append(res.PeerOutcomes, o)
	}
	if res.HonestExcluded == nil {
		res.HonestExcluded = []string{}
	}
	if res.Excluded == nil {
		res.Excluded = []demoExclusion{}
	}
	if trainSec > 0 {
		res.ChallengeCompute = res.Challenges.Seconds / trainSec
	}
	res.Agreed, res.Disagreements = agreement(sums, uint64(*rounds))
	res.SecondsPerRound = medianGap(times)
	res.FinalHash = sums[0].FinalHash
	res.TestAccuracy, res.TestLoss = sums[0].TestAccuracy, sums[0].TestLoss
	mu.Lock()
	wireFigures(&res, sums, reports, uint64(*rounds))
	mu.Unlock()
	prog.done()
	if run, err := history.Load(filepath.Join(*out, "peer00")); err != nil {
		con.println(fmt.Sprintf("vtrain demo: no plot: %v", err))
	} else {
		run.Name = "demo " + spec.RunID().Short()
		res.Plot = filepath.Join(*out, "curves.png")
		if err := history.PlotFile(res.Plot, []history.Run{run}); err != nil {
			return err
		}
	}
	printDemo(stdout, res)
	if *asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
	}
	if !res.Agreed {
		return fmt.Errorf("peers disagree: %s", strings.Join(res.Disagreements, "; "))
	}
	return nil
}

// ratio prints a compression ratio, or "n/a" where it is not defined
// (nothing was sent: no "0x" or "+Infx").
func ratio(x float64) string {
	if !(x > 0) || math.IsInf(x, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.1fx", x)
}

// printDemo prints the demo's summary.
func printDemo(stdout io.Writer, res demoResult) {
	over := func(b float64) float64 {
		if b <= 0 {
			return 0
		}
		return float64(res.DenseBytesPerRound) / b
	}
	fmt.Fprintf(stdout, "\n%-28s %v\n", "peers", res.Peers)
	fmt.Fprintf(stdout, "%-28s %v\n", "rounds", res.Rounds)
	fmt.Fprintf(stdout, "%-28s %s on %s\n", "model", res.Model, res.Data)
	fmt.Fprintf(stdout, "%-28s %.4f (loss %.4f)\n", "test accuracy", res.TestAccuracy, res.TestLoss)
	fmt.Fprintf(stdout, "%-28s %.0f B per update: %s below dense fp32 (%d B)\n", "payload", res.PayloadBytes, ratio(res.CompressionRatio), res.DenseBytesPerRound)
	fmt.Fprintf(stdout, "%-28s %.0f B per peer per round, %s (updates %.0f B; the rest: %s)\n", "published", res.BytesSentPerPeerRound,
		ratio(over(res.BytesSentPerPeerRound)), res.UpdateBytesPerPeerRound, byKind(res.SentByKind))
	fmt.Fprintf(stdout, "%-28s %.0f B per peer per round, %s (%s)\n", "on the wire, whole run", res.WireBytesPerPeerRound, ratio(res.WireCompressionRatio), byKind(res.WireByCategory))
	fmt.Fprintf(stdout, "%-28s %.0f B per peer per round, %s, from round %d (%s)\n", "on the wire, steady", res.SteadyWireBytesPerPeerRound, ratio(res.SteadyWireCompressionRatio),
		res.SteadyFrom, byKind(res.SteadyWireByCategory))
	fmt.Fprintf(stdout, "%-28s %.2f per message delivered\n", "gossip duplicates", res.DuplicatesPerDelivered)
	fmt.Fprintf(stdout, "%-28s %v\n", "all peers agreed", res.Agreed)
	fmt.Fprintf(stdout, "%-28s %s\n", "final state hash", res.FinalHash)
	fmt.Fprintf(stdout, "%-28s %.1fs (%.2fs per round)\n", "time", res.Seconds, res.SecondsPerRound)
	fmt.Fprintf(stdout, "%-28s %d run, %d passed, %d failed (%d against honest peers); re-execution %.1f%% of training time\n", "spot-checks",
		res.Challenges.Run, res.Challenges.Passed, res.Challenges.Failed, res.FalseChallenges, 100*res.ChallengeCompute)
	if c := res.Challenges; c.Proofs > 0 || c.ProofsVerified > 0 {
		fmt.Fprintf(stdout, "%-28s %d made (%.1fs each), %d verified and %d refused by the honest peers together\n", "private peers' proofs",
			c.Proofs, c.ProofSeconds/float64(max(c.Proofs, 1)), c.ProofsVerified, c.ProofsRefused)
	}
	for _, x := range res.Excluded {
		fmt.Fprintf(stdout, "%-28s peer %d (%s) from round %d: %s\n", "excluded", x.Index, x.Behave, x.Round, x.Reason)
	}
	for _, o := range res.PeerOutcomes {
		if o.Outsider {
			fmt.Fprintf(stdout, "%-28s peer %d (%s) sent %d messages; no effect on the run's state\n", "outsider", o.Index, o.Behave, o.Sent)
		}
	}
	if res.Plot != "" {
		fmt.Fprintf(stdout, "%-28s %s (vtrain plot %s)\n", "plot", res.Plot, res.Out)
	}
}

// medianGap is the median time between consecutive decisions: the
// typical round, which one stalled round (a join racing a round) does not
// distort.
func medianGap(ts []float64) float64 {
	if len(ts) < 2 {
		return 0
	}
	gaps := make([]float64, len(ts)-1)
	for i := range gaps {
		gaps[i] = ts[i+1] - ts[i]
	}
	slices.Sort(gaps)
	return gaps[len(gaps)/2]
}

// agreement checks that every peer that saw a round's decision saw the same
// one, that every peer reached the last round, and that all end on one
// state.
func agreement(sums []*node.Summary, rounds uint64) (bool, []string) {
	var bad []string
	for i, s := range sums {
		if s.Rounds < rounds {
			bad = append(bad, fmt.Sprintf("peer %d stopped at round %d", i, s.Rounds))
		}
		if s.FinalHash != sums[0].FinalHash {
			bad = append(bad, fmt.Sprintf("peer %d ends on %s, peer 0 on %s", i, s.FinalHash[:8], sums[0].FinalHash[:8]))
		}
	}
	for r := uint64(0); r < rounds; r++ {
		ref := ""
		for i, s := range sums {
			if int(r) >= len(s.Hashes) || s.Hashes[r] == "" {
				continue
			}
			if ref == "" {
				ref = s.Hashes[r]
			} else if s.Hashes[r] != ref {
				bad = append(bad, fmt.Sprintf("round %d: peer %d decided %s, another %s", r, i, s.Hashes[r][:8], ref[:8]))
			}
		}
	}
	return len(bad) == 0, bad
}

// specTOML writes a spec as TOML that runspec.Parse reads back to the same
// canonical spec.
// memberModes are the misbehaviours a member of the demo can have.
func memberModes() []string {
	var out []string
	for _, b := range node.Behaviours[1:] {
		if !slices.Contains(node.Outsiders, b) {
			out = append(out, b)
		}
	}
	return out
}

func specTOML(s runspec.Spec) string {
	ints := func(v []int) string {
		p := make([]string, len(v))
		for i, x := range v {
			p[i] = fmt.Sprint(x)
		}
		return "[" + strings.Join(p, ", ") + "]"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version = %d\n\n[run]\nname = %q\nseed = %d\nrounds = %d\n\n", s.Version, s.Run.Name, s.Run.Seed, s.Run.Rounds)
	fmt.Fprintf(&b, "[model]\nkind = %q\n", s.Model.Kind)
	if len(s.Model.Hidden) > 0 {
		fmt.Fprintf(&b, "hidden = %s\n", ints(s.Model.Hidden))
	}
	if len(s.Model.Channels) > 0 {
		fmt.Fprintf(&b, "channels = %s\n", ints(s.Model.Channels))
	}
	fmt.Fprintf(&b, "\n[data]\nsource = %q\nshards = %d\n\n", s.Data.Source, s.Data.Shards)
	fmt.Fprintf(&b, "[inner]\noptimizer = %q\nlr = %v\nsteps = %d\nbatch = %d\nweight_decay = %v\nmomentum = %v\n\n", s.Inner.Optimizer, s.Inner.LR, s.Inner.Steps, s.Inner.Batch, s.Inner.WeightDecay, s.Inner.Momentum)
	fmt.Fprintf(&b, "[outer]\noptimizer = %q\nlr = %v\nmomentum = %v\n\n", s.Outer.Optimizer, s.Outer.LR, s.Outer.Momentum)
	fmt.Fprintf(&b, "[compression]\nfraction = %v\nbits = %d\nchunk = %d\n\n", s.Compression.Fraction, s.Compression.Bits, s.Compression.Chunk)
	fmt.Fprintf(&b, "[aggregation]\nrule = %q\ntrim = %v\n\n", s.Aggregation.Rule, s.Aggregation.Trim)
	fmt.Fprintf(&b, "[rounds]\ntimeout = %q\ncommit_timeout = %q\nquorum = %d\nmax_message = %d\nmax_update_norm = %v\n", s.Rounds.Timeout, s.Rounds.CommitTimeout, s.Rounds.Quorum, s.Rounds.MaxMessage, s.Rounds.MaxUpdateNorm)
	v := s.Verify
	fmt.Fprintf(&b, "\n[verify]\nrate = %v\nnewcomer_rate = %v\nprobation = %d\nsegment = %d\nchallengers = %d\ntimeout = %q\ntolerance = %v\n", v.Rate, v.NewcomerRate, v.Probation, v.Segment, v.Challengers, v.Timeout, v.Tolerance)
	mb := s.Members
	q := make([]string, len(mb.Genesis))
	for i, p := range mb.Genesis {
		q[i] = fmt.Sprintf("%q", p)
	}
	fmt.Fprintf(&b, "\n[members]\ngenesis = [%s]\nvoters = %d\nadmit = %d\nabsent = %d\nmax = %d\n", strings.Join(q, ", "), mb.Voters, mb.Admit, mb.Absent, mb.Max)
	if pv := s.Privacy; pv.Mode != "" && pv.Mode != "none" {
		fmt.Fprintf(&b, "\n[privacy]\nmode = %q\ndepth = %d\nvk_sha256 = %q\n", pv.Mode, pv.Depth, pv.VKSHA256)
		if pv.ProofTimeout.Duration != 0 {
			fmt.Fprintf(&b, "proof_timeout = %q\n", pv.ProofTimeout)
		}
		if pv.Wait != nil {
			fmt.Fprintf(&b, "wait = %v\n", *pv.Wait)
		}
		for _, p := range pv.Peers {
			fmt.Fprintf(&b, "\n[[privacy.peers]]\npeer = %q\ndata_root = %q\ndata_size = %d\n", p.Peer, p.DataRoot, p.DataSize)
		}
	}
	return b.String()
}

// byKind lists bytes per kind of message other than updates, largest first.
func byKind(m map[string]float64) string {
	var ks []string
	for k := range m {
		if k != "update" && m[k] >= 0.5 {
			ks = append(ks, k)
		}
	}
	slices.SortFunc(ks, func(a, b string) int { return cmp.Compare(m[b], m[a]) })
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s %.0f B", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// wireFigures fills res's byte figures from the nodes' summaries (whole
// run) and their per-round reports (the steady state: from the round the
// last peer reported first, to each peer's last report).
func wireFigures(res *demoResult, sums []*node.Summary, reports map[int][]node.RoundReport, rounds uint64) {
	dense := float64(res.DenseBytesPerRound)
	ratio := func(b float64) float64 {
		if b <= 0 {
			return 0
		}
		return dense / b
	}
	var pub, wire, payload, updates, dlv, dup float64
	res.SentByKind, res.WireByCategory, res.SteadyWireByCategory = map[string]float64{}, map[string]float64{}, map[string]float64{}
	per := float64(rounds) * float64(len(sums))
	for _, s := range sums {
		pub += float64(s.Stats.Published) / per
		wire += float64(s.Stats.WireOut) / per
		payload += float64(s.PayloadBytes)
		updates += float64(s.UpdatesSent)
		dlv += float64(s.Stats.Traffic.Delivered)
		dup += float64(s.Stats.Traffic.Duplicates)
		for k, b := range s.Stats.PublishedBy {
			res.SentByKind[k] += float64(b) / per
		}
		for k, b := range s.Stats.Traffic.Out {
			res.WireByCategory[k] += float64(b) / per
		}
	}
	res.BytesSentPerPeerRound, res.WireBytesPerPeerRound = pub, wire
	res.UpdateBytesPerPeerRound = res.SentByKind["update"]
	res.UpdateCompressionRatio = ratio(res.UpdateBytesPerPeerRound)
	res.WireCompressionRatio = ratio(wire)
	if updates > 0 {
		res.PayloadBytes = payload / updates
		res.CompressionRatio = ratio(res.PayloadBytes)
	}
	if dlv > 0 {
		res.DuplicatesPerDelivered = dup / dlv
	}
	for _, reps := range reports {
		if len(reps) > 0 {
			res.SteadyFrom = max(res.SteadyFrom, reps[0].Round)
		}
	}
	var bytes, peerRounds float64
	for _, reps := range reports {
		var from *node.RoundReport
		for j := range reps {
			if reps[j].Round <= res.SteadyFrom {
				from = &reps[j]
			}
		}
		to := reps[len(reps)-1]
		if from == nil || to.Round <= from.Round {
			continue
		}
		bytes += float64(to.WireOut - from.WireOut)
		peerRounds += float64(to.Round - from.Round)
		for k, b := range to.Traffic.Sub(from.Traffic).Out {
			res.SteadyWireByCategory[k] += float64(b)
		}
	}
	if peerRounds > 0 {
		res.SteadyWireBytesPerPeerRound = bytes / peerRounds
		res.SteadyWireCompressionRatio = ratio(res.SteadyWireBytesPerPeerRound)
		for k := range res.SteadyWireByCategory {
			res.SteadyWireByCategory[k] /= peerRounds
		}
	}
}
