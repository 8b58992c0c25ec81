package engine

import (
	"errors"
	"fmt"
	"math"

	"github.com/vtrain/vtrain/models"
)

// Optim configures Net's optimizer, with PyTorch's semantics (the same
// as package trainer's optimizers).
type Optim struct {
	Kind        string // "sgd" or "adamw"
	Momentum    float64
	Nesterov    bool
	WeightDecay float64
	Beta1       float64
	Beta2       float64
	Eps         float64
}

// ErrModel means a model the engines cannot run yet.
var ErrModel = errors.New("engine: unsupported model")

type denseLayer struct {
	in, out    int
	wOff, bOff int
}

// convLayer is a convolution followed by ReLU and 2×2 max-pooling, with
// its scratch: the patches, the channel-major product, the pre-pool output
// and their gradients.
type convLayer struct {
	g          ConvGeom
	wOff, bOff int
	cols, t    Buffer // [CKK, N·HW], [O, N·HW]
	pre, dpre  Buffer // N·O·H'·W'
	out, dout  Buffer // N·O·H'/2·W'/2
	dcols, dt  Buffer
}

// Net trains softmax regression, an MLP or the CNN on an engine:
// parameters, gradients, activations and optimizer state stay on the
// device; a step uploads the batch and its labels and downloads the
// per-sample losses. The parameter layout is models.Spec.Layout's.
type Net struct {
	e      Engine
	spec   models.Spec
	batch  int
	convs  []convLayer
	layers []denseLayer
	opt    Optim
	steps  int64
	ones   Buffer // N·HW ones, for the convolutions' bias gradients
	dense0 Buffer // the dense layers' input: x, or the last pooled output
	ddense Buffer // its gradient (CNN only)

	params, grads Buffer
	state         []Buffer // momentum, or exp_avg and exp_avg_sq
	x, labels     Buffer
	acts, dacts   []Buffer // per layer: batch×out
	loss          Buffer
	owned         []Buffer

	yHost    []float32
	lossHost []float32
}

// NewNet allocates a model for batches of the given size on e, with
// parameters theta (copied to the device).
func NewNet(e Engine, spec models.Spec, batch int, opt Optim, theta []float32) (_ *Net, err error) {
	if spec.Kind != models.LogReg && spec.Kind != models.MLP && spec.Kind != models.CNN {
		return nil, fmt.Errorf("%w: %s", ErrModel, spec)
	}
	if batch < 1 {
		return nil, shapeErr("dense", "batch %d", batch)
	}
	if len(theta) != spec.NumParams() {
		return nil, shapeErr("dense", "%d parameters for %s, want %d", len(theta), spec, spec.NumParams())
	}
	if opt.Kind != "sgd" && opt.Kind != "adamw" {
		return nil, fmt.Errorf("%w: optimizer %q", ErrModel, opt.Kind)
	}
	n := &Net{e: e, spec: spec, batch: batch, opt: opt, yHost: make([]float32, batch), lossHost: make([]float32, batch)}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	layout := spec.Layout()
	c, h, w := 1, spec.Rows, spec.Cols
	i := 0
	for ; i < len(layout) && len(layout[i].Shape) == 4; i += 2 {
		wt, b := layout[i], layout[i+1]
		g := ConvGeom{N: batch, C: c, H: h, W: w, O: wt.Shape[0], K: wt.Shape[2], P: wt.Shape[2] / 2}
		if g.OutH()%2 != 0 || g.OutW()%2 != 0 {
			return nil, fmt.Errorf("%w: %s: a %d×%d map cannot be pooled 2×2", ErrModel, spec, g.OutH(), g.OutW())
		}
		n.convs = append(n.convs, convLayer{g: g, wOff: wt.Offset, bOff: b.Offset})
		c, h, w = g.O, g.OutH()/2, g.OutW()/2
	}
	for ; i < len(layout); i += 2 {
		w, b := layout[i], layout[i+1]
		n.layers = append(n.layers, denseLayer{in: w.Shape[0], out: w.Shape[1], wOff: w.Offset, bOff: b.Offset})
	}
	alloc := func(k int) Buffer {
		if err != nil {
			return nil
		}
		var b Buffer
		if b, err = e.Alloc(k); err == nil {
			n.owned = append(n.owned, b)
		}
		return b
	}
	np := len(theta)
	n.params, n.grads = alloc(np), alloc(np)
	nState := 1
	if opt.Kind == "adamw" {
		nState = 2
	}
	for range nState {
		n.state = append(n.state, alloc(np))
	}
	n.x, n.labels, n.loss = alloc(batch*spec.Rows*spec.Cols), alloc(batch), alloc(batch)
	n.dense0 = n.x
	for i := range n.convs {
		l := &n.convs[i]
		g := l.g
		l.cols, l.t, l.dt = alloc(g.CKK()*g.NHW()), alloc(g.O*g.NHW()), alloc(g.O*g.NHW())
		l.pre, l.dpre = alloc(g.O*g.NHW()), alloc(g.O*g.NHW())
		l.out, l.dout = alloc(g.O*g.NHW()/4), alloc(g.O*g.NHW()/4)
		if i > 0 {
			l.dcols = alloc(g.CKK() * g.NHW())
		}
		n.dense0, n.ddense = l.out, l.dout
	}
	if len(n.convs) > 0 {
		n.ones = alloc(n.convs[0].g.NHW())
		if err == nil {
			ones := make([]float32, n.ones.Len())
			for i := range ones {
				ones[i] = 1
			}
			err = e.Upload(n.ones, ones)
		}
	}
	for _, l := range n.layers {
		n.acts = append(n.acts, alloc(batch*l.out))
		n.dacts = append(n.dacts, alloc(batch*l.out))
	}
	if err != nil {
		return nil, err
	}
	if err = e.Upload(n.params, theta); err != nil {
		return nil, err
	}
	return n, nil
}

// Engine returns the engine the model runs on.
func (n *Net) Engine() Engine { return n.e }

func (n *Net) w(l denseLayer) Buffer  { return n.params.Slice(l.wOff, l.in*l.out) }
func (n *Net) b(l denseLayer) Buffer  { return n.params.Slice(l.bOff, l.out) }
func (n *Net) gw(l denseLayer) Buffer { return n.grads.Slice(l.wOff, l.in*l.out) }
func (n *Net) gb(l denseLayer) Buffer { return n.grads.Slice(l.bOff, l.out) }
func (n *Net) input(i int) Buffer { // dense layer i's input
	if i == 0 {
		return n.dense0
	}
	return n.acts[i-1]
}

func (n *Net) convForward() error {
	in := n.x
	for i := range n.convs {
		l := &n.convs[i]
		g := l.g
		hw := g.OutH() * g.OutW()
		if err := n.e.Im2Col(l.cols, in, g); err != nil {
			return err
		}
		if err := n.e.Gemm(false, false, g.O, g.NHW(), g.CKK(), 1, n.params.Slice(l.wOff, g.O*g.CKK()), l.cols, 0, l.t); err != nil {
			return err
		}
		if err := n.e.FromCNP(l.pre, l.t, n.params.Slice(l.bOff, g.O), g.N, g.O, hw); err != nil {
			return err
		}
		if err := n.e.ReLUPool(l.out, l.pre, g.N*g.O, g.OutH(), g.OutW()); err != nil {
			return err
		}
		in = l.out
	}
	return nil
}

func (n *Net) convBackward() error {
	for i := len(n.convs) - 1; i >= 0; i-- {
		l := &n.convs[i]
		g := l.g
		hw := g.OutH() * g.OutW()
		if err := n.e.ReLUPoolGrad(l.dpre, l.dout, l.pre, g.N*g.O, g.OutH(), g.OutW()); err != nil {
			return err
		}
		if err := n.e.ToCNP(l.dt, l.dpre, g.N, g.O, hw); err != nil {
			return err
		}
		if err := n.e.Gemm(false, true, g.O, g.CKK(), g.NHW(), 1, l.dt, l.cols, 0, n.grads.Slice(l.wOff, g.O*g.CKK())); err != nil {
			return err
		}
		if err := n.e.Gemm(false, false, g.O, 1, g.NHW(), 1, l.dt, n.ones.Slice(0, g.NHW()), 0, n.grads.Slice(l.bOff, g.O)); err != nil {
			return err
		}
		if i == 0 {
			break
		}
		if err := n.e.Gemm(true, false, g.CKK(), g.NHW(), g.O, 1, n.params.Slice(l.wOff, g.O*g.CKK()), l.dt, 0, l.dcols); err != nil {
			return err
		}
		if err := n.e.Col2Im(n.convs[i-1].dout, l.dcols, g); err != nil {
			return err
		}
	}
	return nil
}

// Forward computes the logits of the batch x (batch×features) into the last
// activation buffer.
func (n *Net) forward(x []float32) error {
	if err := n.e.Upload(n.x, x); err != nil {
		return err
	}
	if err := n.convForward(); err != nil {
		return err
	}
	for i, l := range n.layers {
		in := n.input(i)
		if err := n.e.Gemm(false, false, n.batch, l.out, l.in, 1, in, n.w(l), 0, n.acts[i]); err != nil {
			return err
		}
		if err := n.e.AddRowVector(n.acts[i], n.b(l), n.batch, l.out); err != nil {
			return err
		}
		if i < len(n.layers)-1 {
			if err := n.e.ReLU(n.acts[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Gradients runs the forward and backward pass on a batch and leaves the
// gradient of the mean loss on the device; it returns the mean loss.
func (n *Net) Gradients(x []float32, y []int) (float32, error) {
	if len(y) != n.batch {
		return 0, shapeErr("dense", "%d labels for a batch of %d", len(y), n.batch)
	}
	for i, c := range y {
		n.yHost[i] = float32(c)
	}
	if err := n.e.Upload(n.labels, n.yHost); err != nil {
		return 0, err
	}
	if err := n.forward(x); err != nil {
		return 0, err
	}
	last := len(n.layers) - 1
	if err := n.e.SoftmaxCrossEntropy(n.dacts[last], n.loss, n.acts[last], n.labels, n.batch, n.layers[last].out); err != nil {
		return 0, err
	}
	for i := last; i >= 0; i-- {
		l := n.layers[i]
		in := n.input(i)
		if err := n.e.Gemm(true, false, l.in, l.out, n.batch, 1, in, n.dacts[i], 0, n.gw(l)); err != nil {
			return 0, err
		}
		if err := n.e.SumRows(n.gb(l), n.dacts[i], n.batch, l.out); err != nil {
			return 0, err
		}
		if i > 0 {
			if err := n.e.Gemm(false, true, n.batch, l.in, l.out, 1, n.dacts[i], n.w(l), 0, n.dacts[i-1]); err != nil {
				return 0, err
			}
			if err := n.e.ReLUGrad(n.dacts[i-1], n.acts[i-1]); err != nil {
				return 0, err
			}
		} else if len(n.convs) > 0 {
			if err := n.e.Gemm(false, true, n.batch, l.in, l.out, 1, n.dacts[i], n.w(l), 0, n.ddense); err != nil {
				return 0, err
			}
		}
	}
	if err := n.convBackward(); err != nil {
		return 0, err
	}
	if err := n.e.Download(n.lossHost, n.loss); err != nil {
		return 0, err
	}
	var s float64
	for _, v := range n.lossHost {
		s += float64(v)
	}
	loss := float32(s / float64(n.batch))
	if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) {
		return loss, models.ErrNonFinite
	}
	return loss, nil
}

// Step trains on one batch: forward, backward and the optimizer update at
// learning rate lr, all on the device. It returns the batch's mean loss
// (before the update).
func (n *Net) Step(x []float32, y []int, lr float64) (float32, error) {
	loss, err := n.Gradients(x, y)
	if err != nil {
		return loss, err
	}
	o := n.opt
	n.steps++
	switch o.Kind {
	case "sgd":
		err = n.e.SGD(n.params, n.grads, n.state[0], float32(lr), float32(o.Momentum), float32(o.WeightDecay), o.Nesterov)
	default:
		t := float64(n.steps)
		bc1, bc2 := 1-math.Pow(o.Beta1, t), 1-math.Pow(o.Beta2, t)
		err = n.e.AdamW(n.params, n.grads, n.state[0], n.state[1], float32(o.Beta1), float32(o.Beta2), float32(o.Eps),
			float32(1-lr*o.WeightDecay), float32(lr/bc1), float32(math.Sqrt(bc2)))
	}
	return loss, err
}

// Params copies the parameters from the device into dst.
func (n *Net) Params(dst []float32) error { return n.e.Download(dst, n.params) }

// SetParams copies theta to the device.
func (n *Net) SetParams(theta []float32) error { return n.e.Upload(n.params, theta) }

// Grads copies the last gradients from the device into dst.
func (n *Net) Grads(dst []float32) error { return n.e.Download(dst, n.grads) }

// stateNames are the optimizer buffers' names in package trainer's
// checkpoints.
func (n *Net) stateNames() []string {
	if n.opt.Kind == "sgd" {
		return []string{"momentum"}
	}
	return []string{"exp_avg", "exp_avg_sq"}
}

// OptState downloads the optimizer state under trainer's names, with the
// number of optimizer steps taken.
func (n *Net) OptState() (map[string][]float32, int64, error) {
	out := map[string][]float32{}
	for i, name := range n.stateNames() {
		b := make([]float32, n.state[i].Len())
		if err := n.e.Download(b, n.state[i]); err != nil {
			return nil, 0, err
		}
		out[name] = b
	}
	return out, n.steps, nil
}

// SetOptState uploads optimizer state as OptState returns it.
func (n *Net) SetOptState(bufs map[string][]float32, steps int64) error {
	for i, name := range n.stateNames() {
		b, ok := bufs[name]
		if !ok {
			return shapeErr("dense", "optimizer state %q missing", name)
		}
		if err := n.e.Upload(n.state[i], b); err != nil {
			return err
		}
	}
	n.steps = steps
	return nil
}

// Close frees the model's buffers (not the engine).
func (n *Net) Close() error {
	for _, b := range n.owned {
		n.e.Free(b)
	}
	n.owned = nil
	return nil
}
