package models

import (
	"fmt"

	G "gorgonia.org/gorgonia"
)

// The builders below are the ops a model may be written with. Each has a
// forward and a gradient on Gorgonia's CPU path and a lowering onto
// engine.Engine kernels (see Compile), so a graph built from them (plus
// G.Reshape) trains on the CPU graph and on any engine alike. Inputs are
// float32 nodes of one graph; a shape mismatch is an error, not a panic.
// Tensors are row-major; images are NCHW and kernels OIHW (PyTorch's
// layouts).

// Dense returns x·w + b for x [N×I], w [I×O] and b [O]: a fully
// connected layer (w is the transpose of torch.nn.Linear's weight).
func Dense(x, w, b *G.Node) (*G.Node, error) {
	if err := sameGraph("Dense", x, w, b); err != nil {
		return nil, err
	}
	if len(b.Shape()) != 1 {
		return nil, fmt.Errorf("models: Dense bias has shape %v, want a vector", b.Shape())
	}
	return denseLayer(x, w, b)
}

// ReLU returns max(x, 0) elementwise. Its gradient passes dy where x ≥ 0
// (at exactly 0 too).
func ReLU(x *G.Node) (*G.Node, error) {
	if err := sameGraph("ReLU", x); err != nil {
		return nil, err
	}
	return relu(x)
}

// Tanh returns tanh(x) elementwise.
func Tanh(x *G.Node) (*G.Node, error) {
	if err := sameGraph("Tanh", x); err != nil {
		return nil, err
	}
	return G.ApplyOp(&tanhOp{shape: x.Shape().Clone()}, x)
}

// Add returns a + b elementwise for two tensors of the same shape (no
// broadcasting), e.g. a residual connection. a and b may be one node.
func Add(a, b *G.Node) (*G.Node, error) {
	if err := sameGraph("Add", a, b); err != nil {
		return nil, err
	}
	if !a.Shape().Eq(b.Shape()) || a.IsScalar() {
		return nil, fmt.Errorf("models: Add needs two tensors of one shape, got %v and %v", a.Shape(), b.Shape())
	}
	return G.ApplyOp(&addOp{shape: a.Shape().Clone()}, a, b)
}

// Conv returns the fused convolution block: a 2-D convolution of x
// [N, C, H, W] with square kernels w [O, C, K, K] (stride 1, pad zeros on
// each side, 0 ≤ pad < K) plus the bias b [O], then ReLU and 2×2
// max-pooling with stride 2, giving [N, O, H'/2, W'/2] where
// H' = H + 2·pad − K + 1 and W' likewise; both must be even.
func Conv(x, w, b *G.Node, pad int) (*G.Node, error) {
	if err := sameGraph("Conv", x, w, b); err != nil {
		return nil, err
	}
	ws := w.Shape()
	if len(ws) != 4 || len(b.Shape()) != 1 || b.Shape()[0] != ws[0] {
		return nil, fmt.Errorf("models: Conv weight %v with bias %v", ws, b.Shape())
	}
	return conv2d(x, w, b, pad, true)
}

// SoftmaxCrossEntropy returns the mean cross-entropy loss, a scalar, of
// logits [N×C] against labels [N], a vector holding each sample's class
// index as a float32. It is the loss that Compile lowers; its gradient
// with respect to the labels is not defined.
func SoftmaxCrossEntropy(logits, labels *G.Node) (*G.Node, error) {
	if err := sameGraph("SoftmaxCrossEntropy", logits, labels); err != nil {
		return nil, err
	}
	ls, ys := logits.Shape(), labels.Shape()
	if len(ls) != 2 || len(ys) != 1 || ys[0] != ls[0] {
		return nil, fmt.Errorf("models: SoftmaxCrossEntropy of logits %v and labels %v, want [N×C] and [N]", ls, ys)
	}
	return G.ApplyOp(&xentOp{n: ls[0], c: ls[1]}, logits, labels)
}

// sameGraph checks that the nodes exist and belong to one graph.
func sameGraph(op string, ns ...*G.Node) error {
	for i, n := range ns {
		if n == nil {
			return fmt.Errorf("models: %s: input %d is nil", op, i)
		}
		if n.Graph() != ns[0].Graph() {
			return fmt.Errorf("models: %s: inputs from different graphs", op)
		}
		if n.Dtype() != G.Float32 {
			return fmt.Errorf("models: %s: input %s is %v, want float32", op, n.Name(), n.Dtype())
		}
	}
	return nil
}
