package cli

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/trainer"
	"github.com/vtrain/vtrain/verify/zk"
)

type trainResult struct {
	Model        string  `json:"model"`
	Params       int     `json:"params"`
	Data         string  `json:"data"`
	BLAS         string  `json:"blas"`
	Device       string  `json:"device,omitempty"`
	Optimizer    string  `json:"optimizer"`
	Batch        int     `json:"batch"`
	Epochs       float64 `json:"epochs"`
	Steps        int64   `json:"steps"`
	Samples      int64   `json:"samples"`
	Seconds      float64 `json:"seconds"`
	TrainLoss    float64 `json:"train_loss"`
	TestLoss     float64 `json:"test_loss"`
	TestAccuracy float64 `json:"test_accuracy"`
	ParamSHA256  string  `json:"param_sha256"`
	Checkpoint   string  `json:"checkpoint,omitempty"`
}

type modelFlags struct {
	fs     *flag.FlagSet
	kind   *string
	hidden *string
}

func addModelFlags(fs *flag.FlagSet) modelFlags {
	kinds := strings.Join(models.Kinds, ", ")
	if users := models.Registered(); len(users) > 0 {
		kinds += "; this binary's own: " + strings.Join(users, ", ")
	}
	return modelFlags{
		fs:     fs,
		kind:   fs.String("model", "mlp", "model: "+kinds),
		hidden: fs.String("hidden", "256", "hidden layer widths, comma-separated (mlp, and a user's model that takes them: its own default when left out)"),
	}
}

func (m modelFlags) spec() (models.Spec, error) {
	hidden, err := models.ParseHidden(*m.hidden)
	if err != nil {
		return models.Spec{}, usageError{err.Error()}
	}
	if user := !models.IsBuiltin(*m.kind); *m.kind != models.MLP && !(user && flagSet(m.fs, "hidden")) {
		hidden = nil
	}
	spec, err := models.NewSpec(*m.kind, hidden)
	if err != nil {
		return spec, usageError{err.Error()}
	}
	return spec, nil
}

func runTrain(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("train", "train [flags]", stderr)
	mf := addModelFlags(fs)
	dataDir := fs.String("data", "", "Fashion-MNIST directory (IDX files, gzip or not), or 'synthetic'; default: the installed dataset, else synthetic")
	epochs := fs.Float64("epochs", 3, "passes over the training set (fractions allowed)")
	steps := fs.Int64("steps", 0, "train exactly this many steps instead of --epochs")
	batch := fs.Int("batch", 64, "batch size")
	lr := fs.Float64("lr", 0, "peak learning rate (default 1e-3 for adamw, 0.05 for sgd, the circuit's 0.005 with --privacy zk)")
	opt := fs.String("optimizer", "adamw", "inner optimizer: adamw or sgd")
	momentum := fs.Float64("momentum", 0.9, "sgd momentum")
	wd := fs.Float64("weight-decay", 0, "weight decay (decoupled for adamw, L2 for sgd)")
	sched := fs.String("schedule", "constant", "learning-rate schedule: constant or cosine")
	warmup := fs.Int64("warmup", 0, "linear warm-up steps")
	seed := fs.Uint64("seed", 1, "seed for initialisation, sharding and batch order")
	out := fs.String("out", "", "write a checkpoint to this directory at the end")
	resume := fs.String("resume", "", "resume from this checkpoint directory (model and optimizer flags come from it)")
	evalEvery := fs.Int64("eval-every", 0, "evaluate on the test set every N steps (0: once per epoch)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object on the last line of stdout")
	threads := fs.Int("threads", 0, "BLAS threads where the backend has a setting (openblas builds; 0: its default)")
	device := addDeviceFlag(fs)
	privacy := fs.String("privacy", "none", "none, or zk: softmax regression by plain SGD in the fixed-point arithmetic that zk proofs check (--model logreg)")
	if err := parse(fs, args); err != nil {
		return err
	}
	spec, err := mf.spec()
	if err != nil {
		return err
	}
	if *privacy != "none" && *privacy != "zk" {
		return usagef("--privacy must be none or zk, got %q", *privacy)
	}
	if *privacy == "zk" {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for _, name := range []string{"optimizer", "momentum", "weight-decay", "schedule", "warmup", "resume", "out", "threads"} {
			if set[name] {
				return usagef("--%s does not apply with --privacy zk (plain SGD, constant rate, fixed point)", name)
			}
		}
	}
	switch {
	case *privacy == "zk" && spec.Kind != models.LogReg:
		return usagef("--privacy zk trains softmax regression: pass --model logreg")
	case *privacy == "zk" && *device != "cpu":
		return usagef("--privacy zk computes in fixed point on the CPU: drop --device")
	case *batch < 1:
		return usagef("--batch must be positive, got %d", *batch)
	case !(*epochs > 0) || math.IsInf(*epochs, 0):
		return usagef("--epochs must be positive, got %v", *epochs)
	case *steps < 0 || *steps == 0 && flagSet(fs, "steps"):
		return usagef("--steps must be positive, got %d (leave it out to train --epochs)", *steps)
	case *lr < 0 || math.IsNaN(*lr) || math.IsInf(*lr, 0):
		return usagef("--lr must be positive, got %v", *lr)
	case *opt != trainer.OptAdamW && *opt != trainer.OptSGD:
		return usagef("--optimizer must be adamw or sgd, got %q", *opt)
	case *sched != trainer.ScheduleConstant && *sched != trainer.ScheduleCosine:
		return usagef("--schedule must be constant or cosine, got %q", *sched)
	case *warmup < 0:
		return usagef("--warmup must not be negative, got %d", *warmup)
	case *evalEvery < 0:
		return usagef("--eval-every must not be negative, got %d", *evalEvery)
	}
	models.SetBLASThreads(*threads)
	eng, err := openDevice(*device)
	if err != nil {
		return err
	}
	if eng != nil {
		defer eng.Close()
	}

	set, fellBack, err := data.Load(*dataDir, *seed)
	if err != nil {
		return err
	}
	if fellBack {
		fmt.Fprintf(stderr, "vtrain: no Fashion-MNIST installed (looked in %s); training on the built-in synthetic dataset. Install it with 'apt-get install dataset-fashion-mnist' or pass --data DIR.\n", strings.Join(data.DefaultDirs, ", "))
	}

	// The steps a fresh run plans (a resumed one counts from its checkpoint).
	if *resume == "" && *batch > set.Train.Len() {
		return usagef("--batch %d is larger than the %d training samples", *batch, set.Train.Len())
	}
	planned := *steps
	if planned == 0 {
		planned = int64(math.Round(*epochs * float64(set.Train.Len() / *batch)))
	}
	if *privacy == "zk" {
		base := *lr
		if base == 0 {
			base = zk.FashionParams(*batch).LRFloat() // the circuit's default, so that keygen's keys prove it
		}
		return trainZK(spec, set, *batch, base, *seed, planned, *evalEvery, *asJSON, stdout, stderr)
	}

	var tr *trainer.Trainer
	if *resume != "" {
		ck, err := trainer.ReadCheckpoint(*resume)
		if err != nil {
			return err
		}
		if tr, err = trainer.Resume(ck, set.Train, trainerOptions(eng)...); err != nil {
			return err
		}
		spec = tr.Config().Model
	} else {
		cfg := trainer.DefaultConfig(spec)
		cfg.Optimizer, cfg.Momentum, cfg.WeightDecay = *opt, *momentum, *wd
		cfg.Batch, cfg.Seed = *batch, *seed
		base := *lr
		if base == 0 {
			base = 1e-3
			if *opt == trainer.OptSGD {
				base = 0.05
			}
		}
		cfg.Schedule = trainer.Schedule{Kind: *sched, Base: base, Warmup: *warmup, Total: planned}
		if err := cfg.Validate(); err != nil {
			return usageError{err.Error()}
		}
		if tr, err = trainer.New(cfg, set.Train, trainerOptions(eng)...); err != nil {
			return err
		}
	}
	defer tr.Close()

	spe := tr.StepsPerEpoch()
	total := *steps
	if total == 0 {
		total = int64(math.Round(*epochs * float64(spe)))
	}
	if *resume != "" && *steps == 0 {
		// --epochs counts from the start of the run being resumed.
		total -= tr.Steps()
		if total < 0 {
			total = 0
		}
	}
	every := *evalEvery
	if every == 0 {
		every = spe
	}
	if !*asJSON {
		// What is being trained, before the training.
		fmt.Fprintf(stdout, "model %s (%d parameters) on %s, %s, BLAS %s\n", spec, spec.NumParams(), set.Source, tr.Config().Optimizer, models.BLAS())
	}
	prog := newConsole(stderr).progress("step", total)
	start := time.Now()
	var lossSum float64
	var lossN int64
	for i := int64(0); i < total; i++ {
		loss, err := tr.Step()
		if err != nil {
			prog.done()
			if errors.Is(err, models.ErrNonFinite) {
				return fmt.Errorf("%w (try a smaller --lr)", err)
			}
			return err
		}
		lossSum += float64(loss)
		lossN++
		prog.update(i+1, fmt.Sprintf("loss %.4f", loss))
		if (i+1)%every == 0 && i+1 < total {
			ev, err := trainer.Evaluate(spec, tr.Params(), set.Test, 1000)
			if err != nil {
				return err
			}
			prog.note(fmt.Sprintf("step %d (epoch %.2f): train loss %.4f, test loss %.4f, test accuracy %.4f",
				tr.Steps(), float64(tr.Steps())/float64(spe), lossSum/float64(lossN), ev.Loss, ev.Accuracy))
			lossSum, lossN = 0, 0
		}
	}
	secs := time.Since(start).Seconds()
	prog.done()
	ev, err := trainer.Evaluate(spec, tr.Params(), set.Test, 1000)
	if err != nil {
		return err
	}
	h := trainer.ParamHash(tr.Params())
	res := trainResult{
		Model: spec.String(), Params: spec.NumParams(), Data: set.Source, BLAS: models.BLAS(), Device: tr.Device(),
		Optimizer: tr.Config().Optimizer, Batch: tr.Config().Batch,
		Epochs: float64(tr.Steps()) / float64(spe), Steps: tr.Steps(), Samples: tr.Steps() * int64(tr.Config().Batch),
		Seconds: secs, TestLoss: ev.Loss, TestAccuracy: ev.Accuracy, ParamSHA256: hex.EncodeToString(h[:]),
	}
	if lossN > 0 {
		res.TrainLoss = lossSum / float64(lossN)
	}
	if *out != "" {
		if err := tr.Save(*out); err != nil {
			return err
		}
		res.Checkpoint = *out
	}
	if *asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	fmt.Fprintf(stdout, "%d steps (%.2f epochs, %d samples) in %.1fs\n", res.Steps, res.Epochs, res.Samples, res.Seconds)
	fmt.Fprintf(stdout, "test loss %.4f, test accuracy %.4f\n", res.TestLoss, res.TestAccuracy)
	fmt.Fprintf(stdout, "parameters sha256 %s\n", res.ParamSHA256)
	if res.Checkpoint != "" {
		fmt.Fprintf(stdout, "checkpoint %s\n", res.Checkpoint)
	}
	return nil
}

// flagSet reports whether the command line set the flag.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
