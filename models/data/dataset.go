// Package data reads and generates the image-classification data vtrain
// trains on, and decides deterministically which samples each peer and each
// step uses.
//
// Replayability: the shard a peer holds is a pure function of (n, parts,
// part, seed), and the samples a step uses are a pure function of (shard,
// batch, seed, step), so anyone holding the seed can recompute exactly which
// samples any step of any peer consumed. That is what spot-check
// re-execution and audits stand on.
package data

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Dataset is a set of grey-scale images with class labels, held as bytes.
// Pixels are normalised to [0, 1] float32 when a batch is filled.
type Dataset struct {
	Name    string
	Rows    int
	Cols    int
	Classes int
	Images  []byte  // Len()*Rows*Cols pixels, row-major per image
	Labels  []uint8 // Len() labels, each < Classes
}

// Len returns the number of samples.
func (d *Dataset) Len() int { return len(d.Labels) }

// Features returns the number of input features per sample (Rows*Cols).
func (d *Dataset) Features() int { return d.Rows * d.Cols }

// pixelValue[p] is float32(p) * (1/255): a table lookup is cheaper than
// the conversion and product per pixel, and gives the same bits.
var pixelValue = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) * (1.0 / 255.0)
	}
	return t
}()

// Fill writes the samples idx into x (len(idx)*Features() values in [0,1])
// and their labels into y. It panics on a shape mismatch, a caller's
// mistake.
func (d *Dataset) Fill(idx []int, x []float32, y []int) {
	f := d.Features()
	if len(x) < len(idx)*f || len(y) < len(idx) {
		panic("data: Fill buffers too small")
	}
	for i, s := range idx {
		px := d.Images[s*f : (s+1)*f]
		pixels(x[i*f:(i+1)*f], px)
		y[i] = int(d.Labels[s])
	}
}

func (d *Dataset) validate() error {
	if d.Rows <= 0 || d.Cols <= 0 || d.Classes <= 1 {
		return fmt.Errorf("data: %s: bad geometry %dx%d, %d classes", d.Name, d.Rows, d.Cols, d.Classes)
	}
	if len(d.Images) != len(d.Labels)*d.Features() {
		return fmt.Errorf("data: %s: %d images of %d bytes but %d labels", d.Name, len(d.Images)/d.Features(), d.Features(), len(d.Labels))
	}
	for i, l := range d.Labels {
		if int(l) >= d.Classes {
			return fmt.Errorf("data: %s: label %d of sample %d is not below %d classes", d.Name, l, i, d.Classes)
		}
	}
	return nil
}

// Set is a train/test pair.
type Set struct {
	Train, Test *Dataset
	// Source says where the data came from: a directory, or "synthetic".
	Source string
}

// DefaultDirs are searched, in order, for Fashion-MNIST when no directory
// is given. The first is where Debian's dataset-fashion-mnist installs it.
var DefaultDirs = []string{"/usr/share/datasets/fashion-mnist"}

// ErrNoDataset is returned by [Find] when no dataset is installed.
var ErrNoDataset = errors.New("data: no Fashion-MNIST found")

// Find returns the first of [DefaultDirs] that holds Fashion-MNIST.
func Find() (string, error) {
	for _, d := range DefaultDirs {
		if hasFashion(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w in %v (apt-get install dataset-fashion-mnist, or pass --data DIR)", ErrNoDataset, DefaultDirs)
}

var fashionFiles = [4]string{
	"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
	"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
}

func resolve(dir, base string) string {
	for _, name := range []string{base + ".gz", base} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func hasFashion(dir string) bool {
	for _, f := range fashionFiles {
		if resolve(dir, f) == "" {
			return false
		}
	}
	return true
}

// LoadFashionMNIST reads the four IDX files (gzip or not) of Fashion-MNIST
// (or MNIST, which has the same layout) from dir.
func LoadFashionMNIST(dir string) (*Set, error) {
	var paths [4]string
	for i, f := range fashionFiles {
		paths[i] = resolve(dir, f)
		if paths[i] == "" {
			return nil, fmt.Errorf("data: %s: missing %s[.gz]", dir, f)
		}
	}
	train, err := loadPair("fashion-mnist/train", paths[0], paths[1])
	if err != nil {
		return nil, err
	}
	test, err := loadPair("fashion-mnist/test", paths[2], paths[3])
	if err != nil {
		return nil, err
	}
	if train.Rows != test.Rows || train.Cols != test.Cols {
		return nil, fmt.Errorf("data: %s: train images are %dx%d but test images %dx%d", dir, train.Rows, train.Cols, test.Rows, test.Cols)
	}
	return &Set{Train: train, Test: test, Source: dir}, nil
}

func loadPair(name, imgPath, lblPath string) (*Dataset, error) {
	img, err := ReadIDXFile(imgPath)
	if err != nil {
		return nil, err
	}
	if len(img.Dims) != 3 {
		return nil, fmt.Errorf("data: %s: %w: want 3 dimensions (n, rows, cols), got %v", imgPath, ErrIDX, img.Dims)
	}
	lbl, err := ReadIDXFile(lblPath)
	if err != nil {
		return nil, err
	}
	if len(lbl.Dims) != 1 {
		return nil, fmt.Errorf("data: %s: %w: want 1 dimension, got %v", lblPath, ErrIDX, lbl.Dims)
	}
	if lbl.Dims[0] != img.Dims[0] {
		return nil, fmt.Errorf("data: %s has %d images but %s has %d labels", imgPath, img.Dims[0], lblPath, lbl.Dims[0])
	}
	d := &Dataset{Name: name, Rows: img.Dims[1], Cols: img.Dims[2], Classes: 10, Images: img.Data, Labels: lbl.Data}
	if err := d.validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// Load resolves a --data argument: "synthetic" gives the synthetic set; a
// directory is read as Fashion-MNIST; "" searches [DefaultDirs] and, when
// nothing is installed, falls back to the synthetic set with fellBack true
// so that the caller can say so plainly.
func Load(dir string, seed uint64) (set *Set, fellBack bool, err error) {
	switch dir {
	case "synthetic":
		return Synthetic(seed, SyntheticTrain, SyntheticTest), false, nil
	case "":
		found, ferr := Find()
		if ferr != nil {
			return Synthetic(seed, SyntheticTrain, SyntheticTest), true, nil
		}
		dir = found
	}
	set, err = LoadFashionMNIST(dir)
	return set, false, err
}

// Fingerprint identifies the dataset's content: the first 16 bytes of the
// SHA-256 of its geometry, pixels and labels, in hex. Checkpoints record it
// so that a run is not resumed on other data.
func (d *Dataset) Fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "%d %d %d %d\n", d.Len(), d.Rows, d.Cols, d.Classes)
	h.Write(d.Images)
	h.Write(d.Labels)
	return hex.EncodeToString(h.Sum(nil)[:16])
}
