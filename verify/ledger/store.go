package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Store is a content-addressed store of payloads (update bodies, proofs):
// a payload lives at blobs/<first two hex digits>/<SHA-256 hex>, and is
// checked against its name whenever it is read.
type Store struct {
	dir   string
	limit int64
}

// OpenStore opens (creating) the store in dir; payloads over limit bytes
// are refused.
func OpenStore(dir string, limit int64) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &Store{dir: dir, limit: limit}, nil
}

func (s *Store) path(h Hash) string {
	x := hex.EncodeToString(h[:])
	return filepath.Join(s.dir, x[:2], x)
}

// Put stores b and returns its address. Storing the same bytes twice is a
// no-op.
func (s *Store) Put(b []byte) (Hash, error) {
	h := Hash(sha256.Sum256(b))
	if int64(len(b)) > s.limit {
		return h, fmt.Errorf("ledger: a %d-byte payload exceeds the store's %d-byte limit", len(b), s.limit)
	}
	p := s.path(h)
	if _, err := os.Stat(p); err == nil {
		return h, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return h, err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return h, err
	}
	return h, os.Rename(tmp, p)
}

// Get reads the payload with address h, failing with ErrCorrupt if the
// bytes no longer hash to it.
func (s *Store) Get(h Hash) ([]byte, error) {
	f, err := os.Open(s.path(h))
	if err != nil {
		return nil, fmt.Errorf("ledger: payload %x: %w", h[:8], err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, s.limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > s.limit || Hash(sha256.Sum256(b)) != h {
		return nil, fmt.Errorf("%w: payload %x does not match its address", ErrCorrupt, h[:8])
	}
	return b, nil
}
