package trainer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/vtrain/vtrain/internal/safetensors"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
)

// Checkpoint files inside a checkpoint directory.
const (
	ModelFile     = "model.safetensors"     // parameters, PyTorch names and shapes
	OptimizerFile = "optimizer.safetensors" // optimizer buffers, vtrain's flat layout
	ManifestFile  = "trainer.json"          // config, step, hashes of the two files
)

// CheckpointVersion is the manifest format version this build writes.
const CheckpointVersion = 1

// maxCheckpointBytes bounds each file read from a checkpoint (4 GiB).
const maxCheckpointBytes = 4 << 30

// Manifest is trainer.json: what the run was, where it stood, and the
// SHA-256 of every file, so that a corrupt, truncated or swapped file is an
// error rather than a silently different model.
type Manifest struct {
	Version     int               `json:"version"`
	Config      Config            `json:"config"`
	Step        int64             `json:"step"`
	OptSteps    int64             `json:"optimizer_steps"`
	ParamSHA256 string            `json:"param_sha256"` // Hash of the flat vector
	Data        string            `json:"data"`         // dataset fingerprint
	Files       map[string]string `json:"files"`        // name → SHA-256 hex
}

// ModelMetadata is the safetensors __metadata__ of model.safetensors.
func ModelMetadata(spec models.Spec) map[string]string {
	js, _ := json.Marshal(spec)
	return map[string]string{"format": "pt", "vtrain.model": string(js), "vtrain.layout": "torch"}
}

// Save writes a checkpoint of t to dir (created if needed). Files are
// written to temporary names and renamed, manifest last, so a crash leaves
// either the old checkpoint or the new one.
func (t *Trainer) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	if err := t.syncFromDevice(); err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	bufs, optSteps := t.opt.State()
	names := make([]string, 0, len(bufs))
	for n := range bufs {
		names = append(names, n)
	}
	sort.Strings(names)
	var opt []safetensors.Tensor
	for _, n := range names {
		opt = append(opt, safetensors.Tensor{Name: t.opt.Name() + "." + n, Shape: []int{len(bufs[n])}, Data: bufs[n]})
	}
	files := map[string][]byte{
		ModelFile:     safetensors.Encode(TorchTensors(t.cfg.Model, t.params, ""), ModelMetadata(t.cfg.Model)),
		OptimizerFile: safetensors.Encode(opt, map[string]string{"optimizer": t.opt.Name()}),
	}
	ph := ParamHash(t.params)
	m := Manifest{Version: CheckpointVersion, Config: t.cfg, Step: t.step, OptSteps: optSteps,
		ParamSHA256: hex.EncodeToString(ph[:]), Data: t.ds.Fingerprint(), Files: map[string]string{}}
	for name, b := range files {
		sum := sha256.Sum256(b)
		m.Files[name] = hex.EncodeToString(sum[:])
		if err := writeAtomic(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	return writeAtomic(filepath.Join(dir, ManifestFile), append(js, '\n'))
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("trainer: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("trainer: syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	return nil
}

// Checkpoint is a verified checkpoint read from disk.
type Checkpoint struct {
	Manifest Manifest
	Params   []float32 // vtrain's flat layout
	opt      *safetensors.File
}

// ReadCheckpoint reads and verifies dir: the manifest parses strictly, each
// file's SHA-256 matches, the model file holds exactly the tensors the
// model needs with PyTorch's shapes, and the parameters hash to the
// manifest's param_sha256. Every failure wraps [ErrCheckpoint] and names
// the file.
func ReadCheckpoint(dir string) (*Checkpoint, error) {
	mpath := filepath.Join(dir, ManifestFile)
	mb, err := readBounded(mpath, 1<<20)
	if err != nil {
		return nil, err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCheckpoint, mpath, err)
	}
	if m.Version != CheckpointVersion {
		return nil, fmt.Errorf("%w: %s: version %d, this build reads %d", ErrCheckpoint, mpath, m.Version, CheckpointVersion)
	}
	if err := m.Config.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCheckpoint, mpath, err)
	}
	if m.Step < 0 || m.OptSteps < 0 {
		return nil, fmt.Errorf("%w: %s: negative step", ErrCheckpoint, mpath)
	}
	read := func(name string) (*safetensors.File, error) {
		want, ok := m.Files[name]
		if !ok {
			return nil, fmt.Errorf("%w: %s does not list %s", ErrCheckpoint, mpath, name)
		}
		p := filepath.Join(dir, name)
		b, err := readBounded(p, maxCheckpointBytes)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != want {
			return nil, fmt.Errorf("%w: %s: SHA-256 %x does not match the manifest (corrupt or replaced file)", ErrCheckpoint, p, sum)
		}
		f, err := safetensors.Decode(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCheckpoint, p, err)
		}
		return f, nil
	}
	mf, err := read(ModelFile)
	if err != nil {
		return nil, err
	}
	params, err := LoadModel(m.Config.Model, mf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ModelFile), err)
	}
	if h := ParamHash(params); hex.EncodeToString(h[:]) != m.ParamSHA256 {
		return nil, fmt.Errorf("%w: %s: parameters hash to %x, manifest says %s", ErrCheckpoint, dir, h, m.ParamSHA256)
	}
	of, err := read(OptimizerFile)
	if err != nil {
		return nil, err
	}
	return &Checkpoint{Manifest: m, Params: params, opt: of}, nil
}

// LoadModel reads a model's flat parameter vector from a safetensors file
// with PyTorch names and shapes; extra tensors are an error, so that a file
// for another model is not half-loaded.
func LoadModel(spec models.Spec, f *safetensors.File) ([]float32, error) {
	if len(f.Tensors) != len(spec.Layout()) {
		return nil, fmt.Errorf("%w: %d tensors, %s has %d", ErrCheckpoint, len(f.Tensors), spec, len(spec.Layout()))
	}
	return FromTorchTensors(spec, f, "")
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCheckpoint, path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s exceeds %d bytes", ErrCheckpoint, path, limit)
	}
	return b, nil
}

// Resume rebuilds a trainer from a verified checkpoint: same parameters,
// optimizer buffers and step, so that continuing it gives bit for bit the
// run that was never interrupted. The training data must be the data the
// checkpoint was made with (checked by fingerprint).
func Resume(ck *Checkpoint, train *data.Dataset, opts ...Option) (*Trainer, error) {
	if fp := train.Fingerprint(); fp != ck.Manifest.Data {
		return nil, fmt.Errorf("%w: checkpoint was trained on data %s, this is %s (%s)", ErrCheckpoint, ck.Manifest.Data, fp, train.Name)
	}
	t, err := newTrainer(ck.Manifest.Config, train, append([]float32(nil), ck.Params...), opts...)
	if err != nil {
		return nil, err
	}
	bufs := map[string][]float32{}
	prefix := t.opt.Name() + "."
	for _, ts := range ck.opt.Tensors {
		if len(ts.Name) <= len(prefix) || ts.Name[:len(prefix)] != prefix {
			t.Close()
			return nil, fmt.Errorf("%w: optimizer tensor %q is not for %s", ErrCheckpoint, ts.Name, t.opt.Name())
		}
		bufs[ts.Name[len(prefix):]] = ts.Data
	}
	if err := t.SetSnapshot(Snapshot{Step: ck.Manifest.Step, Params: ck.Params, Opt: bufs, OptSteps: ck.Manifest.OptSteps}); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}
