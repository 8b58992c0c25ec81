package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/vtrain/vtrain/internal/openblas"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/trainer"
)

func runBench(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, "Usage: vtrain bench step|zk [flags]\n\n  step   time training steps (forward, backward, optimizer update)\n  zk     constraints, setup, prove and verify time, proof size of the zk step circuit")
		if len(args) == 0 {
			return usagef("missing benchmark name")
		}
		return nil
	}
	switch args[0] {
	case "step":
		return runBenchStep(args[1:], stdout, stderr)
	case "zk":
		return runBenchZK(args[1:], stdout, stderr)
	default:
		return usagef("unknown benchmark %q (want step or zk)", args[0])
	}
}

type stepResult struct {
	Engine    string  `json:"engine"`
	Device    string  `json:"device"`
	BLAS      string  `json:"blas"`
	Threads   int     `json:"threads"`
	Model     string  `json:"model"`
	Params    int     `json:"params"`
	Batch     int     `json:"batch"`
	Optimizer string  `json:"optimizer"`
	Steps     int     `json:"steps"`
	MsPerStep float64 `json:"ms_per_step"`
	// CPUMsPerStep is the process's CPU time per step: on a shared machine
	// it leaves out the time the process waited for a core.
	CPUMsPerStep float64 `json:"cpu_ms_per_step"`
	GFLOPS       float64 `json:"gflops"`
	GoVersion    string  `json:"go"`
	CPUs         int     `json:"cpus"`
}

func runBenchStep(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench step", "bench step [flags]", stderr)
	mf := addModelFlags(fs)
	batch := fs.Int("batch", 64, "batch size")
	steps := fs.Int("steps", 500, "timed steps")
	warm := fs.Int("warmup", 50, "untimed warm-up steps")
	opt := fs.String("optimizer", "sgd", "optimizer applied each step: sgd (momentum) or adamw")
	threads := fs.Int("threads", 0, "BLAS threads where the backend has a setting (openblas builds; 0: its default)")
	device := addDeviceFlag(fs)
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return err
	}
	spec, err := mf.spec()
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
	switch {
	case *batch < 1:
		return usagef("--batch must be positive, got %d", *batch)
	case *steps < 1:
		return usagef("--steps must be positive, got %d", *steps)
	case *warm < 0:
		return usagef("--warmup must not be negative, got %d", *warm)
	case *opt != trainer.OptSGD && *opt != trainer.OptAdamW:
		return usagef("--optimizer must be sgd or adamw, got %q", *opt)
	}
	models.SetBLASThreads(*threads)
	// A fixed synthetic batch: the figure is compute, not data loading.
	set := data.Synthetic(1, max(*batch, 64), 1)
	cfg := trainer.DefaultConfig(spec)
	cfg.Optimizer, cfg.Batch = *opt, *batch
	if *opt == trainer.OptSGD {
		cfg.Schedule.Base = 0.01
	}
	tr, err := trainer.New(cfg, set.Train, trainerOptions(eng)...)
	if err != nil {
		return err
	}
	defer tr.Close()
	for i := 0; i < *warm; i++ {
		if _, err := tr.Step(); err != nil {
			return err
		}
	}
	start, cpu0 := time.Now(), cpuTime()
	for i := 0; i < *steps; i++ {
		if _, err := tr.Step(); err != nil {
			return err
		}
	}
	sec := time.Since(start).Seconds() / float64(*steps)
	cpuSec := (cpuTime() - cpu0).Seconds() / float64(*steps)
	res := stepResult{
		Engine: "vtrain", Device: tr.Device(), BLAS: models.BLAS(), Threads: openblas.Threads(), Model: spec.String(), Params: spec.NumParams(),
		Batch: *batch, Optimizer: *opt, Steps: *steps, MsPerStep: sec * 1e3, CPUMsPerStep: cpuSec * 1e3,
		GFLOPS: spec.FLOPsPerSample() * float64(*batch) / sec / 1e9, GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
	}
	if *asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	fmt.Fprintf(stdout, "%s batch %d (%s, %s, BLAS %s): %.3f ms/step, %.1f GFLOP/s\n", res.Model, res.Batch, res.Optimizer, res.Device, res.BLAS, res.MsPerStep, res.GFLOPS)
	return nil
}
