package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrIDX is wrapped by every error about a malformed IDX file.
var ErrIDX = errors.New("data: bad IDX file")

// MaxIDXBytes bounds the payload an IDX reader accepts (1 GiB): a header
// that declares more is rejected before anything is allocated.
const MaxIDXBytes = 1 << 30

// IDX is a decoded IDX file of unsigned bytes (the only element type
// MNIST-style datasets use).
type IDX struct {
	Dims []int  // dimension sizes, outermost first
	Data []byte // row-major payload, len = product of Dims
}

// ReadIDXFile reads an IDX file, gzip-compressed or not (detected from the
// first two bytes, not from the name).
func ReadIDXFile(path string) (*IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	idx, err := ReadIDX(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return idx, nil
}

// ReadIDX decodes an IDX stream. It validates the magic number, the element
// type (only 0x08, unsigned byte), the number of dimensions (1..4), the
// declared size against [MaxIDXBytes], and that the payload is exactly as
// long as declared: truncated and over-long files are errors.
func ReadIDX(r io.Reader) (*IDX, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(2)
	if err != nil {
		return nil, fmt.Errorf("%w: empty or unreadable: %v", ErrIDX, err)
	}
	var src io.Reader = br
	if head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrIDX, err)
		}
		defer zr.Close()
		src = zr
	}
	var magic [4]byte
	if _, err := io.ReadFull(src, magic[:]); err != nil {
		return nil, fmt.Errorf("%w: header truncated: %v", ErrIDX, err)
	}
	if magic[0] != 0 || magic[1] != 0 {
		return nil, fmt.Errorf("%w: magic %x is not an IDX magic number", ErrIDX, magic)
	}
	if magic[2] != 0x08 {
		return nil, fmt.Errorf("%w: element type 0x%02x not supported (want 0x08, unsigned byte)", ErrIDX, magic[2])
	}
	nd := int(magic[3])
	if nd < 1 || nd > 4 {
		return nil, fmt.Errorf("%w: %d dimensions (want 1..4)", ErrIDX, nd)
	}
	dims := make([]int, nd)
	total := 1
	for i := range dims {
		var b [4]byte
		if _, err := io.ReadFull(src, b[:]); err != nil {
			return nil, fmt.Errorf("%w: header truncated in dimension %d: %v", ErrIDX, i, err)
		}
		d := binary.BigEndian.Uint32(b[:])
		if d == 0 || d > MaxIDXBytes {
			return nil, fmt.Errorf("%w: dimension %d has size %d", ErrIDX, i, d)
		}
		dims[i] = int(d)
		if total > MaxIDXBytes/dims[i] {
			return nil, fmt.Errorf("%w: declared size exceeds %d bytes", ErrIDX, MaxIDXBytes)
		}
		total *= dims[i]
	}
	buf := make([]byte, total)
	if n, err := io.ReadFull(src, buf); err != nil {
		return nil, fmt.Errorf("%w: truncated: header declares %d bytes of data, got %d", ErrIDX, total, n)
	}
	var one [1]byte
	if n, _ := src.Read(one[:]); n > 0 {
		return nil, fmt.Errorf("%w: trailing data after the %d declared bytes", ErrIDX, total)
	}
	// A gzip stream's checksum is verified only once the reader reaches EOF.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIDX, err)
	}
	return &IDX{Dims: dims, Data: buf}, nil
}

// EncodeIDX writes an unsigned-byte IDX file (uncompressed). It is used by
// tests and by tools that export data subsets.
func EncodeIDX(dims []int, payload []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, 0x08, byte(len(dims))})
	for _, d := range dims {
		var x [4]byte
		binary.BigEndian.PutUint32(x[:], uint32(d))
		b.Write(x[:])
	}
	b.Write(payload)
	return b.Bytes()
}
