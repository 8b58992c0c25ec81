package models

import (
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// BenchmarkLoss times the loss and its gradient at batch 64 with 10
// classes, as a training step runs them (forward and backward on a tape
// machine): vtrain's SoftmaxCrossEntropy op against the chain of
// Gorgonia ops it replaced (LogSoftMax, ⊙ one-hot, Σ, × −1/N).
//
//	go test -run - -bench Loss ./models/
func BenchmarkLoss(b *testing.B) {
	const n, c = 64, 10
	for _, name := range []string{"op", "gorgonia-chain"} {
		b.Run(name, func(b *testing.B) {
			g := G.NewGraph()
			z := G.NewMatrix(g, tensor.Float32, G.WithShape(n, c), G.WithName("z"), G.WithInit(G.GlorotU(1)))
			var loss *G.Node
			var err error
			if name == "op" {
				labels := make([]float32, n)
				for i := range labels {
					labels[i] = float32(i % c)
				}
				y := G.NewVector(g, tensor.Float32, G.WithShape(n), G.WithName("y"),
					G.WithValue(tensor.New(tensor.WithShape(n), tensor.WithBacking(labels))))
				loss, err = SoftmaxCrossEntropy(z, y)
			} else {
				oh := make([]float32, n*c)
				for i := range n {
					oh[i*c+i%c] = 1
				}
				y := G.NewMatrix(g, tensor.Float32, G.WithShape(n, c), G.WithName("y"),
					G.WithValue(tensor.New(tensor.WithShape(n, c), tensor.WithBacking(oh))))
				var logp, picked, sum *G.Node
				if logp, err = G.LogSoftMax(z); err == nil {
					if picked, err = G.HadamardProd(logp, y); err == nil {
						if sum, err = G.Sum(picked); err == nil {
							loss, err = G.Mul(sum, G.NewConstant(float32(-1.0/n)))
						}
					}
				}
			}
			if err != nil {
				b.Fatal(err)
			}
			grads, err := G.Grad(loss, z)
			if err != nil {
				b.Fatal(err)
			}
			vm := G.NewTapeMachine(g.SubgraphRoots(loss, grads[0]))
			defer vm.Close()
			b.ReportAllocs()
			for b.Loop() {
				if err := vm.RunAll(); err != nil {
					b.Fatal(err)
				}
				vm.Reset()
			}
		})
	}
}
