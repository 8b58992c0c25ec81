package models

import (
	"errors"
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Net is a model compiled into a Gorgonia graph for a fixed batch size. Its
// parameters are the caller's flat vector itself: every parameter node is a
// tensor view of a sub-slice, so writing to the vector between steps (an
// optimizer step, loading a checkpoint) changes the model with no copy.
// A Net is not safe for concurrent use.
type Net struct {
	spec   Spec
	batch  int
	train  bool
	params []float32
	grads  []float32
	layout []Param

	g      *G.ExprGraph
	tape   *tape
	x      *G.Node
	xval   *tensor.Dense
	y      *G.Node // labels, class indices as float32 (training only)
	yval   *tensor.Dense
	loss   *G.Node
	logits *G.Node
	learn  G.Nodes

	gradNodes G.Nodes // gradNodes[i] is d loss / d learn[i]
}

// NewTrainNet compiles spec for training steps (forward and backward) at the
// given batch size over params, whose length must be spec.NumParams().
func NewTrainNet(spec Spec, batch int, params []float32) (*Net, error) {
	return newNet(spec, batch, params, true)
}

// NewEvalNet compiles spec for inference (logits only) at the given batch
// size over params.
func NewEvalNet(spec Spec, batch int, params []float32) (*Net, error) {
	return newNet(spec, batch, params, false)
}

func newNet(spec Spec, batch int, params []float32, train bool) (n *Net, err error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if batch < 1 || batch > 1<<16 {
		return nil, fmt.Errorf("models: batch size %d out of range 1..65536", batch)
	}
	if len(params) != spec.NumParams() {
		return nil, fmt.Errorf("models: %s has %d parameters, vector has %d", spec, spec.NumParams(), len(params))
	}
	// Gorgonia reports some shape errors by panicking; a spec that passed
	// Validate should never do so, but keep that promise at the boundary.
	defer func() {
		if r := recover(); r != nil {
			n, err = nil, fmt.Errorf("models: building %s: %v", spec, r)
		}
	}()
	n = &Net{spec: spec, batch: batch, train: train, params: params, layout: spec.Layout(), g: G.NewGraph()}
	if train {
		n.grads = make([]float32, len(params))
	}
	if err := n.build(); err != nil {
		return nil, fmt.Errorf("models: building %s: %w", spec, err)
	}
	if train {
		grads, err := G.Grad(n.loss, n.learn...)
		if err != nil {
			return nil, fmt.Errorf("models: differentiating %s: %w", spec, err)
		}
		// Gorgonia also differentiates with respect to the inputs (x, y),
		// which costs a third of an MLP step; compile only what the loss
		// and the parameter gradients need.
		n.gradNodes = grads
		// vtrain's gradient ops write straight into the gradient vector,
		// which saves Step a copy of every gradient.
		for i, g := range grads {
			if b, ok := g.Op().(outBinder); ok {
				p := n.layout[i]
				b.bindOut(n.grads[p.Offset : p.Offset+p.Size])
			}
		}
		n.tape = newTape(append(G.Nodes{n.loss, n.logits}, grads...)...)
	} else {
		n.tape = newTape(n.logits)
	}
	return n, nil
}

func (n *Net) param(i int) *G.Node {
	p := n.layout[i]
	t := tensor.New(tensor.WithShape(p.Shape...), tensor.WithBacking(n.params[p.Offset:p.Offset+p.Size]))
	var node *G.Node
	if len(p.Shape) == 1 {
		node = G.NewVector(n.g, tensor.Float32, G.WithShape(p.Shape...), G.WithName(p.Name), G.WithValue(t))
	} else {
		node = G.NewTensor(n.g, tensor.Float32, len(p.Shape), G.WithShape(p.Shape...), G.WithName(p.Name), G.WithValue(t))
	}
	n.learn = append(n.learn, node)
	return node
}

func (n *Net) build() error {
	s := n.spec
	feat := s.Rows * s.Cols
	n.xval = tensor.New(tensor.WithShape(n.batch, feat), tensor.WithBacking(make([]float32, n.batch*feat)))
	n.x = G.NewMatrix(n.g, tensor.Float32, G.WithShape(n.batch, feat), G.WithName("x"), G.WithValue(n.xval))
	h := n.x
	pi := 0
	var err error
	if !IsBuiltin(s.Kind) {
		if err := n.buildUser(); err != nil {
			return err
		}
		return n.buildLoss()
	}
	if s.Kind == CNN {
		if h, err = G.Reshape(h, tensor.Shape{n.batch, 1, s.Rows, s.Cols}); err != nil {
			return err
		}
		for range s.Channels {
			w, b := n.param(pi), n.param(pi+1)
			pi += 2
			if h, err = conv2d(h, w, b, convPad, true); err != nil {
				return err
			}
		}
		sh := h.Shape()
		if h, err = G.Reshape(h, tensor.Shape{n.batch, sh[1] * sh[2] * sh[3]}); err != nil {
			return err
		}
	}
	dl := s.denseLayers()
	for i := range dl {
		w, b := n.param(pi), n.param(pi+1)
		pi += 2
		if h, err = denseLayer(h, w, b); err != nil {
			return err
		}
		if i < len(dl)-1 {
			if h, err = relu(h); err != nil {
				return err
			}
		}
	}
	n.logits = h
	return n.buildLoss()
}

// buildLoss adds the mean softmax cross-entropy of the logits to a
// training net.
func (n *Net) buildLoss() error {
	if !n.train {
		return nil
	}
	var err error
	n.yval = tensor.New(tensor.WithShape(n.batch), tensor.WithBacking(make([]float32, n.batch)))
	n.y = G.NewVector(n.g, tensor.Float32, G.WithShape(n.batch), G.WithName("y"), G.WithValue(n.yval))
	n.loss, err = SoftmaxCrossEntropy(n.logits, n.y)
	return err
}

// Params returns the flat parameter vector (the caller's slice).
func (n *Net) Params() []float32 { return n.params }

// Grads returns the flat gradient vector written by the last Step, in the
// order of Params. It is nil for an evaluation net.
func (n *Net) Grads() []float32 { return n.grads }

// ErrNonFinite is returned when a step's loss is NaN or infinite.
var ErrNonFinite = errors.New("models: non-finite loss")

// Input returns the net's input buffer (batch × features), to be filled
// before Step or Forward (for example with data.Dataset.Fill).
func (n *Net) Input() []float32 { return n.xval.Data().([]float32) }

// Step runs one forward and backward pass on the input buffer and labels y
// (len = batch, each in [0, classes)), writes the gradient of the mean
// cross-entropy loss into Grads, and returns the loss.
func (n *Net) Step(y []int) (float32, error) {
	if !n.train {
		return 0, errors.New("models: Step on an evaluation net")
	}
	if len(y) != n.batch {
		return 0, fmt.Errorf("models: %d labels for batch %d", len(y), n.batch)
	}
	ys := n.yval.Data().([]float32)
	for i, c := range y {
		if c < 0 || c >= n.spec.Classes {
			return 0, fmt.Errorf("models: label %d out of range 0..%d", c, n.spec.Classes-1)
		}
		ys[i] = float32(c)
	}
	if err := n.tape.run(); err != nil {
		return 0, fmt.Errorf("models: step: %w", err)
	}
	for i, node := range n.gradNodes {
		p := n.layout[i]
		gv := n.tape.value(node)
		if gv == nil {
			return 0, fmt.Errorf("models: no gradient computed for %s", p.Name)
		}
		dst, src := n.grads[p.Offset:p.Offset+p.Size], gv.Data().([]float32)
		if len(src) == 0 || &src[0] != &dst[0] {
			copy(dst, src)
		}
	}
	loss := n.tape.value(n.loss).Data().(float32)
	if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) {
		return loss, ErrNonFinite
	}
	return loss, nil
}

// Forward runs the forward pass on the input buffer and appends the logits
// (batch × classes, row-major) to dst.
func (n *Net) Forward(dst []float32) ([]float32, error) {
	if err := n.tape.run(); err != nil {
		return dst, fmt.Errorf("models: forward: %w", err)
	}
	return append(dst, n.tape.value(n.logits).Data().([]float32)...), nil
}

// Close releases the net. It holds nothing but memory: Close is there
// for the callers that release nets, and does nothing.
func (n *Net) Close() error { return nil }
