package engine

import (
	"fmt"
	"math"
)

// Optim configures an Optimizer, with PyTorch's semantics (the same as
// package trainer's optimizers).
type Optim struct {
	Kind        string // "sgd" or "adamw"
	Momentum    float64
	Nesterov    bool
	WeightDecay float64
	Beta1       float64
	Beta2       float64
	Eps         float64
}

// Optimizer runs SGD (momentum, Nesterov, weight decay) or AdamW on
// parameters and gradients that live on an engine, with its state on the
// engine too. It knows nothing of the model: any flat parameter vector.
type Optimizer struct {
	e     Engine
	opt   Optim
	n     int
	steps int64
	state []Buffer // momentum, or exp_avg and exp_avg_sq
}

// NewOptimizer allocates the optimizer state for n parameters on e.
func NewOptimizer(e Engine, n int, opt Optim) (*Optimizer, error) {
	if opt.Kind != "sgd" && opt.Kind != "adamw" {
		return nil, fmt.Errorf("engine: unknown optimizer %q (want sgd or adamw)", opt.Kind)
	}
	o := &Optimizer{e: e, opt: opt, n: n}
	for range len(o.stateNames()) {
		b, err := e.Alloc(n)
		if err != nil {
			o.Close()
			return nil, err
		}
		o.state = append(o.state, b)
	}
	return o, nil
}

// Step updates params in place from grads at learning rate lr.
func (o *Optimizer) Step(params, grads Buffer, lr float64) error {
	if params.Len() != o.n {
		return shapeErr("optimizer", "%d parameters, state for %d", params.Len(), o.n)
	}
	p := o.opt
	o.steps++
	if p.Kind == "sgd" {
		return o.e.SGD(params, grads, o.state[0], float32(lr), float32(p.Momentum), float32(p.WeightDecay), p.Nesterov)
	}
	t := float64(o.steps)
	bc1, bc2 := 1-math.Pow(p.Beta1, t), 1-math.Pow(p.Beta2, t)
	return o.e.AdamW(params, grads, o.state[0], o.state[1], float32(p.Beta1), float32(p.Beta2), float32(p.Eps),
		float32(1-lr*p.WeightDecay), float32(lr/bc1), float32(math.Sqrt(bc2)))
}

// stateNames are the state buffers' names in package trainer's
// checkpoints.
func (o *Optimizer) stateNames() []string {
	if o.opt.Kind == "sgd" {
		return []string{"momentum"}
	}
	return []string{"exp_avg", "exp_avg_sq"}
}

// State downloads the optimizer state under trainer's names, with the
// number of steps taken.
func (o *Optimizer) State() (map[string][]float32, int64, error) {
	out := map[string][]float32{}
	for i, name := range o.stateNames() {
		b := make([]float32, o.n)
		if err := o.e.Download(b, o.state[i]); err != nil {
			return nil, 0, err
		}
		out[name] = b
	}
	return out, o.steps, nil
}

// SetState uploads optimizer state as State returns it.
func (o *Optimizer) SetState(bufs map[string][]float32, steps int64) error {
	for i, name := range o.stateNames() {
		b, ok := bufs[name]
		if !ok {
			return shapeErr("optimizer", "state %q missing", name)
		}
		if err := o.e.Upload(o.state[i], b); err != nil {
			return err
		}
	}
	o.steps = steps
	return nil
}

// Close frees the state.
func (o *Optimizer) Close() {
	for _, b := range o.state {
		o.e.Free(b)
	}
	o.state = nil
}
