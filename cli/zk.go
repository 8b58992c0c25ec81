package cli

import (
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/consensys/gnark/constraint"
	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/zk"
)

// zkParamFlags are the flags that fix a circuit.
type zkParamFlags struct {
	features, classes, batch, depth *int
	lr                              *float64
}

func addZKParamFlags(fs *flag.FlagSet) zkParamFlags {
	d := zk.FashionParams(4)
	return zkParamFlags{
		features: fs.Int("features", d.Features, "inputs per sample"),
		classes:  fs.Int("classes", d.Classes, "classes"),
		batch:    fs.Int("batch", d.Batch, "samples per proven step"),
		depth:    fs.Int("depth", d.Depth, "depth of the data tree (up to 2^depth samples per peer)"),
		lr:       fs.Float64("lr", d.LRFloat(), "SGD learning rate (rounded to a multiple of 2^-16)"),
	}
}

func (z zkParamFlags) params() (zk.Params, error) {
	p := zk.Params{Features: *z.features, Classes: *z.classes, Batch: *z.batch, Depth: *z.depth, LR: zk.LRFixed(*z.lr)}
	if err := p.Validate(); err != nil {
		return p, usageError{err.Error()}
	}
	return p, nil
}

// trainZK is vtrain train --privacy zk: softmax regression trained with
// exactly the fixed-point steps that the zk circuit proves.
func trainZK(spec models.Spec, set *data.Set, batch int, lr float64, seed uint64, total int64, every int64, asJSON bool, stdout, stderr io.Writer) error {
	p := zk.Params{Features: set.Train.Features(), Classes: set.Train.Classes, Batch: batch, Depth: 16, LR: zk.LRFixed(lr)}
	if err := p.Validate(); err != nil {
		return usageError{err.Error()}
	}
	theta, err := zk.ThetaFromFloat(models.Init(spec, seed))
	if err != nil {
		return err
	}
	shard, err := data.Shard(set.Train.Len(), 1, 0, seed)
	if err != nil {
		return err
	}
	tr, err := zk.NewTrainer(p, theta, set.Train, shard, seed)
	if err != nil {
		return err
	}
	spe := tr.StepsPerEpoch()
	if total == 0 {
		total = spe
	}
	if every == 0 {
		every = spe
	}
	if !asJSON {
		fmt.Fprintf(stdout, "model %s (%d parameters) on %s, sgd (fixed point, lr %g)\n", spec, spec.NumParams(), set.Source, p.LRFloat())
	}
	prog := newConsole(stderr).progress("step", total)
	start := time.Now()
	for i := int64(0); i < total; i++ {
		if err := tr.Step(); err != nil {
			prog.done()
			return err
		}
		prog.update(i+1, "")
		if (i+1)%every == 0 && i+1 < total {
			prog.note(fmt.Sprintf("step %d (epoch %.2f): test accuracy %.4f", i+1, float64(i+1)/float64(spe), p.Accuracy(tr.Theta(), set.Test)))
		}
	}
	secs := time.Since(start).Seconds()
	prog.done()
	acc := p.Accuracy(tr.Theta(), set.Test)
	flat := tr.Theta().Float(nil)
	h := trainer.ParamHash(flat)
	res := trainResult{
		Model: spec.String(), Params: spec.NumParams(), Data: set.Source, BLAS: "none (fixed point)",
		Optimizer: fmt.Sprintf("sgd (fixed point, lr %g)", p.LRFloat()), Batch: batch,
		Epochs: float64(total) / float64(spe), Steps: total, Samples: total * int64(batch),
		Seconds: secs, TestAccuracy: acc, ParamSHA256: hex.EncodeToString(h[:]),
	}
	if asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	fmt.Fprintf(stdout, "%d steps (%.2f epochs, %d samples) in %.1fs\n", res.Steps, res.Epochs, res.Samples, res.Seconds)
	fmt.Fprintf(stdout, "test accuracy %.4f (fixed point)\n", res.TestAccuracy)
	fmt.Fprintf(stdout, "parameters sha256 %s\n", res.ParamSHA256)
	return nil
}

func runKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keygen", "keygen --out DIR [flags]", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: vtrain keygen --out DIR [flags]

Runs the Groth16 setup of the zk step circuit, as part of a private run's
genesis, and prints the verifying key's SHA-256 for the run spec's
[privacy] vk_sha256.

Trust: this is a single-party setup. Whoever runs it draws the toxic waste
and, had they kept it, could forge proofs of false training steps for this
circuit. They can never learn a prover's data (Groth16 proofs are zero
knowledge whatever the setup). A run that cannot trust its creator with
this runs a multi-party ceremony instead: see 'vtrain ceremony --help'.

Flags:
`)
		fs.PrintDefaults()
	}
	zf := addZKParamFlags(fs)
	out := fs.String("out", "", "write params.json, step.vk, step.pk and "+zk.CircuitFile+" (the constraint system the keys are for) into this directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := zf.params()
	if err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	fmt.Fprintf(stderr, "vtrain: Groth16 setup for softmax regression %d×%d, batch %d, data depth %d (a single-party setup: see 'vtrain keygen --help' for what that means, and 'vtrain ceremony' for a multi-party one)\n",
		p.Features, p.Classes, p.Batch, p.Depth)
	start := time.Now()
	con := newConsole(stderr)
	var ccs constraint.ConstraintSystem
	if err := con.phase("compiling the circuit", 0, func() (err error) { ccs, err = zk.Compile(p); return err }); err != nil {
		return err
	}
	var keys *zk.Keys
	est := time.Duration(ccs.GetNbConstraints()) * setupPerConstraint
	if err := con.phase(fmt.Sprintf("Groth16 setup of %d constraints", ccs.GetNbConstraints()), est, func() (err error) { keys, err = zk.SetupCompiled(p, ccs); return err }); err != nil {
		return err
	}
	if err := con.phase("writing the keys", 0, func() error { return keys.Save(*out) }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "keys in %s (%d constraints, %.1fs)\nverifying key sha256 %s\n",
		*out, keys.CCS.GetNbConstraints(), time.Since(start).Seconds(), zk.VKHash(keys.VK))
	return nil
}

// What a Groth16 setup and a proof on BN254 cost per constraint on the
// 2-core development machine (gnark v0.14; /work/shared/ENVIRONMENT.md,
// benchmarks/README.md): the estimates behind keygen's and prove's ETA,
// shown as approximate.
const (
	setupPerConstraint = 150 * time.Microsecond
	provePerConstraint = 14 * time.Microsecond
)

// readTheta reads a logreg parameter file written by vtrain export (PyTorch
// names and shapes) as fixed point.
func readTheta(path string, spec models.Spec) (zk.Theta, error) {
	f, err := safetensors.ReadFile(path, 64<<20)
	if err != nil {
		return nil, err
	}
	flat, err := trainer.FromTorchTensors(spec, f, "")
	if err != nil {
		return nil, err
	}
	return zk.ThetaFromFloat(flat)
}

func writeTheta(path string, spec models.Spec, t zk.Theta) error {
	flat := t.Float(nil)
	back, err := zk.ThetaFromFloat(flat)
	if err != nil {
		return err
	}
	for i := range back {
		if back[i] != t[i] {
			return fmt.Errorf("parameter %d does not round-trip through float32; not writing %s", i, path)
		}
	}
	return os.WriteFile(path, safetensors.Encode(trainer.TorchTensors(spec, flat, ""), map[string]string{"format": "pt"}), 0o644)
}

func runProve(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("prove", "prove --keys DIR --batch-seed S [--step K] --run HEX --round R --peer ID --out FILE [flags]", stderr)
	keysDir := fs.String("keys", "", "keys directory from vtrain keygen")
	dataDir := fs.String("data", "", "the peer's data (Fashion-MNIST directory or 'synthetic'; default: the installed dataset)")
	shards := fs.Int("shards", 1, "the peer's data is shard --shard of this many of the training set")
	shardI := fs.Int("shard", 0, "which shard")
	seed := fs.Uint64("seed", 1, "seed of the sharding, and of θ when --theta is not given")
	thetaPath := fs.String("theta", "", "θ as a safetensors file with PyTorch names (vtrain export of a logreg model); default: the initial θ for --seed")
	batchSeed := fs.String("batch-seed", "", "the round's batch seed (in a run: the update's seed, from run, round and peer); the run's sampler draws the batch from it")
	step := fs.Uint64("step", 0, "the inner step within the round: the batch is the sampler's batch STEP")
	runHex := fs.String("run", "", "run ID (64 hex digits)")
	round := fs.Uint64("round", 0, "round")
	peer := fs.String("peer", "", "peer ID")
	out := fs.String("out", "", "write the proof bundle (JSON) here")
	thetaOut := fs.String("theta-out", "", "also write θ' here (safetensors)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *keysDir == "" || *out == "" || *batchSeed == "" || *peer == "" {
		return usagef("--keys, --batch-seed, --peer and --out are required")
	}
	bseed, err := strconv.ParseUint(*batchSeed, 0, 64)
	if err != nil {
		return usagef("--batch-seed %q is not a 64-bit unsigned integer", *batchSeed)
	}
	var ctx zk.Context
	run, err := hex.DecodeString(*runHex)
	if err != nil || len(run) != 32 {
		return usagef("--run must be 64 hex digits")
	}
	copy(ctx.Run[:], run)
	ctx.Round, ctx.Peer = *round, *peer
	con := newConsole(stderr)
	var keys *zk.Keys
	if err := con.phase("loading the proving key and compiling the circuit", 0, func() (err error) { keys, err = zk.LoadProver(*keysDir, ""); return err }); err != nil {
		return err
	}
	p := keys.Params
	set, _, err := data.Load(*dataDir, *seed)
	if err != nil {
		return err
	}
	shard, err := data.Shard(set.Train.Len(), *shards, *shardI, *seed)
	if err != nil {
		return usageError{err.Error()}
	}
	spec, err := models.NewSpec(models.LogReg, nil)
	if err != nil {
		return err
	}
	var theta zk.Theta
	if *thetaPath != "" {
		if theta, err = readTheta(*thetaPath, spec); err != nil {
			return err
		}
	} else if theta, err = zk.ThetaFromFloat(models.Init(spec, *seed)); err != nil {
		return err
	}
	if len(theta) != p.NumParams() {
		return fmt.Errorf("θ has %d parameters; the circuit needs %d", len(theta), p.NumParams())
	}
	pd, err := zk.NewPeerData(p, set.Train, shard)
	if err != nil {
		return err
	}
	draw := zk.Draw{Seed: bseed, Step: *step, Size: pd.Size()}
	idx, err := pd.Drawn(draw.Seed, draw.Step)
	if err != nil {
		return usagef("%v", err)
	}
	w, err := pd.Witness(theta, idx)
	if err != nil {
		return err
	}
	next, err := p.Step(theta, w.Batch)
	if err != nil {
		return err
	}
	st := zk.Statement{ThetaIn: p.CommitTheta(theta), ThetaOut: p.CommitTheta(next), DataRoot: pd.Root(), Draw: draw, Context: ctx}
	start := time.Now()
	var proof []byte
	est := time.Duration(keys.CCS.GetNbConstraints()) * provePerConstraint
	if err := con.phase(fmt.Sprintf("proving (%d constraints)", keys.CCS.GetNbConstraints()), est, func() (err error) { proof, err = keys.Prove(st, w); return err }); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(zk.NewBundle(p, st, proof), "", "  ")
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if *thetaOut != "" {
		if err := writeTheta(*thetaOut, spec, next); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "proof of one SGD step in %s (%d bytes, %.1fs)\nbatch     step %d of seed %d over %d samples: training-set indices %v\ntheta_in  %s\ntheta_out %s\ndata_root %s\n",
		*out, len(proof), time.Since(start).Seconds(), draw.Step, draw.Seed, draw.Size, idx, zk.Hex(st.ThetaIn), zk.Hex(st.ThetaOut), zk.Hex(st.DataRoot))
	return nil
}

// errRejected marks a proof that does not verify (exit 1, not a usage error).
var errRejected = errors.New("proof rejected")

func runVerifyProof(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify-proof", "verify-proof --keys DIR [flags] PROOF.json", stderr)
	keysDir := fs.String("keys", "", "keys directory (params.json and step.vk suffice)")
	vkHash := fs.String("vk-hash", "", "require the verifying key to have this SHA-256 (the run's pinned hash)")
	thetaIn := fs.String("theta-in", "", "also require theta_in to commit to this θ (safetensors)")
	thetaOut := fs.String("theta-out", "", "also require theta_out to commit to this θ' (safetensors)")
	dataRoot := fs.String("data-root", "", "also require this data root (hex)")
	batchSeed := fs.String("batch-seed", "", "also require the batch to be drawn with this seed (the round's, for this peer)")
	step := fs.Int64("step", -1, "also require the batch to be the sampler's batch of this step")
	dataSize := fs.Int64("data-size", -1, "also require the data tree to hold this many samples (published with its root)")
	asJSON := fs.Bool("json", false, "print the verdict as one JSON object")
	pos, err := parsePositional(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *keysDir == "" {
		return usagef("usage: vtrain verify-proof --keys DIR [flags] PROOF.json")
	}
	keys, err := zk.LoadVerifier(*keysDir, *vkHash)
	if err != nil {
		return err
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	b, err := zk.ReadBundle(f)
	f.Close()
	if err != nil {
		return err
	}
	verdict := func(err error) error {
		if *asJSON {
			v := map[string]any{"ok": err == nil, "proof": pos[0], "run": b.Run, "round": b.Round, "peer": b.Peer, "theta_out": b.ThetaOut}
			if err != nil {
				v["reason"] = err.Error()
			}
			j, _ := json.Marshal(v)
			fmt.Fprintln(stdout, string(j))
		} else if err == nil {
			fmt.Fprintf(stdout, "ok: %s proves one SGD step %s → %s for run %s round %d peer %s\n",
				pos[0], b.ThetaIn[:16], b.ThetaOut[:16], b.Run[:16], b.Round, b.Peer)
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %v", errRejected, pos[0], err)
		}
		return nil
	}
	if b.Params != keys.Params {
		return verdict(fmt.Errorf("proof is for circuit %+v, the keys are for %+v", b.Params, keys.Params))
	}
	st, err := b.Statement()
	if err != nil {
		return verdict(err)
	}
	spec, _ := models.NewSpec(models.LogReg, nil)
	for _, c := range []struct {
		path, name string
		want       string
	}{{*thetaIn, "theta_in", b.ThetaIn}, {*thetaOut, "theta_out", b.ThetaOut}} {
		if c.path == "" {
			continue
		}
		t, err := readTheta(c.path, spec)
		if err != nil {
			return err
		}
		if len(t) != keys.Params.NumParams() || zk.Hex(keys.Params.CommitTheta(t)) != c.want {
			return verdict(fmt.Errorf("%s does not commit to %s", c.name, c.path))
		}
	}
	if *dataRoot != "" && *dataRoot != b.DataRoot {
		return verdict(fmt.Errorf("data_root is %s, want %s", b.DataRoot, *dataRoot))
	}
	if *batchSeed != "" {
		want, err := strconv.ParseUint(*batchSeed, 0, 64)
		if err != nil {
			return usagef("--batch-seed %q is not a 64-bit unsigned integer", *batchSeed)
		}
		if b.Seed != want {
			return verdict(fmt.Errorf("the batch is drawn with seed %d, want %d: another batch than the run's", b.Seed, want))
		}
	}
	if *step >= 0 && b.Step != uint64(*step) {
		return verdict(fmt.Errorf("the batch is step %d's, want step %d's", b.Step, *step))
	}
	if *dataSize >= 0 && b.DataSize != uint64(*dataSize) {
		return verdict(fmt.Errorf("data_size is %d, want %d", b.DataSize, *dataSize))
	}
	return verdict(keys.Verify(st, b.Proof))
}

type zkBenchResult struct {
	Features    int     `json:"features"`
	Classes     int     `json:"classes"`
	Batch       int     `json:"batch"`
	Depth       int     `json:"depth"`
	Constraints int     `json:"constraints"`
	CompileMs   float64 `json:"compile_ms"`
	SetupMs     float64 `json:"setup_ms"`
	// ProveMs is the median of the timed proofs (--proofs), after one
	// untimed proof that warms the caches and pages in the proving key
	// (the first proof of a process is slower: a node proves many).
	ProveMs    float64   `json:"prove_ms"`
	ProveMinMs float64   `json:"prove_min_ms"`
	ProveAllMs []float64 `json:"prove_all_ms"`
	// ProveCPUMs is the process's CPU time (all threads) for the median
	// proof: on a shared machine it counts less of the time spent waiting for a core
	// than ProveMs.
	ProveCPUMs  float64 `json:"prove_cpu_ms"`
	VerifyMs    float64 `json:"verify_ms"`
	ProofBytes  int     `json:"proof_bytes"`
	StepMs      float64 `json:"step_ms"`
	FloatStepMs float64 `json:"float_step_ms"`
	ProveRatio  float64 `json:"prove_over_step"`
	CPUs        int     `json:"cpus"`
}

func runBenchZK(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench zk", "bench zk [flags]", stderr)
	zf := addZKParamFlags(fs)
	verifies := fs.Int("verifies", 200, "timed verifications")
	proofs := fs.Int("proofs", 3, "timed proofs, after an untimed one (prove_ms is their median)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := zf.params()
	if err != nil {
		return err
	}
	if *proofs < 1 || *proofs > 100 {
		return usagef("--proofs must be between 1 and 100, got %d", *proofs)
	}
	res := zkBenchResult{Features: p.Features, Classes: p.Classes, Batch: p.Batch, Depth: p.Depth, CPUs: runtime.GOMAXPROCS(0)}
	// A synthetic peer: 256 samples of random pixels, θ from the logreg init.
	set := data.Synthetic(1, 256, 1)
	if set.Train.Features() != p.Features || set.Train.Classes != p.Classes {
		return usagef("bench zk runs on 784×10 data; got --features %d --classes %d", p.Features, p.Classes)
	}
	spec, _ := models.NewSpec(models.LogReg, nil)
	theta, err := zk.ThetaFromFloat(models.Init(spec, 1))
	if err != nil {
		return err
	}
	shard := make([]int, set.Train.Len())
	for i := range shard {
		shard[i] = i
	}
	pd, err := zk.NewPeerData(p, set.Train, shard)
	if err != nil {
		return err
	}
	draw := zk.Draw{Seed: 1, Step: 0, Size: pd.Size()}
	idx, err := pd.Drawn(draw.Seed, draw.Step)
	if err != nil {
		return err
	}
	w, err := pd.Witness(theta, idx)
	if err != nil {
		return err
	}
	// The plain step, fixed point and float (Gorgonia), for the ratio.
	start := time.Now()
	n := 0
	var next zk.Theta
	for time.Since(start) < time.Second || n < 10 {
		if next, err = p.Step(theta, w.Batch); err != nil {
			return err
		}
		n++
	}
	res.StepMs = ms(time.Since(start)) / float64(n)
	cfg := trainer.DefaultConfig(spec)
	cfg.Optimizer, cfg.Batch, cfg.Momentum = trainer.OptSGD, p.Batch, 0
	cfg.Schedule.Base = p.LRFloat()
	if tr, err := trainer.New(cfg, set.Train); err == nil {
		start, n = time.Now(), 0
		for time.Since(start) < time.Second || n < 10 {
			if _, err := tr.Step(); err != nil {
				return err
			}
			n++
		}
		res.FloatStepMs = ms(time.Since(start)) / float64(n)
		tr.Close()
	}

	fmt.Fprintf(stderr, "vtrain: compiling and setting up the %d×%d batch-%d circuit (minutes at full size)\n", p.Features, p.Classes, p.Batch)
	start = time.Now()
	ccs, err := zk.Compile(p)
	if err != nil {
		return err
	}
	res.CompileMs = ms(time.Since(start))
	res.Constraints = ccs.GetNbConstraints()
	start = time.Now()
	keys, err := zk.SetupCompiled(p, ccs)
	if err != nil {
		return err
	}
	res.SetupMs = ms(time.Since(start))
	st := zk.Statement{ThetaIn: p.CommitTheta(theta), ThetaOut: p.CommitTheta(next), DataRoot: pd.Root(), Draw: draw,
		Context: zk.Context{Round: 1, Peer: "bench"}}
	proof, err := keys.Prove(st, w) // untimed: warms up
	if err != nil {
		return err
	}
	type timing struct{ wall, cpu float64 }
	runs := make([]timing, *proofs)
	for i := range runs {
		start, cpu0 := time.Now(), cpuTime()
		if proof, err = keys.Prove(st, w); err != nil {
			return err
		}
		runs[i] = timing{ms(time.Since(start)), ms(cpuTime() - cpu0)}
		res.ProveAllMs = append(res.ProveAllMs, runs[i].wall)
	}
	slices.SortFunc(runs, func(a, b timing) int { return cmp.Compare(a.wall, b.wall) })
	res.ProveMinMs = runs[0].wall
	res.ProveMs, res.ProveCPUMs = runs[len(runs)/2].wall, runs[len(runs)/2].cpu
	res.ProofBytes = len(proof)
	start = time.Now()
	for range *verifies {
		if err := keys.Verify(st, proof); err != nil {
			return err
		}
	}
	res.VerifyMs = ms(time.Since(start)) / float64(*verifies)
	res.ProveRatio = res.ProveMs / res.StepMs
	if *asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	fmt.Fprintf(stdout, "softmax regression %d×%d, batch %d, data depth %d: %d constraints\n", p.Features, p.Classes, p.Batch, p.Depth, res.Constraints)
	fmt.Fprintf(stdout, "compile %.0f ms, setup %.0f ms, prove %.0f ms (median of %d, %.0f ms of CPU; fastest %.0f ms), verify %.2f ms, proof %d bytes\n",
		res.CompileMs, res.SetupMs, res.ProveMs, *proofs, res.ProveCPUMs, res.ProveMinMs, res.VerifyMs, res.ProofBytes)
	fmt.Fprintf(stdout, "plain step %.3f ms fixed point, %.3f ms float: proving costs %.0f× the step\n", res.StepMs, res.FloatStepMs, res.ProveRatio)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
