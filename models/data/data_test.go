package data

import (
	"bytes"
	"compress/gzip"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestReadIDX(t *testing.T) {
	payload := make([]byte, 2*3*4)
	for i := range payload {
		payload[i] = byte(i)
	}
	raw := EncodeIDX([]int{2, 3, 4}, payload)
	for name, b := range map[string][]byte{"plain": raw, "gzip": gz(raw)} {
		idx, err := ReadIDX(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(idx.Dims, []int{2, 3, 4}) || !bytes.Equal(idx.Data, payload) {
			t.Fatalf("%s: got %v %v", name, idx.Dims, idx.Data)
		}
	}
}

func TestReadIDXRejectsBadFiles(t *testing.T) {
	good := EncodeIDX([]int{2, 3}, make([]byte, 6))
	huge := EncodeIDX([]int{1 << 20, 1 << 20}, nil)
	badGzip := gz(good)
	badGzip[len(badGzip)-5] ^= 0xff // CRC
	cases := map[string][]byte{
		"empty":          {},
		"short header":   good[:3],
		"bad magic":      append([]byte{1, 0}, good[2:]...),
		"float type":     append([]byte{0, 0, 0x0d}, good[3:]...),
		"zero dims":      {0, 0, 8, 0},
		"five dims":      {0, 0, 8, 5, 0, 0, 0, 1},
		"truncated dims": good[:6],
		"truncated data": good[:len(good)-1],
		"trailing data":  append(append([]byte(nil), good...), 9),
		"zero size dim":  EncodeIDX([]int{0, 3}, nil),
		"huge declared":  huge,
		"truncated gzip": gz(good)[:20],
		"bad gzip crc":   badGzip,
	}
	for name, b := range cases {
		_, err := ReadIDX(bytes.NewReader(b))
		if !errors.Is(err, ErrIDX) {
			t.Errorf("%s: error %v does not wrap ErrIDX", name, err)
		}
	}
}

func FuzzReadIDX(f *testing.F) {
	f.Add(EncodeIDX([]int{2, 3}, make([]byte, 6)))
	f.Add(gz(EncodeIDX([]int{1, 2, 2}, []byte{1, 2, 3, 4})))
	f.Add([]byte{0, 0, 8, 1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := ReadIDX(bytes.NewReader(b))
		if err != nil {
			return
		}
		n := 1
		for _, d := range idx.Dims {
			n *= d
		}
		if n != len(idx.Data) {
			t.Fatalf("dims %v but %d bytes", idx.Dims, len(idx.Data))
		}
	})
}

func writeSet(t *testing.T, dir string, n int, mutate func(name string, b []byte) []byte) {
	t.Helper()
	imgs := make([]byte, n*28*28)
	lbls := make([]byte, n)
	for i := range lbls {
		lbls[i] = byte(i % 10)
	}
	files := map[string][]byte{
		"train-images-idx3-ubyte.gz": gz(EncodeIDX([]int{n, 28, 28}, imgs)),
		"train-labels-idx1-ubyte.gz": gz(EncodeIDX([]int{n}, lbls)),
		"t10k-images-idx3-ubyte":     EncodeIDX([]int{n, 28, 28}, imgs),
		"t10k-labels-idx1-ubyte":     EncodeIDX([]int{n}, lbls),
	}
	for name, b := range files {
		if mutate != nil {
			b = mutate(name, b)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadFashionMNIST(t *testing.T) {
	dir := t.TempDir()
	writeSet(t, dir, 20, nil)
	set, err := LoadFashionMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if set.Train.Len() != 20 || set.Test.Len() != 20 || set.Train.Features() != 784 {
		t.Fatalf("loaded %d/%d samples of %d features", set.Train.Len(), set.Test.Len(), set.Train.Features())
	}
	for name, mut := range map[string]func(string, []byte) []byte{
		"truncated images": func(n string, b []byte) []byte {
			if n == "t10k-images-idx3-ubyte" {
				return b[:len(b)-100]
			}
			return b
		},
		"label out of range": func(n string, b []byte) []byte {
			if n == "t10k-labels-idx1-ubyte" {
				b[len(b)-1] = 10
			}
			return b
		},
		"count mismatch": func(n string, b []byte) []byte {
			if n == "t10k-labels-idx1-ubyte" {
				return EncodeIDX([]int{19}, make([]byte, 19))
			}
			return b
		},
	} {
		d := t.TempDir()
		writeSet(t, d, 20, mut)
		if _, err := LoadFashionMNIST(d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := LoadFashionMNIST(t.TempDir()); err == nil {
		t.Error("empty directory accepted")
	}
}

func TestShardsPartition(t *testing.T) {
	const n = 1003
	seen := make([]int, n)
	for p := 0; p < 7; p++ {
		s, err := Shard(n, 7, p, 42)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) < n/7 || len(s) > n/7+1 {
			t.Fatalf("shard %d has %d samples", p, len(s))
		}
		again, _ := Shard(n, 7, p, 42)
		if !slices.Equal(s, again) {
			t.Fatal("shard not deterministic")
		}
		for _, i := range s {
			seen[i]++
		}
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("sample %d in %d shards", i, c)
		}
	}
	for _, bad := range [][3]int{{10, 0, 0}, {10, 3, 3}, {10, 3, -1}, {2, 3, 0}} {
		if _, err := Shard(bad[0], bad[1], bad[2], 1); err == nil {
			t.Errorf("Shard%v accepted", bad)
		}
	}
}

func TestSamplerReplay(t *testing.T) {
	shard := make([]int, 100)
	for i := range shard {
		shard[i] = 3 * i
	}
	a, _ := NewSampler(shard, 8, 5)
	var seq [][]int
	for s := int64(0); s < 30; s++ {
		seq = append(seq, a.BatchAt(s, nil))
	}
	// A fresh sampler asked out of order gives the same batches.
	b, _ := NewSampler(shard, 8, 5)
	for _, s := range []int64{29, 0, 13, 12, 25} {
		if got := b.BatchAt(s, nil); !slices.Equal(got, seq[s]) {
			t.Fatalf("step %d: %v, first pass %v", s, got, seq[s])
		}
	}
	// One epoch (12 steps of 8) uses 96 distinct samples of the shard.
	used := map[int]bool{}
	for s := 0; s < 12; s++ {
		for _, i := range seq[s] {
			if i%3 != 0 || used[i] {
				t.Fatalf("sample %d repeated or not in shard", i)
			}
			used[i] = true
		}
	}
	if slices.Equal(seq[0], seq[12]) {
		t.Fatal("epochs 0 and 1 start with the same batch")
	}
	if _, err := NewSampler(shard, 0, 1); err == nil {
		t.Error("batch 0 accepted")
	}
	if _, err := NewSampler(shard, 101, 1); err == nil {
		t.Error("batch larger than shard accepted")
	}
}

func TestSyntheticDeterministicAndBalanced(t *testing.T) {
	a, b := Synthetic(3, 500, 100), Synthetic(3, 500, 100)
	if a.Train.Fingerprint() != b.Train.Fingerprint() {
		t.Fatal("synthetic data not deterministic")
	}
	if a.Train.Fingerprint() == Synthetic(4, 500, 100).Train.Fingerprint() {
		t.Fatal("seed ignored")
	}
	counts := make([]int, 10)
	for _, l := range a.Train.Labels {
		counts[l]++
	}
	for c, n := range counts {
		if n < 25 {
			t.Fatalf("class %d has %d of 500 samples", c, n)
		}
	}
}

func TestLoadFallback(t *testing.T) {
	old := DefaultDirs
	DefaultDirs = []string{t.TempDir()}
	defer func() { DefaultDirs = old }()
	set, fell, err := Load("", 1)
	if err != nil || !fell || set.Source != "synthetic" {
		t.Fatalf("fallback: %v %v %v", set, fell, err)
	}
	if _, _, err := Load(filepath.Join(t.TempDir(), "nope"), 1); err == nil {
		t.Fatal("missing directory accepted")
	}
}

// TestPixelValue pins the lookup table to the arithmetic it replaces.
func TestPixelValue(t *testing.T) {
	for p := 0; p < 256; p++ {
		if got, want := pixelValue[p], float32(p)*(1.0/255.0); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("pixelValue[%d] = %v, want %v", p, got, want)
		}
	}
}

// TestPixelsVectorMatchesTable checks the pixel conversion, vector loop
// and scalar tail, against the table bit for bit, for every byte value at
// every lane and for lengths around the vector width.
func TestPixelsVectorMatchesTable(t *testing.T) {
	for n := 0; n <= 300; n++ {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i*37 + n)
		}
		dst := make([]float32, n+1)
		dst[n] = -1 // a guard past the end
		pixels(dst[:n], src)
		for i, p := range src {
			if math.Float32bits(dst[i]) != math.Float32bits(pixelValue[p]) {
				t.Fatalf("n=%d: pixel %d (%d) = %v, want %v", n, i, p, dst[i], pixelValue[p])
			}
		}
		if dst[n] != -1 {
			t.Fatalf("n=%d: wrote past the end", n)
		}
	}
}
