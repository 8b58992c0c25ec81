package trainer

import (
	"fmt"
	"math"
)

// Optimizer updates a flat parameter vector from its gradient. Updates are
// element-wise loops in a fixed order with every product rounded to float32
// before it is added (float32(a*b) + c), so no platform can fuse them into
// an FMA and the result is the same bit for bit on every machine.
//
// Optimizer buffers flush subnormal values to zero. Moments of parameters
// whose gradient is always zero (the weights of an image's blank border)
// otherwise decay geometrically through the subnormal range, where x86
// arithmetic is up to 100× slower: on Fashion-MNIST this made AdamW half
// of a training step. The flush is part of the update rule, so it is as
// deterministic as the rest; it changes nothing but values below 1.2e-38.
type Optimizer interface {
	// Name is "sgd" or "adamw".
	Name() string
	// Step applies one update with learning rate lr. len(grads) must equal
	// len(params).
	Step(params, grads []float32, lr float64)
	// State returns the optimizer's buffers by name (views, not copies) and
	// its step count, for checkpoints.
	State() (map[string][]float32, int64)
	// SetState restores buffers and the step count from State's output.
	SetState(bufs map[string][]float32, steps int64) error
}

// SGD is stochastic gradient descent with momentum and L2 weight decay,
// with PyTorch's torch.optim.SGD semantics (dampening 0):
//
//	g ← g + wd·θ;  b ← μ·b + g;  θ ← θ − lr·(nesterov ? g + μ·b : b)
type SGD struct {
	Momentum    float64
	WeightDecay float64
	Nesterov    bool

	buf   []float32
	steps int64
}

// NewSGD returns an SGD optimizer for n parameters.
func NewSGD(n int, momentum, weightDecay float64, nesterov bool) *SGD {
	return &SGD{Momentum: momentum, WeightDecay: weightDecay, Nesterov: nesterov, buf: make([]float32, n)}
}

// Name implements Optimizer.
func (o *SGD) Name() string { return "sgd" }

// Step implements Optimizer.
func (o *SGD) Step(params, grads []float32, lr float64) {
	if len(params) != len(grads) || len(params) != len(o.buf) {
		panic(fmt.Sprintf("trainer: SGD.Step with %d params, %d grads, %d state", len(params), len(grads), len(o.buf)))
	}
	mu, wd, eta := float32(o.Momentum), float32(o.WeightDecay), float32(lr)
	buf := o.buf[:len(grads)]
	params = params[:len(grads)]
	// Branches are hoisted out of the loops: this runs once per parameter
	// per step.
	switch {
	case wd == 0 && !o.Nesterov:
		i0 := sgdMomentumVec(params, grads, buf, mu, eta)
		for i, g := range grads[i0:] {
			i += i0
			b := flush(float32(mu*buf[i]) + g)
			buf[i] = b
			params[i] -= float32(eta * b)
		}
	default:
		for i, g := range grads {
			p := params[i]
			g += float32(wd * p)
			b := flush(float32(mu*buf[i]) + g)
			buf[i] = b
			if o.Nesterov {
				b = g + float32(mu*b)
			}
			params[i] = p - float32(eta*b)
		}
	}
	o.steps++
}

// State implements Optimizer.
func (o *SGD) State() (map[string][]float32, int64) {
	return map[string][]float32{"momentum": o.buf}, o.steps
}

// SetState implements Optimizer.
func (o *SGD) SetState(bufs map[string][]float32, steps int64) error {
	return setBufs(bufs, steps, &o.steps, map[string][]float32{"momentum": o.buf})
}

// AdamW is Adam with decoupled weight decay, with PyTorch's
// torch.optim.AdamW semantics:
//
//	θ ← θ − lr·wd·θ;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//	θ ← θ − lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64

	m, v  []float32
	steps int64
}

// NewAdamW returns an AdamW optimizer for n parameters.
func NewAdamW(n int, beta1, beta2, eps, weightDecay float64) *AdamW {
	return &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay,
		m: make([]float32, n), v: make([]float32, n)}
}

// Name implements Optimizer.
func (o *AdamW) Name() string { return "adamw" }

// Step implements Optimizer.
func (o *AdamW) Step(params, grads []float32, lr float64) {
	if len(params) != len(grads) || len(params) != len(o.m) {
		panic(fmt.Sprintf("trainer: AdamW.Step with %d params, %d grads, %d state", len(params), len(grads), len(o.m)))
	}
	o.steps++
	t := float64(o.steps)
	bc1 := 1 - math.Pow(o.Beta1, t)
	bc2 := 1 - math.Pow(o.Beta2, t)
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	c1, c2 := float32(1-o.Beta1), float32(1-o.Beta2)
	decay := float32(1 - lr*o.WeightDecay)
	stepSize := float32(lr / bc1)
	sqrtBC2 := float32(math.Sqrt(bc2))
	eps := float32(o.Eps)
	for i, g := range grads {
		g = flush(g)
		m := flush(float32(b1*o.m[i]) + float32(c1*g))
		v := flush(float32(b2*o.v[i]) + float32(c2*flush(g*g)))
		o.m[i], o.v[i] = m, v
		denom := float32(math.Sqrt(float64(v)))/sqrtBC2 + eps
		params[i] = float32(params[i]*decay) - float32(stepSize*(m/denom))
	}
}

// State implements Optimizer.
func (o *AdamW) State() (map[string][]float32, int64) {
	return map[string][]float32{"exp_avg": o.m, "exp_avg_sq": o.v}, o.steps
}

// SetState implements Optimizer.
func (o *AdamW) SetState(bufs map[string][]float32, steps int64) error {
	return setBufs(bufs, steps, &o.steps, map[string][]float32{"exp_avg": o.m, "exp_avg_sq": o.v})
}

func setBufs(src map[string][]float32, steps int64, dstSteps *int64, dst map[string][]float32) error {
	if steps < 0 {
		return fmt.Errorf("%w: negative optimizer step count %d", ErrCheckpoint, steps)
	}
	if len(src) != len(dst) {
		return fmt.Errorf("%w: optimizer state has %d buffers, want %d", ErrCheckpoint, len(src), len(dst))
	}
	for name, d := range dst {
		s, ok := src[name]
		if !ok {
			return fmt.Errorf("%w: optimizer buffer %q missing", ErrCheckpoint, name)
		}
		if len(s) != len(d) {
			return fmt.Errorf("%w: optimizer buffer %q has %d values, want %d", ErrCheckpoint, name, len(s), len(d))
		}
	}
	for name, d := range dst {
		copy(d, src[name])
	}
	*dstSteps = steps
	return nil
}

// flush returns 0 for subnormal x (a zero exponent field) and x
// otherwise. Testing the bits rather than -min < x < min matters: the
// comparison pair branches on the sign of x, which is random, and the
// mispredictions made the whole optimizer step 15× slower.
func flush(x float32) float32 {
	if math.Float32bits(x)&0x7f800000 == 0 {
		return 0
	}
	return x
}
