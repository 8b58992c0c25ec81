// Package compress turns a model update (a dense float32 vector of the
// model's size D) into the few kilobytes a peer gossips, and back.
//
// Encoding: the sender adds its error-feedback residual to the update,
// keeps the k = ⌈fraction·D⌉ coordinates of largest magnitude (ties to the
// lower index; a radix select, O(D), no sort), quantizes their values with
// one float32 scale per chunk of values (1 bit: the sign, the scale the
// chunk's mean magnitude; 2..8 bits: symmetric levels up to the chunk's
// largest magnitude), writes the indices as Golomb-Rice coded gaps, and
// zstd-compresses the frame when that makes it smaller. Whatever the message does
// not carry (the unselected coordinates, the rounding error) stays in the
// residual and is sent in later rounds, so nothing is lost, only delayed.
// With fraction 1 and 32 bits the frame carries the exact dense vector.
//
// Decoding trusts nothing: the receiver says how large the model is, and a
// frame that declares another size, more values than that, unsorted or
// out-of-range indices, non-finite scales, or a zstd frame that would
// inflate past the bound the model size implies, is an error wrapping
// [ErrMalformed]. The decoder never allocates more than that bound.
//
// Every step is deterministic: the same input gives the same bytes, which
// is what lets peers hash, sign and re-verify updates.
package compress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Wire format (inside the codec): version byte, then
//
//	uvarint D, uvarint k, byte bits, uvarint chunk,
//	version 3: float32 τ, the smallest magnitude selected (before
//	    quantization): every coordinate sent had |v| ≥ τ, every one kept
//	    back |v| ≤ τ, which lets a checker test the selection on any
//	    sample of coordinates (see [Sparse.Threshold]);
//	versions 2 and 3: byte r, then k Golomb-Rice codes of the index gaps
//	    (first index, then index−previous−1): gap>>r one-bits, a zero-bit,
//	    the r low bits; little-endian bit order, padded to a byte;
//	version 1 (still decoded): k uvarint index gaps;
//	⌈k/chunk⌉ float32 scales (bits < 32 only),
//	values: k·bits bits, little-endian bit order (bits < 32; 1 bit: set
//	        for +scale, clear for −scale), or k float32 (bits = 32).
const formatVersion = 3

// Codec byte in front of the frame: zstd, or none (when zstd would not
// make the frame smaller, as for Rice codes and sign bits).
const (
	codecRaw  = 0
	codecZstd = 1
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("compress: malformed update")

// Params are the compression settings of a run.
type Params struct {
	Fraction float64 // share of coordinates sent, in (0, 1]
	Bits     int     // bits per value: 1 (the sign), 2..8, or 32 for exact float32
	Chunk    int     // values per quantization scale, 1..65536
}

// Validate checks the settings.
func (p Params) Validate() error {
	switch {
	case !(p.Fraction > 0 && p.Fraction <= 1):
		return fmt.Errorf("compress: fraction %v must be in (0, 1]", p.Fraction)
	case p.Bits != 32 && (p.Bits < 1 || p.Bits > 8):
		return fmt.Errorf("compress: bits %d must be 1..8 or 32", p.Bits)
	case p.Chunk < 1 || p.Chunk > 1<<16:
		return fmt.Errorf("compress: chunk %d must be 1..65536", p.Chunk)
	}
	return nil
}

// K returns how many coordinates of a size-d vector are sent.
func (p Params) K(d int) int {
	k := int(math.Ceil(p.Fraction * float64(d)))
	return min(max(k, 1), d)
}

// MaxRaw bounds the size of a decoded frame for a model of d parameters:
// what the decoder may allocate. Per value at most 4 index bytes (a varint
// below 2^28), 4 value bytes, and 4 scale bytes (chunk 1); plus the header.
func MaxRaw(d int) int { return 32 + 12*d }

// Encoder compresses successive updates of one sender, keeping its
// error-feedback residual. It is not safe for concurrent use.
type Encoder struct {
	p        Params
	d        int
	residual []float32
	v        []float32
	idx      []uint32
	raw      []byte
	hist     [1 << 16]uint32
}

// NewEncoder returns an encoder for vectors of size d.
func NewEncoder(p Params, d int) (*Encoder, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if d < 1 || d > 1<<28 {
		return nil, fmt.Errorf("compress: vector size %d out of range", d)
	}
	return &Encoder{p: p, d: d, residual: make([]float32, d), v: make([]float32, d)}, nil
}

// Residual returns the error-feedback residual (a view).
func (e *Encoder) Residual() []float32 { return e.residual }

// SetResidual replaces the residual (for example after a restart from a
// checkpoint); len(r) must be the vector size.
func (e *Encoder) SetResidual(r []float32) error {
	if len(r) != e.d {
		return fmt.Errorf("compress: residual of %d values for size %d", len(r), e.d)
	}
	copy(e.residual, r)
	return nil
}

// Encode compresses delta plus the residual, appends the message to dst,
// and updates the residual to what the message did not carry. delta must
// have the encoder's size and be finite.
func (e *Encoder) Encode(delta []float32, dst []byte) ([]byte, error) {
	if len(delta) != e.d {
		return dst, fmt.Errorf("compress: delta of %d values for size %d", len(delta), e.d)
	}
	for i, x := range delta {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return dst, fmt.Errorf("compress: delta[%d] = %v is not finite", i, x)
		}
		e.v[i] = x + e.residual[i]
	}
	k := e.p.K(e.d)
	var thr float32
	e.idx, thr = e.topK(e.v, k, e.idx[:0])
	raw := e.raw[:0]
	raw = append(raw, formatVersion)
	raw = binary.AppendUvarint(raw, uint64(e.d))
	raw = binary.AppendUvarint(raw, uint64(k))
	raw = append(raw, byte(e.p.Bits))
	raw = binary.AppendUvarint(raw, uint64(e.p.Chunk))
	raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(thr))
	raw = appendRice(raw, e.idx)
	// The residual keeps everything; the sent coordinates are then reduced
	// by exactly what the receiver will reconstruct.
	copy(e.residual, e.v)
	if e.p.Bits == 32 {
		for _, i := range e.idx {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(e.v[i]))
			e.residual[i] = 0
		}
	} else if e.p.Bits == 1 {
		// The sign, times the chunk's mean magnitude: the scale that
		// leaves the least squared error in the residual.
		nChunks := (k + e.p.Chunk - 1) / e.p.Chunk
		scales := make([]float32, nChunks)
		for c := range scales {
			var m float64
			sel := e.idx[c*e.p.Chunk : min(k, (c+1)*e.p.Chunk)]
			for _, i := range sel {
				m += float64(abs32(e.v[i]))
			}
			scales[c] = float32(m / float64(len(sel)))
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(scales[c]))
		}
		var bw bitWriter
		bw.buf = raw
		for j, i := range e.idx {
			s := scales[j/e.p.Chunk]
			if e.v[i] >= 0 {
				bw.write(1, 1)
				e.residual[i] = e.v[i] - s
			} else {
				bw.write(0, 1)
				e.residual[i] = e.v[i] + s
			}
		}
		raw = bw.flush()
	} else {
		levels := float32(int(1)<<(e.p.Bits-1) - 1)
		nChunks := (k + e.p.Chunk - 1) / e.p.Chunk
		scales := make([]float32, nChunks)
		for c := range scales {
			m := float32(0)
			for _, i := range e.idx[c*e.p.Chunk : min(k, (c+1)*e.p.Chunk)] {
				m = max(m, abs32(e.v[i]))
			}
			scales[c] = m / levels
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(scales[c]))
		}
		var bw bitWriter
		bw.buf = raw
		for j, i := range e.idx {
			s := scales[j/e.p.Chunk]
			q := float32(0)
			if s > 0 {
				q = roundHalfAway(e.v[i] / s)
				q = min(max(q, -levels), levels)
			}
			bw.write(uint32(q+levels), e.p.Bits)
			// The explicit conversion keeps the product rounded on its
			// own (the Go spec forbids fusing it into the subtraction, as
			// arm64's FMSUB would): the checker recomputes it apart.
			e.residual[i] = e.v[i] - float32(q*s)
		}
		raw = bw.flush()
	}
	e.raw = raw
	n := len(dst)
	dst = encoder().EncodeAll(raw, append(dst, codecZstd))
	if len(dst)-n-1 >= len(raw) {
		dst = append(append(dst[:n], codecRaw), raw...)
	}
	return dst, nil
}

// appendRice appends the Golomb-Rice codes of the gaps between ascending
// indices, with the parameter that makes them shortest, written first.
func appendRice(raw []byte, idx []uint32) []byte {
	best, bestLen := 0, -1
	for r := range 28 {
		n, prev := 0, -1
		for _, i := range idx {
			n += (int(i)-prev-1)>>r + 1 + r
			prev = int(i)
		}
		if bestLen < 0 || n < bestLen {
			best, bestLen = r, n
		}
	}
	raw = append(raw, byte(best))
	bw := bitWriter{buf: raw}
	prev := -1
	for _, i := range idx {
		g := uint32(int(i) - prev - 1)
		for q := g >> best; q > 0; q-- {
			bw.write(1, 1)
		}
		bw.write(0, 1)
		if best > 0 {
			bw.write(g&(1<<best-1), best)
		}
		prev = int(i)
	}
	return bw.flush()
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

func roundHalfAway(x float32) float32 { return float32(math.Round(float64(x))) }

// topK appends to dst the indices (ascending) of the k largest |v|, ties to
// the lower index, and returns the k-th largest magnitude. A two-pass
// radix select on the magnitude's bit pattern (which orders non-negative
// floats) finds the threshold without sorting.
func (e *Encoder) topK(v []float32, k int, dst []uint32) ([]uint32, float32) {
	mag := func(x float32) uint32 { return math.Float32bits(x) &^ (1 << 31) }
	// Pass 1: high 16 bits.
	h := &e.hist
	clear(h[:])
	for _, x := range v {
		h[mag(x)>>16]++
	}
	need := uint32(k)
	hi := 0
	for b := len(h) - 1; b >= 0; b-- {
		if h[b] >= need {
			hi = b
			break
		}
		need -= h[b]
	}
	// Pass 2: low 16 bits within the high bucket.
	clear(h[:])
	for _, x := range v {
		if m := mag(x); int(m>>16) == hi {
			h[m&0xffff]++
		}
	}
	lo := 0
	for b := len(h) - 1; b >= 0; b-- {
		if h[b] >= need {
			lo = b
			break
		}
		need -= h[b]
	}
	thr := uint32(hi)<<16 | uint32(lo)
	// Everything above the threshold, and the first `need` equal to it.
	for i, x := range v {
		m := mag(x)
		if m > thr {
			dst = append(dst, uint32(i))
		} else if m == thr && need > 0 {
			dst = append(dst, uint32(i))
			need--
		}
	}
	return dst, math.Float32frombits(thr)
}

type bitWriter struct {
	buf  []byte
	acc  uint64
	nacc int
}

func (w *bitWriter) write(v uint32, bits int) {
	w.acc |= uint64(v) << w.nacc
	w.nacc += bits
	for w.nacc >= 8 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

func (w *bitWriter) flush() []byte {
	if w.nacc > 0 {
		w.buf = append(w.buf, byte(w.acc))
	}
	w.acc, w.nacc = 0, 0
	return w.buf
}

var (
	encOnce sync.Once
	enc     *zstd.Encoder
)

func encoder() *zstd.Encoder {
	encOnce.Do(func() {
		// Concurrency 1: EncodeAll is then deterministic and cheap to set up.
		enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	})
	return enc
}

// Sparse is a decoded update: the sent coordinates and their values.
type Sparse struct {
	D   int
	Idx []uint32 // ascending, < D
	Val []float32
	// Threshold is the encoder's τ (format 3): every sent coordinate had
	// magnitude ≥ τ before quantization, every other one ≤ τ. −1 when the
	// frame does not say (formats 1 and 2).
	Threshold float32
	// Bits and Chunk are the frame's quantization, Scales its per-chunk
	// scales (none for 32 bits): what re-quantizing a value needs.
	Bits, Chunk int
	Scales      []float32
}

// AddTo adds the update into dst (len D) scaled by w: dst[i] += w·val.
func (s *Sparse) AddTo(dst []float32, w float32) {
	for j, i := range s.Idx {
		dst[i] += float32(w * s.Val[j]) // rounded apart, never fused: the same sum on every platform
	}
}

// Dense writes the update into dst (len D), zeros elsewhere.
func (s *Sparse) Dense(dst []float32) {
	clear(dst)
	for j, i := range s.Idx {
		dst[i] = s.Val[j]
	}
}

// Decoder decodes updates for a model of a fixed size. It is safe for
// concurrent use.
type Decoder struct {
	d      int
	maxRaw int
	zd     *zstd.Decoder
	bufs   sync.Pool // *[]byte with capacity maxRaw: DecodeAll's bound
}

// NewDecoder returns a decoder for vectors of size d.
func NewDecoder(d int) (*Decoder, error) {
	if d < 1 || d > 1<<28 {
		return nil, fmt.Errorf("compress: vector size %d out of range", d)
	}
	maxRaw := MaxRaw(d)
	zd, err := zstd.NewReader(nil,
		zstd.WithDecoderMaxMemory(uint64(maxRaw)),
		zstd.WithDecoderMaxWindow(uint64(max(maxRaw, zstd.MinWindowSize))),
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderConcurrency(2))
	if err != nil {
		return nil, err
	}
	dec := &Decoder{d: d, maxRaw: maxRaw, zd: zd}
	dec.bufs.New = func() any { b := make([]byte, 0, maxRaw); return &b }
	return dec, nil
}

// Close releases the decoder.
func (dec *Decoder) Close() { dec.zd.Close() }

// D is the model size the decoder decodes for.
func (dec *Decoder) D() int { return dec.d }

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// Decode parses a message produced by [Encoder.Encode].
func (dec *Decoder) Decode(msg []byte) (*Sparse, error) {
	if len(msg) < 2 {
		return nil, malformed("%d bytes", len(msg))
	}
	var raw []byte
	switch msg[0] {
	case codecZstd:
		buf := dec.bufs.Get().(*[]byte)
		defer dec.bufs.Put(buf)
		var err error
		if raw, err = dec.zd.DecodeAll(msg[1:], (*buf)[:0]); err != nil {
			return nil, malformed("zstd: %v", err)
		}
	case codecRaw:
		if len(msg)-1 > dec.maxRaw {
			return nil, malformed("%d bytes", len(msg))
		}
		raw = msg[1:]
	default:
		return nil, malformed("unknown codec %d", msg[0])
	}
	r := reader{b: raw}
	version := r.byte()
	if version < 1 || version > formatVersion {
		return nil, malformed("format version %d", version)
	}
	d, k, bits, chunk := r.uvarint(), r.uvarint(), int(r.byte()), r.uvarint()
	if r.err != nil {
		return nil, malformed("header: %v", r.err)
	}
	if d != uint64(dec.d) {
		return nil, malformed("update is for %d parameters, the model has %d", d, dec.d)
	}
	if k < 1 || k > d {
		return nil, malformed("%d values for %d parameters", k, d)
	}
	if bits != 32 && (bits < 1 || bits > 8) || bits == 1 && version == 1 {
		return nil, malformed("%d bits per value", bits)
	}
	if chunk < 1 || chunk > 1<<16 {
		return nil, malformed("chunk of %d", chunk)
	}
	thr := float32(-1)
	if version >= 3 {
		thr = math.Float32frombits(r.uint32())
		if r.err != nil || !(thr >= 0) || math.IsInf(float64(thr), 0) {
			return nil, malformed("threshold %v", thr)
		}
	}
	var idx []uint32
	var err error
	if version == 1 {
		idx, err = varintGaps(&r, k, d, bits)
	} else {
		idx, err = riceGaps(&r, k, d, bits)
	}
	if err != nil {
		return nil, err
	}
	s := &Sparse{D: int(d), Idx: idx, Val: make([]float32, k), Threshold: thr, Bits: bits, Chunk: int(chunk)}
	if bits == 32 {
		for j := range s.Val {
			s.Val[j] = math.Float32frombits(r.uint32())
		}
	} else {
		levels := float32(int(1)<<(bits-1) - 1)
		if bits == 1 {
			levels = 0
		}
		scales := make([]float32, (k+chunk-1)/chunk)
		for c := range scales {
			scales[c] = math.Float32frombits(r.uint32())
			if !(scales[c] >= 0) || math.IsInf(float64(scales[c]), 0) {
				return nil, malformed("scale %d is %v", c, scales[c])
			}
		}
		s.Scales = scales
		br := bitReader{r: &r}
		for j := range s.Val {
			q := float32(br.read(bits)) - levels
			if bits == 1 {
				q = 2*q - 1 // 0: −1, 1: +1
			}
			if q > levels && bits > 1 {
				return nil, malformed("value %d out of range", j)
			}
			s.Val[j] = q * scales[uint64(j)/chunk]
		}
	}
	if r.err != nil {
		return nil, malformed("truncated: %v", r.err)
	}
	if r.left() != 0 {
		return nil, malformed("%d trailing bytes", r.left())
	}
	for j, x := range s.Val {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, malformed("value %d is %v", j, x)
		}
	}
	return s, nil
}

type reader struct {
	b   []byte
	off int
	err error
}

var errShort = errors.New("unexpected end of frame")

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) byte() byte {
	if r.off >= len(r.b) {
		r.err = errShort
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		if r.err == nil {
			r.err = errors.New("bad varint")
		}
		return 0
	}
	r.off += n
	return v
}

func (r *reader) uint32() uint32 {
	if r.left() < 4 {
		r.err = errShort
		r.off = len(r.b)
		return 0
	}
	r.off += 4
	return binary.LittleEndian.Uint32(r.b[r.off-4:])
}

type bitReader struct {
	r    *reader
	acc  uint64
	nacc int
}

func (b *bitReader) read(bits int) uint32 {
	for b.nacc < bits {
		b.acc |= uint64(b.r.byte()) << b.nacc
		b.nacc += 8
	}
	v := uint32(b.acc & (1<<bits - 1))
	b.acc >>= bits
	b.nacc -= bits
	return v
}

// varintGaps reads version 1's k uvarint index gaps.
func varintGaps(r *reader, k, d uint64, bits int) ([]uint32, error) {
	// Each index takes at least one byte, each value at least bits/8: a
	// frame too short for k cannot allocate k.
	if uint64(r.left()) < k+k*uint64(bits)/8 {
		return nil, malformed("%d values declared in %d bytes", k, r.left())
	}
	idx := make([]uint32, k)
	prev := -1
	for j := range idx {
		gap := r.uvarint()
		if r.err != nil {
			return nil, malformed("index %d unreadable", j)
		}
		// prev < d ≤ 2^28 and gap < d after this check: no overflow.
		if gap >= d {
			return nil, malformed("index gap %d out of range", gap)
		}
		i := uint64(prev+1) + gap
		if i >= d {
			return nil, malformed("index %d = %d out of range", j, i)
		}
		idx[j] = uint32(i)
		prev = int(i)
	}
	return idx, nil
}

// riceGaps reads version 2's parameter and k Golomb-Rice coded gaps.
func riceGaps(r *reader, k, d uint64, bits int) ([]uint32, error) {
	rp := int(r.byte())
	if r.err != nil || rp > 27 {
		return nil, malformed("rice parameter %d", rp)
	}
	// Each index takes at least r+1 bits, each value bits: a frame too
	// short for k cannot allocate k.
	if uint64(r.left())*8 < k*uint64(rp+1)+k*uint64(bits) {
		return nil, malformed("%d values declared in %d bytes", k, r.left())
	}
	idx := make([]uint32, k)
	br := bitReader{r: r}
	prev := uint64(0) // the next index at gap 0
	for j := range idx {
		var q uint64
		for br.read(1) == 1 {
			q++
			if q<<rp >= d || r.err != nil {
				return nil, malformed("index gap %d out of range", j)
			}
		}
		g := q << rp
		if rp > 0 {
			g |= uint64(br.read(rp))
		}
		i := prev + g
		if r.err != nil || i >= d {
			return nil, malformed("index %d out of range", j)
		}
		idx[j] = uint32(i)
		prev = i + 1
	}
	// The codes end on a byte boundary: the padding bits are zero.
	if br.nacc >= 8 || br.acc != 0 {
		return nil, malformed("index padding")
	}
	return idx, nil
}

// CheckRange checks the encoding on the coordinates [lo, lo+len(v)) alone,
// as a challenger that holds only a sample of the sender's vectors does: v
// is what the sender encoded there (its delta plus the residual it carried
// in) and out the residual it says it kept. Each coordinate must be sent
// if its magnitude is above the frame's threshold and kept back if below,
// a sent value must be v quantized as the encoder quantizes it (the sign,
// or the level, under the frame's scale), and out must be v less what was
// sent, bit for bit. The chunk scales themselves are not checked (each is
// a mean or maximum over the whole chunk): a false one is carried by the
// residual, which the same check holds to account. It returns an error
// saying the first coordinate that does not hold.
func (s *Sparse) CheckRange(lo int, v, out []float32) error {
	if !(s.Threshold >= 0) {
		return errors.New("the frame carries no selection threshold (format 1 or 2)")
	}
	if len(v) != len(out) || lo < 0 || lo+len(v) > s.D {
		return fmt.Errorf("range [%d, %d) of a %d-vector with %d residual values", lo, lo+len(v), s.D, len(out))
	}
	// Every chunk's scale follows from magnitudes of at least τ: a mean of
	// them (1 bit) is at least τ, a largest over the levels (2..8 bits) at
	// least τ/levels.
	if s.Bits < 32 {
		floor := s.Threshold
		if s.Bits > 1 {
			floor = s.Threshold / float32(int(1)<<(s.Bits-1)-1)
		}
		for c, sc := range s.Scales {
			if sc < floor {
				return fmt.Errorf("chunk %d's scale %g is below what its values' magnitudes (at least %g) give", c, sc, s.Threshold)
			}
		}
	}
	j, _ := slices.BinarySearch(s.Idx, uint32(lo))
	for o, x := range v {
		i := lo + o
		m := abs32(x)
		if j < len(s.Idx) && s.Idx[j] == uint32(i) {
			if !(m >= s.Threshold) {
				return fmt.Errorf("coordinate %d was sent with |v| = %g below the threshold %g", i, m, s.Threshold)
			}
			if s.Bits > 1 && s.Bits < 32 {
				levels := float32(int(1)<<(s.Bits-1) - 1)
				if sc := s.Scales[j/s.Chunk]; m > levels*sc*(1+1e-6) {
					return fmt.Errorf("coordinate %d has |v| = %g above its chunk's largest level %g", i, m, levels*sc)
				}
			}
			if want := s.quantize(j, x); math.Float32bits(want) != math.Float32bits(s.Val[j]) {
				return fmt.Errorf("coordinate %d was sent as %g; %g quantizes to %g", i, s.Val[j], x, want)
			}
			if r := x - s.Val[j]; math.Float32bits(r) != math.Float32bits(out[o]) {
				return fmt.Errorf("coordinate %d keeps %g in the residual, %g less the %g sent is %g", i, out[o], x, s.Val[j], r)
			}
			j++
			continue
		}
		if !(m <= s.Threshold) {
			return fmt.Errorf("coordinate %d was kept back with |v| = %g above the threshold %g", i, m, s.Threshold)
		}
		if math.Float32bits(x) != math.Float32bits(out[o]) {
			return fmt.Errorf("coordinate %d keeps %g in the residual, not the %g it was not sent with", i, out[o], x)
		}
	}
	return nil
}

// quantize is what the encoder sends for the j-th selected value x.
func (s *Sparse) quantize(j int, x float32) float32 {
	switch {
	case s.Bits == 32:
		return x
	case len(s.Scales) == 0 || s.Chunk < 1:
		return float32(math.NaN())
	}
	sc := s.Scales[j/s.Chunk]
	if s.Bits == 1 {
		if x >= 0 {
			return 1 * sc
		}
		return -1 * sc
	}
	levels := float32(int(1)<<(s.Bits-1) - 1)
	q := float32(0)
	if sc > 0 {
		q = roundHalfAway(x / sc)
		q = min(max(q, -levels), levels)
	}
	if q == 0 {
		q = 0 // level 0 is sent as +0 (the encoder's −0 for a small negative value does not survive the wire)
	}
	return q * sc
}
