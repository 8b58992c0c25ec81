package data

import (
	"math"

	"github.com/vtrain/vtrain/internal/prng"
)

// Default sizes of the synthetic set.
const (
	SyntheticTrain = 20000
	SyntheticTest  = 4000
)

// Synthetic returns a deterministic, learnable 10-class set of 28×28 images:
// each class is a prototype made of a few random strokes and blobs, and
// each sample is its class prototype shifted by up to two pixels, with
// random contrast and pixel noise. A linear model reaches well above chance
// and an MLP does better, so it exercises training without being trivial.
// The same seed gives the same bytes on every machine.
func Synthetic(seed uint64, nTrain, nTest int) *Set {
	const rows, cols, classes = 28, 28, 10
	rng := prng.New(prng.Derive(seed, prng.String64("synthetic/prototypes")))
	protos := make([][]float64, classes)
	for c := range protos {
		p := make([]float64, rows*cols)
		blobs := 3 + rng.Intn(3)
		for b := 0; b < blobs; b++ {
			cy, cx := rng.Uniform(6, 22), rng.Uniform(6, 22)
			sy, sx := rng.Uniform(1.5, 5), rng.Uniform(1.5, 5)
			amp := rng.Uniform(0.5, 1)
			for y := 0; y < rows; y++ {
				for x := 0; x < cols; x++ {
					dy, dx := (float64(y)-cy)/sy, (float64(x)-cx)/sx
					p[y*cols+x] += amp * math.Exp(-0.5*(dy*dy+dx*dx))
				}
			}
		}
		protos[c] = p
	}
	gen := func(label string, n int) *Dataset {
		r := prng.New(prng.Derive(seed, prng.String64(label)))
		d := &Dataset{Name: label, Rows: rows, Cols: cols, Classes: classes,
			Images: make([]byte, n*rows*cols), Labels: make([]uint8, n)}
		for i := 0; i < n; i++ {
			c := r.Intn(classes)
			d.Labels[i] = uint8(c)
			oy, ox := r.Intn(5)-2, r.Intn(5)-2
			gain := r.Uniform(0.6, 1.2)
			img := d.Images[i*rows*cols : (i+1)*rows*cols]
			for y := 0; y < rows; y++ {
				for x := 0; x < cols; x++ {
					v := 0.0
					sy, sx := y-oy, x-ox
					if sy >= 0 && sy < rows && sx >= 0 && sx < cols {
						v = gain * protos[c][sy*cols+sx]
					}
					v += 0.25 * r.Norm()
					img[y*cols+x] = byte(math.Round(255 * math.Max(0, math.Min(1, v))))
				}
			}
		}
		return d
	}
	return &Set{Train: gen("synthetic/train", nTrain), Test: gen("synthetic/test", nTest), Source: "synthetic"}
}
