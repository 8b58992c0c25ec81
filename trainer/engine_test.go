package trainer

import (
	"math"
	"testing"

	"github.com/vtrain/vtrain/engine"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
)

// TestTrainerOnEngine trains on an engine (the CPU reference, standing in
// for a GPU) alongside the Gorgonia graph: the two stay within float
// tolerance, and a checkpoint taken on the engine resumes bit-exactly.
func TestTrainerOnEngine(t *testing.T) {
	set := data.Synthetic(2, 512, 1)
	mlp, _ := models.NewSpec(models.MLP, []int{32})
	cnn, _ := models.NewSpec(models.CNN, nil)
	for _, c := range []struct {
		spec models.Spec
		opt  string
	}{{mlp, OptSGD}, {mlp, OptAdamW}, {cnn, OptSGD}} {
		spec, opt := c.spec, c.opt
		cfg := DefaultConfig(spec)
		cfg.Optimizer, cfg.Batch = opt, 16
		if opt == OptSGD {
			cfg.Schedule.Base = 0.05
		}
		ref, err := New(cfg, set.Train)
		if err != nil {
			t.Fatal(err)
		}
		dev, err := New(cfg, set.Train, WithEngine(engine.CPU()))
		if err != nil {
			t.Fatal(err)
		}
		if dev.Device() != "cpu" || ref.Device() != "cpu" {
			t.Fatalf("devices %s, %s", dev.Device(), ref.Device())
		}
		for range 20 {
			a, err := ref.Step()
			if err != nil {
				t.Fatal(err)
			}
			b, err := dev.Step()
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(float64(a-b)) > 1e-4*(1+math.Abs(float64(a))) {
				t.Fatalf("%s: losses %v and %v", opt, a, b)
			}
		}
		var num, den float64
		for i, w := range ref.Params() {
			d := float64(dev.Params()[i] - w)
			num += d * d
			den += float64(w) * float64(w)
		}
		if rel := math.Sqrt(num / den); rel > 1e-5 {
			t.Fatalf("%s: parameters differ by %.2e relative after 20 steps", opt, rel)
		}

		dir := t.TempDir()
		if err := dev.Save(dir); err != nil {
			t.Fatal(err)
		}
		ck, err := ReadCheckpoint(dir)
		if err != nil {
			t.Fatal(err)
		}
		resumed, err := Resume(ck, set.Train, WithEngine(engine.CPU()))
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if _, err := dev.Step(); err != nil {
				t.Fatal(err)
			}
			if _, err := resumed.Step(); err != nil {
				t.Fatal(err)
			}
		}
		if ParamHash(dev.Params()) != ParamHash(resumed.Params()) {
			t.Fatalf("%s: resuming on the engine is not bit-exact", opt)
		}
		ref.Close()
		dev.Close()
		resumed.Close()
	}
}
