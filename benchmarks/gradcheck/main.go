// Command gradcheck writes, for one model, its initial weights, a batch of
// Fashion-MNIST (or synthetic) samples, and the loss and gradients that
// vtrain's Gorgonia graph computes, into one safetensors file, with PyTorch
// names and shapes. benchmarks/gradcheck.py loads it into the PyTorch twin
// of the model and compares the gradients.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
	"github.com/vtrain/vtrain/trainer"
)

func main() {
	kind := flag.String("model", "mlp", "model kind: logreg, mlp or cnn")
	hidden := flag.String("hidden", "256", "MLP hidden widths")
	batch := flag.Int("batch", 64, "batch size")
	dir := flag.String("data", "", "Fashion-MNIST directory, or synthetic (default: installed set)")
	seed := flag.Uint64("seed", 1, "seed for weights and batch")
	out := flag.String("out", "gradcheck.safetensors", "output file")
	flag.Parse()
	if err := run(*kind, *hidden, *batch, *dir, *seed, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gradcheck:", err)
		os.Exit(1)
	}
}

func run(kind, hidden string, batch int, dir string, seed uint64, out string) error {
	h, err := models.ParseHidden(hidden)
	if err != nil {
		return err
	}
	if kind != models.MLP {
		h = nil
	}
	spec, err := models.NewSpec(kind, h)
	if err != nil {
		return err
	}
	set, _, err := data.Load(dir, seed)
	if err != nil {
		return err
	}
	theta := models.Init(spec, seed)
	net, err := models.NewTrainNet(spec, batch, theta)
	if err != nil {
		return err
	}
	defer net.Close()
	sampler, err := data.NewSampler(seqIndices(set.Train.Len()), batch, seed)
	if err != nil {
		return err
	}
	idx := sampler.BatchAt(0, nil)
	y := make([]int, batch)
	set.Train.Fill(idx, net.Input(), y)
	x := append([]float32(nil), net.Input()...)
	loss, err := net.Step(y)
	if err != nil {
		return err
	}
	labels := make([]float32, batch)
	for i, c := range y {
		labels[i] = float32(c)
	}
	ts := trainer.TorchTensors(spec, theta, "")
	ts = append(ts, trainer.TorchTensors(spec, net.Grads(), "grad.")...)
	ts = append(ts,
		safetensors.Tensor{Name: "batch.x", Shape: []int{batch, spec.Rows * spec.Cols}, Data: x},
		safetensors.Tensor{Name: "batch.y", Shape: []int{batch}, Data: labels},
		safetensors.Tensor{Name: "loss", Shape: []int{}, Data: []float32{loss}},
	)
	meta := map[string]string{"model": kind, "hidden": hidden, "data": set.Source}
	return os.WriteFile(out, safetensors.Encode(ts, meta), 0o644)
}

func seqIndices(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
