package ledger

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// The file: a header (magic, then the 32-byte run ID), then records of
// a 4-byte big-endian length, a 4-byte CRC-32C of the length and the
// entry, and the entry. The Merkle tree's leaves are the entries' bytes.
const (
	magic      = "VTLEDGER1\n"
	headerSize = len(magic) + 32
	recordHead = 8
	// MaxEntry bounds one entry; a larger length is corruption.
	MaxEntry = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error about a damaged ledger file.
var ErrCorrupt = errors.New("ledger: corrupt")

// CorruptError names the first bad entry of a ledger: its index and byte
// offset, and what is wrong with it.
type CorruptError struct {
	Path   string
	Index  uint64 // the entry's index (the number of good entries before it)
	Offset int64  // the record's byte offset in the file; negative: not known (a replay's finding about an entry)
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("ledger: %s: entry %d: %s", e.Path, e.Index, e.Reason)
	}
	return fmt.Sprintf("ledger: %s: entry %d (byte %d): %s", e.Path, e.Index, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func checksum(length uint32, entry []byte) uint32 {
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], length)
	c := crc32.Update(0, castagnoli, l[:])
	return crc32.Update(c, castagnoli, entry)
}

// scan reads records from r (positioned after the header) and calls fn for
// each good one. It stops at the first bad record and returns a
// CorruptError for it, or nil at a clean end of file.
func scan(path string, r io.Reader, fn func(entry []byte, offset int64) error) (good uint64, end int64, err error) {
	br := bufio.NewReaderSize(r, 1<<16)
	off := int64(headerSize)
	var hdr [recordHead]byte
	for {
		n, err := io.ReadFull(br, hdr[:])
		if err == io.EOF {
			return good, off, nil
		}
		if err != nil {
			return good, off, &CorruptError{path, good, off, fmt.Sprintf("torn record header (%d of %d bytes)", n, recordHead)}
		}
		length := binary.BigEndian.Uint32(hdr[:4])
		if length > MaxEntry {
			return good, off, &CorruptError{path, good, off, fmt.Sprintf("length %d exceeds the %d-byte limit", length, MaxEntry)}
		}
		entry := make([]byte, length)
		if n, err := io.ReadFull(br, entry); err != nil {
			return good, off, &CorruptError{path, good, off, fmt.Sprintf("torn record (%d of %d bytes)", n, length)}
		}
		if checksum(length, entry) != binary.BigEndian.Uint32(hdr[4:]) {
			return good, off, &CorruptError{path, good, off, "checksum mismatch"}
		}
		if err := fn(entry, off); err != nil {
			return good, off, err
		}
		good++
		off += recordHead + int64(length)
	}
}

func readHeader(path string, r io.Reader) ([32]byte, error) {
	var run [32]byte
	h := make([]byte, headerSize)
	if _, err := io.ReadFull(r, h); err != nil {
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			return run, fmt.Errorf("ledger: %s: %w", path, err)
		}
		return run, &CorruptError{path, 0, 0, "no ledger header"}
	}
	if string(h[:len(magic)]) != magic {
		return run, &CorruptError{path, 0, 0, "not a vtrain ledger (bad magic)"}
	}
	copy(run[:], h[len(magic):])
	return run, nil
}

// Read reads a whole ledger strictly, as an auditor does: any damage, even
// a torn last record, is an error that names the first bad entry.
func Read(path string) (run [32]byte, entries [][]byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return run, nil, err
	}
	defer f.Close()
	if run, err = readHeader(path, f); err != nil {
		return run, nil, err
	}
	_, _, err = scan(path, f, func(e []byte, _ int64) error {
		entries = append(entries, e)
		return nil
	})
	return run, entries, err
}

// Recovery says what Open found after the last good entry of a ledger left
// by a crash: how many entries were kept, where the damage began, why,
// and the file the dropped bytes were saved to (they are never discarded).
type Recovery struct {
	Kept    uint64
	Offset  int64
	Dropped int64
	Reason  string
	SavedTo string
}

func (r *Recovery) String() string {
	return fmt.Sprintf("kept %d entries; dropped %d bytes from byte %d (%s), saved to %s", r.Kept, r.Dropped, r.Offset, r.Reason, r.SavedTo)
}

// Log is a ledger open for appending. Entries are buffered; Sync writes
// them and waits for the disk (vtrain syncs at round boundaries). It is not
// safe for concurrent use.
type Log struct {
	path    string
	run     [32]byte
	f       *os.File
	w       *bufio.Writer
	tree    Tree
	offsets []int64
	end     int64
}

// Open opens the ledger at path for run, creating it if needed. A ledger
// of another run is an error. A damaged tail (a crash mid-write, or
// corruption) is cut off after the last good entry: the dropped bytes are
// saved beside the ledger, and the returned Recovery says so; the caller
// must report it.
func Open(path string, run [32]byte) (*Log, *Recovery, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	l := &Log{path: path, run: run, f: f}
	if st.Size() == 0 {
		hdr := append([]byte(magic), run[:]...)
		if _, err := f.Write(hdr); err != nil {
			f.Close()
			return nil, nil, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, err
		}
		l.end = int64(headerSize)
		l.w = bufio.NewWriter(f)
		return l, nil, nil
	}
	have, err := readHeader(path, f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if have != run {
		f.Close()
		return nil, nil, fmt.Errorf("ledger: %s belongs to run %x, not %x", path, have[:8], run[:8])
	}
	_, end, serr := scan(path, f, func(e []byte, off int64) error {
		l.tree.Append(LeafHash(e))
		l.offsets = append(l.offsets, off)
		return nil
	})
	l.end = end
	var rec *Recovery
	if serr != nil {
		var ce *CorruptError
		if !errors.As(serr, &ce) {
			f.Close()
			return nil, nil, serr
		}
		if rec, err = l.quarantine(end, st.Size(), ce.Reason); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	if _, err := f.Seek(l.end, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, err
	}
	l.w = bufio.NewWriter(f)
	return l, rec, nil
}

// quarantine copies bytes [from, to) to a side file and truncates the
// ledger at from.
func (l *Log) quarantine(from, to int64, reason string) (*Recovery, error) {
	tail := make([]byte, to-from)
	if _, err := l.f.ReadAt(tail, from); err != nil && err != io.EOF {
		return nil, err
	}
	saved := fmt.Sprintf("%s.tail-%d", l.path, from)
	if err := os.WriteFile(saved, tail, 0o644); err != nil {
		return nil, fmt.Errorf("ledger: saving the damaged tail: %w", err)
	}
	if err := l.f.Truncate(from); err != nil {
		return nil, err
	}
	if err := l.f.Sync(); err != nil {
		return nil, err
	}
	return &Recovery{Kept: l.tree.Size(), Offset: from, Dropped: to - from, Reason: reason, SavedTo: saved}, nil
}

// Append adds an entry and returns its index.
func (l *Log) Append(entry []byte) (uint64, error) {
	if len(entry) > MaxEntry {
		return 0, fmt.Errorf("ledger: entry of %d bytes exceeds the %d-byte limit", len(entry), MaxEntry)
	}
	var hdr [recordHead]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(entry)))
	binary.BigEndian.PutUint32(hdr[4:], checksum(uint32(len(entry)), entry))
	if _, err := l.w.Write(hdr[:]); err != nil {
		return 0, err
	}
	if _, err := l.w.Write(entry); err != nil {
		return 0, err
	}
	i := l.tree.Size()
	l.offsets = append(l.offsets, l.end)
	l.end += recordHead + int64(len(entry))
	l.tree.Append(LeafHash(entry))
	return i, nil
}

// Flush hands buffered entries to the operating system: they survive the
// process being killed (not a crash of the machine: Sync).
func (l *Log) Flush() error { return l.w.Flush() }

// Sync writes buffered entries and waits until they are on disk.
func (l *Log) Sync() error {
	if err := l.w.Flush(); err != nil {
		return err
	}
	return l.f.Sync()
}

// Close syncs and closes the file.
func (l *Log) Close() error {
	err := l.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Run is the run the ledger belongs to.
func (l *Log) Run() [32]byte { return l.run }

// Size is the number of entries.
func (l *Log) Size() uint64 { return l.tree.Size() }

// Root is the Merkle root of the first n entries.
func (l *Log) Root(n uint64) Hash { return l.tree.Root(n) }

// Tree is the log's Merkle tree (for proofs).
func (l *Log) Tree() *Tree { return &l.tree }

// Entry reads entry i back (after a Sync for entries appended since).
func (l *Log) Entry(i uint64) ([]byte, error) {
	if i >= l.Size() {
		return nil, fmt.Errorf("ledger: no entry %d of %d", i, l.Size())
	}
	if err := l.w.Flush(); err != nil {
		return nil, err
	}
	var hdr [recordHead]byte
	if _, err := l.f.ReadAt(hdr[:], l.offsets[i]); err != nil {
		return nil, err
	}
	e := make([]byte, binary.BigEndian.Uint32(hdr[:4]))
	if _, err := l.f.ReadAt(e, l.offsets[i]+recordHead); err != nil {
		return nil, err
	}
	if LeafHash(e) != l.tree.Leaf(i) {
		return nil, &CorruptError{l.path, i, l.offsets[i], "changed on disk since it was written"}
	}
	return e, nil
}
