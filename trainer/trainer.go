package trainer

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/vtrain/vtrain/engine"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
)

// Optimizer names.
const (
	OptAdamW = "adamw"
	OptSGD   = "sgd"
)

// Config is everything that determines a local training run besides the
// data. Together with the data it fixes every bit of the result (see the
// package doc).
type Config struct {
	Model       models.Spec `json:"model"`
	Optimizer   string      `json:"optimizer"` // adamw or sgd
	Schedule    Schedule    `json:"schedule"`
	Momentum    float64     `json:"momentum"`     // sgd
	Nesterov    bool        `json:"nesterov"`     // sgd
	Beta1       float64     `json:"beta1"`        // adamw
	Beta2       float64     `json:"beta2"`        // adamw
	Eps         float64     `json:"eps"`          // adamw
	WeightDecay float64     `json:"weight_decay"` // both
	Batch       int         `json:"batch"`
	Seed        uint64      `json:"seed"`
	Shards      int         `json:"shards"` // the training set is cut into Shards
	Shard       int         `json:"shard"`  // and this trainer uses this one
	// ShardSeed, when not zero, fixes the sharding independently of Seed
	// (which then only orders batches): a peer keeps its shard across
	// rounds while each round draws its own batches.
	ShardSeed uint64 `json:"shard_seed,omitempty"`
}

// DefaultConfig returns the defaults for a model: AdamW (β 0.9/0.999,
// ε 1e-8, no weight decay) at 1e-3, constant, batch 64, one shard.
func DefaultConfig(spec models.Spec) Config {
	return Config{
		Model:     spec,
		Optimizer: OptAdamW,
		Schedule:  Schedule{Kind: ScheduleConstant, Base: 1e-3},
		Momentum:  0.9,
		Beta1:     0.9, Beta2: 0.999, Eps: 1e-8,
		Batch:  64,
		Seed:   1,
		Shards: 1,
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("trainer: invalid configuration")

// Validate checks every field and names the first bad one.
func (c Config) Validate() error {
	if err := c.Model.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := c.Schedule.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s = %v, want %s", ErrConfig, field, v, want)
	}
	switch c.Optimizer {
	case OptAdamW:
		if !(c.Beta1 >= 0 && c.Beta1 < 1) {
			return bad("beta1", c.Beta1, "[0, 1)")
		}
		if !(c.Beta2 >= 0 && c.Beta2 < 1) {
			return bad("beta2", c.Beta2, "[0, 1)")
		}
		if !(c.Eps > 0) {
			return bad("eps", c.Eps, "> 0")
		}
	case OptSGD:
		if !(c.Momentum >= 0 && c.Momentum < 1) {
			return bad("momentum", c.Momentum, "[0, 1)")
		}
	default:
		return bad("optimizer", fmt.Sprintf("%q", c.Optimizer), "adamw or sgd")
	}
	if !(c.WeightDecay >= 0 && c.WeightDecay < 1) {
		return bad("weight_decay", c.WeightDecay, "[0, 1)")
	}
	if c.Batch < 1 || c.Batch > 1<<16 {
		return bad("batch", c.Batch, "1..65536")
	}
	if c.Shards < 1 || c.Shard < 0 || c.Shard >= c.Shards {
		return bad("shard", fmt.Sprintf("%d of %d", c.Shard, c.Shards), "0 <= shard < shards")
	}
	return nil
}

func (c Config) newOptimizer(n int) Optimizer {
	if c.Optimizer == OptSGD {
		return NewSGD(n, c.Momentum, c.WeightDecay, c.Nesterov)
	}
	return NewAdamW(n, c.Beta1, c.Beta2, c.Eps, c.WeightDecay)
}

// Trainer runs local training steps. It is not safe for concurrent use.
type Trainer struct {
	cfg     Config
	ds      *data.Dataset
	params  []float32
	net     *models.Net
	opt     Optimizer
	sampler *data.Sampler
	step    int64

	// On a device engine (WithEngine), dev (the model's graph lowered onto
	// it) holds the parameters and the optimizer state; params and opt are
	// refreshed from it on demand.
	dev   *models.Program
	x     []float32
	stale bool

	idx []int
	y   []int
}

// Option configures a trainer.
type Option func(*options)

type options struct{ eng engine.Engine }

// WithEngine trains on an engine.Engine (a GPU) instead of Gorgonia's
// CPU VM: the model's differentiated graph is lowered onto the engine
// (models.Compile), and the forward and backward passes and the optimizer
// run on the device, which keeps the parameters between steps. Nil means
// the CPU VM.
func WithEngine(e engine.Engine) Option { return func(o *options) { o.eng = e } }

// New returns a trainer at step 0 with parameters initialised from the
// config's seed.
func New(cfg Config, train *data.Dataset, opts ...Option) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newTrainer(cfg, train, models.Init(cfg.Model, cfg.Seed), opts...)
}

// NewFrom returns a trainer at step 0 whose parameters start from theta
// (copied), for example the agreed parameters of a round.
func NewFrom(cfg Config, train *data.Dataset, theta []float32, opts ...Option) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(theta) != cfg.Model.NumParams() {
		return nil, fmt.Errorf("%w: %d parameters for %s, want %d", ErrConfig, len(theta), cfg.Model, cfg.Model.NumParams())
	}
	return newTrainer(cfg, train, append([]float32(nil), theta...), opts...)
}

func newTrainer(cfg Config, train *data.Dataset, theta []float32, opts ...Option) (*Trainer, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if train.Features() != cfg.Model.Rows*cfg.Model.Cols || train.Classes != cfg.Model.Classes {
		return nil, fmt.Errorf("%w: data %s is %dx%d with %d classes, model %s wants %dx%d with %d", ErrConfig,
			train.Name, train.Rows, train.Cols, train.Classes, cfg.Model, cfg.Model.Rows, cfg.Model.Cols, cfg.Model.Classes)
	}
	shardSeed := cfg.Seed
	if cfg.ShardSeed != 0 {
		shardSeed = cfg.ShardSeed
	}
	shard, err := data.Shard(train.Len(), cfg.Shards, cfg.Shard, shardSeed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	sampler, err := data.NewSampler(shard, cfg.Batch, cfg.Seed^uint64(cfg.Shard)<<32)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	t := &Trainer{
		cfg: cfg, ds: train, params: theta, sampler: sampler,
		opt: cfg.newOptimizer(len(theta)),
		idx: make([]int, 0, cfg.Batch), y: make([]int, cfg.Batch),
	}
	net, err := models.NewTrainNet(cfg.Model, cfg.Batch, theta)
	if err != nil {
		return nil, err
	}
	if o.eng != nil {
		// The model's graph, lowered onto the engine; the graph itself is
		// not run.
		defer net.Close()
		g, err := net.TrainGraph()
		if err != nil {
			return nil, err
		}
		dev, err := models.Compile(o.eng, g, engine.Optim{
			Kind: cfg.Optimizer, Momentum: cfg.Momentum, Nesterov: cfg.Nesterov, WeightDecay: cfg.WeightDecay,
			Beta1: cfg.Beta1, Beta2: cfg.Beta2, Eps: cfg.Eps})
		if err != nil {
			return nil, err
		}
		t.dev, t.x = dev, make([]float32, cfg.Batch*cfg.Model.Rows*cfg.Model.Cols)
		return t, nil
	}
	t.net = net
	return t, nil
}

// Config returns the trainer's configuration.
func (t *Trainer) Config() Config { return t.cfg }

// Params returns the live parameter vector. Writing to it changes the
// model; callers that keep it across steps should copy it. On a device
// engine it is a host copy, refreshed by each call after a step, and
// writing to it does not reach the device.
func (t *Trainer) Params() []float32 {
	if t.dev != nil && t.stale {
		if err := t.dev.Params(t.params); err != nil {
			panic(fmt.Sprintf("trainer: reading parameters from %s: %v", t.dev.Engine().Name(), err))
		}
		t.stale = false
	}
	return t.params
}

// Device names where the trainer computes: "cpu" or the engine's name.
func (t *Trainer) Device() string {
	if t.dev != nil {
		return t.dev.Engine().Name()
	}
	return "cpu"
}

// syncFromDevice copies the parameters and optimizer state from the device
// into the host copies (for a checkpoint).
func (t *Trainer) syncFromDevice() error {
	if t.dev == nil {
		return nil
	}
	if err := t.dev.Params(t.params); err != nil {
		return err
	}
	t.stale = false
	bufs, steps, err := t.dev.OptState()
	if err != nil {
		return err
	}
	return t.opt.SetState(bufs, steps)
}

// Steps returns the number of steps taken.
func (t *Trainer) Steps() int64 { return t.step }

// StepsPerEpoch returns the steps of one pass over the trainer's shard.
func (t *Trainer) StepsPerEpoch() int64 { return t.sampler.StepsPerEpoch() }

// Step trains on the next batch and returns its loss (before the update).
func (t *Trainer) Step() (float32, error) {
	t.idx = t.sampler.BatchAt(t.step, t.idx[:0])
	if t.dev != nil {
		t.ds.Fill(t.idx, t.x, t.y)
		loss, err := t.dev.Step(t.x, t.y, t.cfg.Schedule.At(t.step))
		if err != nil {
			return loss, fmt.Errorf("trainer: step %d on %s: %w", t.step, t.dev.Engine().Name(), err)
		}
		t.stale = true
		t.step++
		return loss, nil
	}
	t.ds.Fill(t.idx, t.net.Input(), t.y)
	loss, err := t.net.Step(t.y)
	if err != nil {
		return loss, fmt.Errorf("trainer: step %d: %w", t.step, err)
	}
	t.opt.Step(t.params, t.net.Grads(), t.cfg.Schedule.At(t.step))
	t.step++
	return loss, nil
}

// Close releases the trainer's compiled graph.
func (t *Trainer) Close() error {
	if t.dev != nil {
		return t.dev.Close()
	}
	return t.net.Close()
}

// ParamHash returns the SHA-256 of the parameter vector as little-endian
// float32 bytes: the identity of a model state.
func ParamHash(theta []float32) [32]byte {
	h := sha256.New()
	writeFloats(h, theta)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// writeFloats writes v to w as little-endian float32, in 4 KB pieces.
func writeFloats(w io.Writer, v []float32) {
	buf := make([]byte, 0, 4096)
	for i, x := range v {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
		if len(buf) == cap(buf) || i == len(v)-1 {
			w.Write(buf)
			buf = buf[:0]
		}
	}
}

// Eval is the result of an evaluation pass.
type Eval struct {
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
	Samples  int     `json:"samples"`
}

// Evaluate computes the mean cross-entropy loss and the accuracy of theta
// on every sample of ds, in batches of up to batch samples.
func Evaluate(spec models.Spec, theta []float32, ds *data.Dataset, batch int) (Eval, error) {
	n := ds.Len()
	if n == 0 {
		return Eval{}, errors.New("trainer: evaluation on an empty dataset")
	}
	if batch > n {
		batch = n
	}
	net, err := models.NewEvalNet(spec, batch, theta)
	if err != nil {
		return Eval{}, err
	}
	defer net.Close()
	C := spec.Classes
	idx := make([]int, batch)
	y := make([]int, batch)
	logits := make([]float32, 0, batch*C)
	var loss float64
	correct := 0
	for lo := 0; lo < n; lo += batch {
		k := min(batch, n-lo)
		for i := range idx {
			idx[i] = lo + min(i, k-1) // pad a short last batch; padded rows are ignored
		}
		ds.Fill(idx, net.Input(), y)
		if logits, err = net.Forward(logits[:0]); err != nil {
			return Eval{}, err
		}
		for s := 0; s < k; s++ {
			row := logits[s*C : (s+1)*C]
			best, m := 0, math.Inf(-1)
			for c, v := range row {
				if float64(v) > m {
					best, m = c, float64(v)
				}
			}
			z := 0.0
			for _, v := range row {
				z += math.Exp(float64(v) - m)
			}
			loss += m + math.Log(z) - float64(row[y[s]])
			if best == y[s] {
				correct++
			}
		}
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return Eval{}, models.ErrNonFinite
	}
	return Eval{Loss: loss / float64(n), Accuracy: float64(correct) / float64(n), Samples: n}, nil
}
