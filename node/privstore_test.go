package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/gossip"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/runspec"
	"github.com/vtrain/vtrain/verify/zk"
)

func testRecord(round uint64, id byte, d int) privateRecord {
	theta := make([]float32, d)
	for i := range theta {
		theta[i] = float32(i%11-5) * 1e-3
	}
	return privateRecord{round: round, update: consensus.Hash{id, 7}, base: consensus.Hash{9, id}, seed: 1<<40 + uint64(id), steps: 20, theta: theta}
}

// TestPrivateRecordRoundTrip: a record reads back as written, and only
// for its run, its update and a state and round of the run's shape.
func TestPrivateRecordRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), privateDir)
	rec := testRecord(3, 1, 7850)
	if err := savePrivate(dir, "run-a", rec); err != nil {
		t.Fatal(err)
	}
	got, err := loadPrivate(dir, "run-a", rec.update, 7850, 20)
	if err != nil {
		t.Fatal(err)
	}
	if got.round != rec.round || got.update != rec.update || got.base != rec.base || got.seed != rec.seed || got.steps != rec.steps || !slices.Equal(got.theta, rec.theta) {
		t.Fatalf("read back %+v, wrote %+v", *got, rec)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files after one write (a temp file left?)", len(ents))
	}
	for name, tc := range map[string]struct {
		run    string
		id     consensus.Hash
		params int
		steps  int
		want   error
		says   string
	}{
		"another run":        {"run-b", rec.update, 7850, 20, errPrivateRecord, "of run"},
		"another model":      {"run-a", rec.update, 7840, 20, errPrivateRecord, "no state of 7840"},
		"another step count": {"run-a", rec.update, 7850, 40, errPrivateRecord, "the run takes 40"},
		"not kept":           {"run-a", consensus.Hash{2}, 7850, 20, os.ErrNotExist, "no record"},
	} {
		if _, err := loadPrivate(dir, tc.run, tc.id, tc.params, tc.steps); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %v saying %q", name, err, tc.want, tc.says)
		}
	}
}

// TestPrivateRecordDamaged: a record with a flipped byte in its state or
// its header, or cut short, or renamed to another round, is refused with
// an error that names the file and wraps errPrivateRecord; none panics.
func TestPrivateRecordDamaged(t *testing.T) {
	rec := testRecord(5, 1, 7850)
	for name, damage := range map[string]func(p string, b []byte) (string, []byte){
		"flipped state byte": func(p string, b []byte) (string, []byte) { b[len(b)-100] ^= 0x40; return p, b },
		"flipped header":     func(p string, b []byte) (string, []byte) { b[20] ^= 0xff; return p, b },
		"truncated":          func(p string, b []byte) (string, []byte) { return p, b[:len(b)/2] },
		"header only":        func(p string, b []byte) (string, []byte) { return p, b[:8] },
		"empty":              func(p string, b []byte) (string, []byte) { return p, nil },
		"renamed": func(p string, b []byte) (string, []byte) {
			return filepath.Join(filepath.Dir(p), strings.Replace(filepath.Base(p), "5-", "6-", 1)), b
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := savePrivate(dir, "run-a", rec); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, privateFile(rec.round, rec.update))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			np, nb := damage(p, b)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(np, nb, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = loadPrivate(dir, "run-a", rec.update, 7850, 20)
			if !errors.Is(err, errPrivateRecord) || !strings.Contains(err.Error(), np) {
				t.Fatalf("%v, want an error wrapping %v that names %s", err, errPrivateRecord, np)
			}
			t.Log(err)
		})
	}
}

// TestPrivateRecordPruned: the records kept are those of the last
// keptEvidence rounds, as the rounds held in memory; temp files a crash
// left go too, and other files stay.
func TestPrivateRecordPruned(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, privateFile(1, consensus.Hash{1})+".tmp"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	const last = 9
	for r := range uint64(last + 1) {
		if err := savePrivate(dir, "run-a", testRecord(r, byte(r), 10)); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{"notes.txt"}
	for r := uint64(last - keptEvidence + 1); r <= last; r++ {
		want = append(want, privateFile(r, testRecord(r, byte(r), 10).update))
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("kept %v, want %v", names, want)
	}
	for r := uint64(last - keptEvidence + 1); r <= last; r++ {
		if _, err := loadPrivate(dir, "run-a", testRecord(r, byte(r), 10).update, 10, 20); err != nil {
			t.Errorf("round %d: %v", r, err)
		}
	}
}

// privateNode is a private peer's node as far as rebuilding its rounds
// goes (no engine, no network): a logistic regression run on synthetic
// data whose fixed-point rounds the zk trainer runs.
func privateNode(t testing.TB, steps int) *node {
	t.Helper()
	spec := runspec.Default()
	spec.Model = runspec.Model{Kind: "logreg"}
	spec.Data.Source = "synthetic"
	spec.Inner.Optimizer, spec.Inner.Momentum, spec.Inner.WeightDecay = "sgd", 0, 0
	spec.Inner.Steps, spec.Inner.Batch = steps, 4
	spec = spec.WithFounders("12D3KooWself")
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	p := zk.Params{Features: 784, Classes: 10, Batch: spec.Inner.Batch, Depth: 9, LR: zk.LRFixed(spec.Inner.LR)}
	return &node{spec: spec, self: "12D3KooWself", cfg: Config{Data: data.Synthetic(1, 256, 1), OutDir: t.TempDir(), ZK: &zk.Keys{Params: p}},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), priv: &private{rounds: map[consensus.Hash]*provenRound{}, proving: make(chan struct{}, 1)}}
}

// privateProver returns an agreed state of n's logreg model and a prover
// of n's shard starting from it.
func privateProver(t testing.TB, n *node) ([]float32, *zk.Prover) {
	t.Helper()
	shard, err := privateShard(n.spec, n.self, n.cfg.Data.Train)
	if err != nil {
		t.Fatal(err)
	}
	theta := make([]float32, 7850)
	for i := range theta {
		theta[i] = float32(i%13-6) * 1e-3
	}
	th, _ := zk.ThetaFromFloat(theta)
	pr, err := zk.NewProver(n.cfg.ZK, th, n.cfg.Data.Train, shard, 0)
	if err != nil {
		t.Fatal(err)
	}
	return theta, pr
}

// TestPrivateRebuild: a round rebuilt from its record is the update the
// node sent, and a record that does not give that update (another seed,
// another state, another base) is refused: the node proves nothing else.
func TestPrivateRebuild(t *testing.T) {
	n := privateNode(t, 12)
	theta, pr := privateProver(t, n)
	const round, seed = 3, 77
	base := consensus.Hash{5}
	w, err := n.runPrivate(pr, round, theta, seed, n.spec.Inner.Steps)
	if err != nil {
		t.Fatal(err)
	}
	id := n.privateUpdate(round, base, seed, w).ID(n.spec.RunID())
	rec := privateRecord{round: round, update: id, base: base, seed: seed, steps: n.spec.Inner.Steps, theta: theta}
	dir := filepath.Join(n.cfg.OutDir, privateDir)
	if err := savePrivate(dir, n.spec.RunID().String(), rec); err != nil {
		t.Fatal(err)
	}
	got, err := loadPrivate(dir, n.spec.RunID().String(), id, 7850, n.spec.Inner.Steps)
	if err != nil {
		t.Fatal(err)
	}
	p := &provenRound{round: round, rec: got, steps: map[int]*proving{}}
	if err := n.rebuildPrivate(p, id); err != nil {
		t.Fatal(err)
	}
	if p.proven == nil || p.proven.Steps() != n.spec.Inner.Steps || p.proven.Loss() != w.proven.Loss() {
		t.Fatalf("rebuilt %+v, trained loss %v", p.proven, w.proven.Loss())
	}
	other := slices.Clone(theta)
	other[100] += 0.01
	for name, bad := range map[string]privateRecord{
		"another seed":  {round: round, update: id, base: base, seed: seed + 1, steps: rec.steps, theta: theta},
		"another state": {round: round, update: id, base: base, seed: seed, steps: rec.steps, theta: other},
		"another base":  {round: round, update: id, base: consensus.Hash{6}, seed: seed, steps: rec.steps, theta: theta},
		"another round": {round: round + 1, update: id, base: base, seed: seed, steps: rec.steps, theta: theta},
	} {
		p := &provenRound{round: bad.round, rec: &bad, steps: map[int]*proving{}}
		if err := n.rebuildPrivate(p, id); !errors.Is(err, errPrivateRecord) || !strings.Contains(err.Error(), "proves only the update it sent") || p.proven != nil {
			t.Errorf("%s: %v (proven %v)", name, err, p.proven != nil)
		}
	}
}

// TestStartingNodeSaysNotYet: a node that has not loaded the state it
// starts from (its checkpoint, after a restart) does not know yet what
// it answers for: it tells a challenger to come again rather than refuse
// (a refusal is a silent peer's verdict), and costs nothing.
func TestStartingNodeSaysNotYet(t *testing.T) {
	n, id, _ := evidenceNode(t)
	n.started = false
	if _, err := n.Evidence(0, id, []int{0}); !errors.Is(err, gossip.ErrNotYet) {
		t.Errorf("evidence: %v, want %v", err, gossip.ErrNotYet)
	}
	if _, err := n.Answer(0, id, 0); !errors.Is(err, gossip.ErrNotYet) {
		t.Errorf("answer: %v, want %v", err, gossip.ErrNotYet)
	}
}

// BenchmarkPrivateRebuild: what a restarted private peer spends
// rebuilding a round of the default 400 steps before it proves a step of
// it (the steps and the 401 commitments, and the check against the
// update it sent), its data tree already built.
func BenchmarkPrivateRebuild(b *testing.B) {
	n := privateNode(b, 400)
	theta := make([]float32, 7850)
	for i := range theta {
		theta[i] = float32(i%13-6) * 1e-3
	}
	rec := privateRecord{round: 3, base: consensus.Hash{5}, seed: 77, steps: 400, theta: theta}
	p := &provenRound{round: 3, rec: &rec}
	if err := n.rebuildPrivate(p, rec.update); !errors.Is(err, errPrivateRecord) {
		b.Fatal(err) // no update sent: this one builds the data tree, and gives the update's ID
	}
	w, err := n.runPrivate(n.priv.replay, rec.round, theta, rec.seed, rec.steps)
	if err != nil {
		b.Fatal(err)
	}
	rec.update = n.privateUpdate(rec.round, rec.base, rec.seed, w).ID(n.spec.RunID())
	b.ReportAllocs()
	for b.Loop() {
		p.proven = nil
		if err := n.rebuildPrivate(p, rec.update); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTrainPrivateOneAtATime: a node starts training a new round while
// the one under way is cancelled and still running (startTraining), and
// both use the private peer's one prover. Each round's update must still
// be the one it would be alone; sharing the prover crashed a demo's
// private peer (an index out of range in Prover.Round) and, under the
// race detector, is a data race.
func TestTrainPrivateOneAtATime(t *testing.T) {
	n := privateNode(t, 40)
	var theta []float32
	theta, n.priv.prover = privateProver(t, n)
	reqs := make([]*consensus.TrainRequest, 6)
	want := make([][]byte, len(reqs))
	for i := range reqs {
		reqs[i] = &consensus.TrainRequest{Round: uint64(i + 1), Theta: theta, Seed: uint64(100 + i)}
		r := n.trainPrivate(context.Background(), reqs[i])
		if r.err != nil {
			t.Fatal(r.err)
		}
		want[i] = r.private.delta.Encode()
	}
	got := make([]trainResult, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = n.trainPrivate(context.Background(), req)
		}()
	}
	wg.Wait()
	for i, r := range got {
		if r.err != nil {
			t.Fatalf("round %d: %v", i+1, r.err)
		}
		if !bytes.Equal(r.private.delta.Encode(), want[i]) {
			t.Errorf("round %d trained beside the others is not the round trained alone", i+1)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := n.trainPrivate(ctx, reqs[0]); !errors.Is(r.err, context.Canceled) {
		t.Errorf("a cancelled round: %v", r.err)
	}
}

// TestPrivateRecordOutDirWithPatternChars: --out is a directory name, not
// a pattern: a record kept under a directory whose name holds a glob's
// special characters reads back (it was looked up with filepath.Glob, so a
// private peer restarted with --out "run[1]" found none of its rounds and
// was excluded as silent).
func TestPrivateRecordOutDirWithPatternChars(t *testing.T) {
	for _, name := range []string{"run[1]", "run[", "a*b?"} {
		dir := filepath.Join(t.TempDir(), name, privateDir)
		rec := testRecord(3, 1, 50)
		if err := savePrivate(dir, "run-a", rec); err != nil {
			t.Fatal(err)
		}
		if _, err := loadPrivate(dir, "run-a", rec.update, 50, 20); err != nil {
			t.Errorf("--out %q: %v", name, err)
		}
	}
}
