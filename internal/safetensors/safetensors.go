// Package safetensors reads and writes the safetensors format
// (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON header mapping tensor names to dtype,
// shape and data offsets (plus an optional "__metadata__" map of strings),
// then the raw little-endian tensor bytes. Files written here load with the
// Python safetensors package and torch.
//
// The reader trusts nothing: it bounds the header size, checks every dtype,
// shape and offset, requires the tensors to tile the data section exactly,
// and never allocates more than the file's own size.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// ErrFormat is wrapped by every error about a malformed file.
var ErrFormat = errors.New("safetensors: malformed file")

// MaxHeader bounds the JSON header (100 MB, as the reference implementation).
const MaxHeader = 100 << 20

// Tensor is one named float32 tensor.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// File is a decoded safetensors file of float32 tensors, in the order of
// their data offsets.
type File struct {
	Tensors  []Tensor
	Metadata map[string]string
}

// Get returns the tensor with the given name.
func (f *File) Get(name string) (Tensor, bool) {
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

type entry struct {
	Dtype       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// Encode serialises tensors (written in the given order) and metadata.
// It panics if a tensor's data does not match its shape, a caller's
// mistake.
func Encode(tensors []Tensor, metadata map[string]string) []byte {
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for _, t := range tensors {
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		if n != len(t.Data) {
			panic(fmt.Sprintf("safetensors: %s: shape %v holds %d values, data has %d", t.Name, t.Shape, n, len(t.Data)))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = entry{Dtype: "F32", Shape: shape, DataOffsets: [2]int64{off, off + 4*int64(n)}}
		off += 4 * int64(n)
	}
	hj, err := json.Marshal(header)
	if err != nil {
		panic(err) // only strings, ints and slices: cannot fail
	}
	for len(hj)%8 != 0 {
		hj = append(hj, ' ')
	}
	out := make([]byte, 8, 8+len(hj)+int(off))
	binary.LittleEndian.PutUint64(out, uint64(len(hj)))
	out = append(out, hj...)
	for _, t := range tensors {
		for _, v := range t.Data {
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
		}
	}
	return out
}

// Decode parses a whole safetensors file held in memory.
func Decode(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the 8-byte header length", ErrFormat, len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > MaxHeader || n > uint64(len(b)-8) {
		return nil, fmt.Errorf("%w: header length %d exceeds the file (%d bytes) or the %d-byte limit", ErrFormat, n, len(b), MaxHeader)
	}
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(b[8:8+n], &raw); err != nil {
		return nil, fmt.Errorf("%w: header is not a JSON object: %v", ErrFormat, err)
	}
	data := b[8+n:]
	f := &File{}
	type placed struct {
		name string
		e    entry
	}
	var ps []placed
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &f.Metadata); err != nil {
				return nil, fmt.Errorf("%w: __metadata__ must map strings to strings: %v", ErrFormat, err)
			}
			continue
		}
		var e entry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
		}
		if e.Dtype != "F32" {
			return nil, fmt.Errorf("%w: tensor %q has dtype %q; vtrain reads F32 only", ErrFormat, name, e.Dtype)
		}
		count := int64(1)
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && count > math.MaxInt32/int64(d)) {
				return nil, fmt.Errorf("%w: tensor %q has shape %v", ErrFormat, name, e.Shape)
			}
			count *= int64(d)
		}
		if e.DataOffsets[0] < 0 || e.DataOffsets[1] < e.DataOffsets[0] || e.DataOffsets[1]-e.DataOffsets[0] != 4*count {
			return nil, fmt.Errorf("%w: tensor %q: offsets %v do not hold shape %v of F32", ErrFormat, name, e.DataOffsets, e.Shape)
		}
		ps = append(ps, placed{name, e})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].e.DataOffsets[0] < ps[j].e.DataOffsets[0] })
	var at int64
	for _, p := range ps {
		if p.e.DataOffsets[0] != at {
			return nil, fmt.Errorf("%w: tensor %q starts at %d, expected %d (tensors must tile the data)", ErrFormat, p.name, p.e.DataOffsets[0], at)
		}
		at = p.e.DataOffsets[1]
	}
	if at != int64(len(data)) {
		return nil, fmt.Errorf("%w: tensors cover %d bytes but the data section has %d (truncated or padded file)", ErrFormat, at, len(data))
	}
	for _, p := range ps {
		src := data[p.e.DataOffsets[0]:p.e.DataOffsets[1]]
		vals := make([]float32, len(src)/4)
		for i := range vals {
			vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
		f.Tensors = append(f.Tensors, Tensor{Name: p.name, Shape: p.e.Shape, Data: vals})
	}
	return f, nil
}

// ReadFile reads and decodes a file, bounding the read by maxBytes.
func ReadFile(path string, maxBytes int64) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if st.Size() > maxBytes {
		return nil, fmt.Errorf("%s: %w: %d bytes exceeds the %d-byte limit", path, ErrFormat, st.Size(), maxBytes)
	}
	b, err := io.ReadAll(io.LimitReader(fh, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	f, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}
