package models

import (
	"math"
	"testing"

	G "gorgonia.org/gorgonia"
)

// TestTapeMatchesGorgoniaVM runs each kind of model's training step with
// the Net's tape and then with Gorgonia's tape machine over the same graph
// and parameters, and wants the same loss, logits and gradients bit for
// bit: the tape runs the same ops on the same inputs, in an order that
// differs only where it cannot matter. A change of the parameters between
// steps catches a tape that computes once and keeps stale values.
func TestTapeMatchesGorgoniaVM(t *testing.T) {
	for _, tc := range []struct {
		kind   string
		hidden []int
		batch  int
	}{
		{LogReg, nil, 5},
		{MLP, []int{32, 16}, 8},
		{CNN, nil, 3},
		{"test-relu-res", []int{12}, 4}, // G.Grad's + of a node's two gradients
		{"test-tanh-res", nil, 4},
	} {
		net, spec, theta, y := testNet(t, tc.kind, tc.hidden, tc.batch, 9)
		vm := G.NewTapeMachine(net.g.SubgraphRoots(append(G.Nodes{net.loss, net.logits}, net.gradNodes...)...))
		for step := range 2 {
			loss, err := net.Step(y)
			if err != nil {
				t.Fatal(err)
			}
			logits, err := f32s(net.tape.value(net.logits))
			if err != nil {
				t.Fatal(err)
			}
			logits = append([]float32(nil), logits...)
			grads := append([]float32(nil), net.Grads()...)
			if err := vm.RunAll(); err != nil {
				t.Fatal(err)
			}
			if want := net.loss.Value().Data().(float32); math.Float32bits(loss) != math.Float32bits(want) {
				t.Errorf("%s step %d: loss %v, Gorgonia's VM %v", spec, step, loss, want)
			}
			wantLogits, err := f32s(net.logits.Value())
			if err != nil {
				t.Fatal(err)
			}
			if i := firstBitDiff(logits, wantLogits); i >= 0 {
				t.Errorf("%s step %d: logit %d is %v, Gorgonia's VM %v", spec, step, i, logits[i], wantLogits[i])
			}
			for i, gn := range net.gradNodes {
				p := net.layout[i]
				want, err := f32s(gn.Value())
				if err != nil {
					t.Fatal(err)
				}
				if j := firstBitDiff(grads[p.Offset:p.Offset+p.Size], want[:p.Size]); j >= 0 {
					t.Errorf("%s step %d: d%s[%d] is %v, Gorgonia's VM %v", spec, step, p.Name, j, grads[p.Offset+j], want[j])
				}
			}
			vm.Reset()
			for i, g := range grads {
				theta[i] -= 0.1 * g
			}
		}
		vm.Close()
		net.Close()
	}
}

// firstBitDiff returns the first index where a and b differ in their bits
// (or in length), or -1.
func firstBitDiff(a, b []float32) int {
	for i := range min(len(a), len(b)) {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// TestTapeRejectsUnboundInput fails a step, with an error and no panic,
// when an input node has no value.
func TestTapeRejectsUnboundInput(t *testing.T) {
	g := G.NewGraph()
	x := G.NewMatrix(g, G.Float32, G.WithShape(2, 3), G.WithName("x"))
	r, err := relu(x)
	if err != nil {
		t.Fatal(err)
	}
	if err := newTape(r).run(); err == nil {
		t.Fatal("a tape with an unbound input ran")
	}
}
