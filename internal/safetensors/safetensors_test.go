package safetensors

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"
)

func sample() []Tensor {
	return []Tensor{
		{Name: "fc1.weight", Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, float32(math.Inf(1))}},
		{Name: "fc1.bias", Shape: []int{2}, Data: []float32{-1, 0.5}},
		{Name: "scalar", Shape: []int{}, Data: []float32{7}},
	}
}

func TestRoundTrip(t *testing.T) {
	b := Encode(sample(), map[string]string{"format": "pt"})
	if n := binary.LittleEndian.Uint64(b); (8+n)%8 != 0 {
		t.Fatalf("header of %d bytes leaves data unaligned", n)
	}
	f, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["format"] != "pt" || len(f.Tensors) != 3 {
		t.Fatalf("decoded %+v", f)
	}
	for _, want := range sample() {
		got, ok := f.Get(want.Name)
		if !ok || !slices.Equal(got.Shape, want.Shape) || !slices.Equal(got.Data, want.Data) {
			t.Fatalf("%s: got %+v", want.Name, got)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Encode(sample(), nil)
	hdr := func(js string, data int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
		return append(append(b, js...), make([]byte, data)...)
	}
	cases := map[string][]byte{
		"empty":            nil,
		"short":            good[:5],
		"header too long":  binary.LittleEndian.AppendUint64(nil, 1<<40),
		"truncated data":   good[:len(good)-1],
		"trailing data":    append(append([]byte(nil), good...), 0, 0, 0, 0),
		"not json":         hdr("{nope", 0),
		"wrong dtype":      hdr(`{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}`, 2),
		"shape mismatch":   hdr(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4),
		"overlap":          hdr(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4),
		"hole":             hdr(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8),
		"negative dim":     hdr(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4),
		"huge shape":       hdr(`{"a":{"dtype":"F32","shape":[65536,65536,65536],"data_offsets":[0,4]}}`, 4),
		"bad metadata":     hdr(`{"__metadata__":{"a":1}}`, 0),
		"offsets reversed": hdr(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, 4),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(sample(), map[string]string{"k": "v"}))
	f.Add(Encode(nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Decode(b)
		if err != nil {
			return
		}
		total := 0
		for _, ts := range file.Tensors {
			n := 1
			for _, d := range ts.Shape {
				n *= d
			}
			if n != len(ts.Data) {
				t.Fatalf("%s: shape %v with %d values", ts.Name, ts.Shape, len(ts.Data))
			}
			total += 4 * n
		}
		if total > len(b) {
			t.Fatalf("decoded %d bytes of tensors from a %d-byte file", total, len(b))
		}
	})
}
