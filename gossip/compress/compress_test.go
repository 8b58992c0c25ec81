package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/vtrain/vtrain/internal/prng"
)

func randVec(seed uint64, n int, scale float64) []float32 {
	r := prng.New(seed)
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.Norm() * scale)
	}
	return v
}

func mustEnc(t testing.TB, p Params, d int) *Encoder {
	t.Helper()
	e, err := NewEncoder(p, d)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustDec(t testing.TB, d int) *Decoder {
	t.Helper()
	dec, err := NewDecoder(d)
	if err != nil {
		t.Fatal(err)
	}
	return dec
}

func TestExactRoundTrip(t *testing.T) {
	const d = 1000
	v := randVec(1, d, 1)
	e := mustEnc(t, Params{Fraction: 1, Bits: 32, Chunk: 64}, d)
	msg, err := e.Encode(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mustDec(t, d).Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, d)
	s.Dense(got)
	for i := range v {
		if math.Float32bits(got[i]) != math.Float32bits(v[i]) {
			t.Fatalf("value %d: %v != %v", i, got[i], v[i])
		}
		if e.Residual()[i] != 0 {
			t.Fatalf("residual %d = %v after an exact send", i, e.Residual()[i])
		}
	}
}

func TestTopKMatchesSortAndBreaksTiesLow(t *testing.T) {
	const d = 5000
	v := randVec(2, d, 1)
	// Ties: many equal magnitudes, both signs.
	for i := 0; i < d; i += 7 {
		v[i] = 0.5
		if i%2 == 0 {
			v[i] = -0.5
		}
	}
	for _, k := range []int{1, 17, 500, 714, 715, 4999, 5000} {
		e := mustEnc(t, Params{Fraction: 1, Bits: 32, Chunk: 1}, d)
		got, _ := e.topK(v, k, nil)
		ref := make([]int, d)
		for i := range ref {
			ref[i] = i
		}
		sort.SliceStable(ref, func(a, b int) bool { return abs32(v[ref[a]]) > abs32(v[ref[b]]) })
		want := ref[:k]
		sort.Ints(want)
		if len(got) != k {
			t.Fatalf("k=%d: %d indices", k, len(got))
		}
		for j := range want {
			if int(got[j]) != want[j] {
				t.Fatalf("k=%d: index %d is %d, want %d", k, j, got[j], want[j])
			}
		}
	}
}

func TestQuantizationErrorBound(t *testing.T) {
	const d = 4096
	v := randVec(3, d, 0.01)
	for _, bits := range []int{2, 4, 8} {
		p := Params{Fraction: 1, Bits: bits, Chunk: 256}
		e := mustEnc(t, p, d)
		msg, err := e.Encode(v, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := mustDec(t, d).Decode(msg)
		if err != nil {
			t.Fatal(err)
		}
		levels := float64(int(1)<<(bits-1) - 1)
		got := make([]float32, d)
		s.Dense(got)
		for c := 0; c < d; c += 256 {
			m := 0.0
			for _, x := range v[c : c+256] {
				m = math.Max(m, math.Abs(float64(x)))
			}
			for i := c; i < c+256; i++ {
				// Half a quantization step, plus float32 rounding.
				if err := math.Abs(float64(got[i] - v[i])); err > m/levels/2*1.0001+1e-9 {
					t.Fatalf("bits %d: value %d error %g > half step %g", bits, i, err, m/levels/2)
				}
				if r := e.Residual()[i]; math.Abs(float64(r-(v[i]-got[i]))) > 1e-9 {
					t.Fatalf("bits %d: residual %d = %g, want %g", bits, i, r, v[i]-got[i])
				}
			}
		}
	}
}

// TestErrorFeedbackLosesNothing: over many rounds, what was received plus
// what is still in the residual equals what was sent in.
func TestErrorFeedbackLosesNothing(t *testing.T) {
	for _, bits := range []int{1, 2, 4} {
		t.Run(fmt.Sprint(bits, " bits"), func(t *testing.T) { errorFeedback(t, bits) })
	}
}

func errorFeedback(t *testing.T, bits int) {
	const d, rounds = 2000, 50
	e := mustEnc(t, Params{Fraction: 0.01, Bits: bits, Chunk: 64}, d)
	dec := mustDec(t, d)
	in := make([]float64, d)
	got := make([]float32, d)
	for r := 0; r < rounds; r++ {
		delta := randVec(uint64(100+r), d, 1e-3)
		for i, x := range delta {
			in[i] += float64(x)
		}
		msg, err := e.Encode(delta, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := dec.Decode(msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Idx) != 20 {
			t.Fatalf("round %d: %d values sent, want 20", r, len(s.Idx))
		}
		s.AddTo(got, 1)
	}
	var num, den float64
	for i := range in {
		diff := float64(got[i]) + float64(e.Residual()[i]) - in[i]
		num += diff * diff
		den += in[i] * in[i]
	}
	if rel := math.Sqrt(num / den); rel > 1e-5 {
		t.Fatalf("received + residual differs from sent by %.3g relative", rel)
	}
}

// TestSignBit: one bit per value sends each selected coordinate's sign
// times its chunk's mean magnitude, and the indices cost about the
// entropy of choosing them (Rice codes): at 1% of the MLP's parameters,
// under 11 bits per value in all.
func TestSignBit(t *testing.T) {
	const d = 203530
	v := randVec(6, d, 1e-3)
	p := Params{Fraction: 0.01, Bits: 1, Chunk: 256}
	e := mustEnc(t, p, d)
	in := slices.Clone(v)
	msg, err := e.Encode(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mustDec(t, d).Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	k := p.K(d)
	if len(s.Idx) != k {
		t.Fatalf("%d values, want %d", len(s.Idx), k)
	}
	for c := 0; c < k; c += 256 {
		var m float64
		for _, i := range s.Idx[c:min(k, c+256)] {
			m += math.Abs(float64(in[i]))
		}
		m /= float64(min(k, c+256) - c)
		for j, i := range s.Idx[c:min(k, c+256)] {
			want := math.Copysign(m, float64(in[i]))
			if got := float64(s.Val[c+j]); math.Abs(got-want) > 1e-6*m {
				t.Fatalf("value %d: %g, want %g", i, got, want)
			}
		}
	}
	if perValue := float64(8*len(msg)) / float64(k); perValue > 11 {
		t.Fatalf("%d bytes: %.1f bits per value", len(msg), perValue)
	}
	t.Logf("top-1%% 1-bit: %d bytes (%.1f bits per value), %.0f× below dense", len(msg), float64(8*len(msg))/float64(k), float64(4*d)/float64(len(msg)))
}

func TestDeterministicAndCompact(t *testing.T) {
	const d = 203530 // the MLP 784-256-10
	v := randVec(4, d, 1e-3)
	p := Params{Fraction: 0.01, Bits: 4, Chunk: 256}
	a, _ := mustEnc(t, p, d).Encode(v, nil)
	b, _ := mustEnc(t, p, d).Encode(v, nil)
	if !bytes.Equal(a, b) {
		t.Fatal("same input, different bytes")
	}
	dense := 4 * d
	t.Logf("top-1%% 4-bit: %d bytes, dense %d, ratio %.0f", len(a), dense, float64(dense)/float64(len(a)))
	if len(a)*100 > dense {
		t.Fatalf("%d bytes is not 100× smaller than %d", len(a), dense)
	}
}

func frame(t testing.TB, raw []byte) []byte {
	t.Helper()
	z, _ := zstd.NewWriter(nil)
	return append([]byte{codecZstd}, z.EncodeAll(raw, nil)...)
}

// header is a version-1 frame header (uvarint index gaps).
func header(d, k uint64, bits byte, chunk uint64) []byte {
	b := []byte{1}
	b = binary.AppendUvarint(b, d)
	b = binary.AppendUvarint(b, k)
	b = append(b, bits)
	return binary.AppendUvarint(b, chunk)
}

// raw2 is an uncompressed version-2 frame: header, Rice parameter, rest.
func raw2(d, k uint64, bits byte, chunk uint64, rp byte, rest ...byte) []byte {
	h := header(d, k, bits, chunk)
	h[0] = formatVersion
	return append(append([]byte{codecRaw}, append(h, rp)...), rest...)
}

func TestDecodeRejectsMalformed(t *testing.T) {
	const d = 100
	dec := mustDec(t, d)
	good, _ := mustEnc(t, Params{Fraction: 0.1, Bits: 4, Chunk: 4}, d).Encode(randVec(5, d, 1), nil)
	// A 9-byte zstd frame header that declares a huge content size.
	bomb := []byte{codecZstd, 0x28, 0xb5, 0x2f, 0xfd, 0xe4, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0}
	bigRaw := append(header(d, 10, 4, 4), bytes.Repeat([]byte{0}, MaxRaw(d))...)
	cases := map[string][]byte{
		"empty":            nil,
		"codec":            append([]byte{9}, good[1:]...),
		"truncated zstd":   good[:len(good)-3],
		"zstd bomb":        bomb,
		"inflates past":    frame(t, bigRaw),
		"wrong size":       frame(t, append(header(d+1, 1, 32, 1), 0, 0, 0, 0, 0)),
		"k zero":           frame(t, header(d, 0, 32, 1)),
		"k above d":        frame(t, header(d, d+1, 32, 1)),
		"bits":             frame(t, append(header(d, 1, 9, 1), 0, 0, 0, 0, 0, 0)),
		"chunk":            frame(t, append(header(d, 1, 32, 0), 0, 0, 0, 0, 0)),
		"huge k no bytes":  frame(t, header(d, d, 8, 1)),
		"index past end":   frame(t, append(header(d, 1, 32, 1), 100, 0, 0, 0, 0)),
		"indices overrun":  frame(t, append(header(d, 2, 32, 1), 98, 5, 0, 0, 0, 0, 0, 0, 0, 0)),
		"nan value":        frame(t, append(header(d, 1, 32, 1), 3, 0, 0, 0xc0, 0x7f)),
		"inf scale":        frame(t, append(header(d, 1, 4, 1), 3, 0, 0, 0x80, 0x7f, 0)),
		"negative scale":   frame(t, append(header(d, 1, 4, 1), 3, 0, 0, 0x80, 0xbf, 0)),
		"trailing":         frame(t, append(header(d, 1, 32, 1), 3, 0, 0, 0, 0, 9)),
		"truncated vals":   frame(t, append(header(d, 2, 32, 1), 3, 4, 0, 0, 0, 0)),
		"version":          frame(t, append([]byte{7}, header(d, 1, 32, 1)[1:]...)),
		"1 bit, version 1": frame(t, append(header(d, 1, 1, 1), 3, 0, 0, 0x80, 0x3f, 1)),
		// Version 2: a Rice parameter, then the codes.
		"rice parameter":  raw2(d, 1, 32, 1, 28, 0x00, 0, 0, 0, 0),
		"rice past d":     raw2(d, 1, 32, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0),
		"rice index >= d": raw2(d, 1, 32, 1, 7, 0b1100_1000, 0, 0, 0, 0), // gap 100 (q 0, r 100)
		"rice padding":    raw2(d, 1, 32, 1, 2, 0b1000_0000, 0, 0, 0, 0), // code 0b000, then a set padding bit
		"rice truncated":  raw2(d, 2, 32, 1, 0, 0b0000_0000),
		"raw too long":    append([]byte{codecRaw}, bytes.Repeat([]byte{0}, MaxRaw(d)+1)...),
	}
	for name, msg := range cases {
		if _, err := dec.Decode(msg); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := dec.Decode(good); err != nil {
		t.Fatalf("good message rejected: %v", err)
	}
}

func TestEncoderRejectsBadInput(t *testing.T) {
	e := mustEnc(t, Params{Fraction: 0.5, Bits: 8, Chunk: 8}, 4)
	if _, err := e.Encode([]float32{1, float32(math.NaN()), 0, 0}, nil); err == nil {
		t.Error("NaN accepted")
	}
	if _, err := e.Encode([]float32{1}, nil); err == nil {
		t.Error("short delta accepted")
	}
	for _, p := range []Params{{0, 8, 8}, {1.5, 8, 8}, {0.1, 0, 8}, {0.1, 16, 8}, {0.1, 8, 0}} {
		if _, err := NewEncoder(p, 10); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder of a 64-parameter model;
// the corpus in testdata/fuzz/FuzzDecode holds valid messages of every bit
// width. Anything that decodes must respect the declared bounds.
func FuzzDecode(f *testing.F) {
	const d = 64
	for _, p := range []Params{{1, 32, 1}, {0.25, 1, 4}, {0.25, 2, 4}, {0.5, 4, 16}, {0.1, 8, 256}} {
		msg, _ := mustEnc(f, p, d).Encode(randVec(9, d, 1), nil)
		f.Add(msg)
	}
	dec := mustDec(f, d)
	f.Fuzz(func(t *testing.T, msg []byte) {
		s, err := dec.Decode(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if s.D != d || len(s.Idx) != len(s.Val) || len(s.Idx) == 0 || len(s.Idx) > d {
			t.Fatalf("decoded %d values for %d", len(s.Idx), s.D)
		}
		for j := 1; j < len(s.Idx); j++ {
			if s.Idx[j] <= s.Idx[j-1] || s.Idx[j] >= d {
				t.Fatalf("indices not increasing in range: %v", s.Idx)
			}
		}
	})
}

// TestWriteFuzzCorpus regenerates the checked-in seed corpus with -rewrite.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("VTRAIN_REWRITE_CORPUS") == "" {
		t.Skip("set VTRAIN_REWRITE_CORPUS=1 to regenerate testdata/fuzz/FuzzDecode")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	os.MkdirAll(dir, 0o755)
	for i, p := range []Params{{1, 32, 1}, {0.25, 2, 4}, {0.5, 4, 16}, {0.1, 8, 256}, {0.25, 1, 4}} {
		msg, _ := mustEnc(t, p, 64).Encode(randVec(uint64(20+i), 64, 1), nil)
		body := "go test fuzz v1\n[]byte(" + quote(msg) + ")\n"
		os.WriteFile(filepath.Join(dir, "seed"+string(rune('0'+i))), []byte(body), 0o644)
	}
}

func quote(b []byte) string {
	var s bytes.Buffer
	s.WriteByte('"')
	for _, c := range b {
		s.WriteString("\\x")
		s.WriteByte("0123456789abcdef"[c>>4])
		s.WriteByte("0123456789abcdef"[c&15])
	}
	s.WriteByte('"')
	return s.String()
}

// TestCheckRange: an honest encoding passes the range check on every
// block of coordinates, at every quantization; a selection, a value or a
// residual that does not follow from the encoded vector fails on the
// block that holds it, and only there.
func TestCheckRange(t *testing.T) {
	const d, block = 1000, 64
	for _, p := range []Params{{0.05, 1, 16}, {0.05, 2, 8}, {0.1, 8, 256}, {0.02, 32, 1}} {
		t.Run(fmt.Sprintf("%v", p), func(t *testing.T) {
			e, dec := mustEnc(t, p, d), mustDec(t, d)
			if err := e.SetResidual(randVec(7, d, 0.3)); err != nil {
				t.Fatal(err)
			}
			in := slices.Clone(e.Residual())
			delta := randVec(8, d, 1)
			msg, err := e.Encode(delta, nil)
			if err != nil {
				t.Fatal(err)
			}
			out := slices.Clone(e.Residual())
			s, err := dec.Decode(msg)
			if err != nil {
				t.Fatal(err)
			}
			v := make([]float32, d)
			for i := range v {
				v[i] = delta[i] + in[i]
			}
			check := func(v, out []float32) (bad []int) {
				for lo := 0; lo < d; lo += block {
					hi := min(lo+block, d)
					if err := s.CheckRange(lo, v[lo:hi], out[lo:hi]); err != nil {
						bad = append(bad, lo/block)
					}
				}
				return bad
			}
			if bad := check(v, out); bad != nil {
				t.Fatalf("honest encoding fails on blocks %v", bad)
			}
			sent, kept := int(s.Idx[len(s.Idx)/2]), -1
			for i := range d {
				if _, ok := slices.BinarySearch(s.Idx, uint32(i)); !ok && i/block != sent/block {
					kept = i
					break
				}
			}
			for name, tamper := range map[string]func(v, out []float32){
				// A residual that keeps more than the encoding left.
				"residual": func(v, out []float32) { out[kept] += 1 },
				// What was sent is not what v quantizes to.
				"value": func(v, out []float32) { v[sent] = -v[sent] },
				// A coordinate kept back that beats the threshold.
				"selection": func(v, out []float32) { v[kept] = 2*s.Threshold + 1; out[kept] = v[kept] },
			} {
				v2, out2 := slices.Clone(v), slices.Clone(out)
				tamper(v2, out2)
				bad := check(v2, out2)
				i := kept
				if name == "value" {
					i = sent
				}
				if !slices.Equal(bad, []int{i / block}) {
					t.Errorf("%s tampered at %d: failing blocks %v, want [%d]", name, i, bad, i/block)
				}
			}
		})
	}
	// A frame without a threshold cannot be range-checked.
	if err := (&Sparse{D: 4, Threshold: -1}).CheckRange(0, make([]float32, 4), make([]float32, 4)); err == nil {
		t.Error("a frame without a threshold passes the range check")
	}
}
