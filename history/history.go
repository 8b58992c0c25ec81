// Package history is a node's per-round record, metrics.jsonl in its
// output directory: one JSON line per decided round, appended as the run
// goes (a restarted node appends to the same file), and the plot of one
// or several runs' records (accuracy, loss and bytes against round).
package history

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File is the record's name in a node's output directory.
const File = "metrics.jsonl"

// Record is one decided round as a node saw it.
type Record struct {
	Round uint64    `json:"round"`
	Time  time.Time `json:"time"` // RFC 3339, UTC
	// The agreed model (the round's certified state) on the test set, in
	// the rounds the node evaluated it (every few rounds, and the last).
	AgreedAccuracy *float64 `json:"agreed_accuracy,omitempty"`
	AgreedLoss     *float64 `json:"agreed_loss,omitempty"`
	// InnerLoss is the mean of the inner-step losses that the round's
	// aggregated updates report (each on its own training batches, before
	// aggregation), not the agreed model's.
	InnerLoss float64 `json:"inner_loss"`
	// Bytes this node moved in the round, by category (gossip.Traffic's),
	// and in total since the node started.
	OutBytes      map[string]uint64 `json:"out_bytes"`
	InBytes       map[string]uint64 `json:"in_bytes"`
	TotalOutBytes uint64            `json:"total_out_bytes"`
	TotalInBytes  uint64            `json:"total_in_bytes"`
	Peers         int               `json:"peers"`   // connected peers of the run, this node not counted
	Members       int               `json:"members"` // the round's members
	Voters        int               `json:"voters"`
	Decision      Decision          `json:"decision"`
}

// Decision summarises a round's certified decision.
type Decision struct {
	Hash     string   `json:"hash"` // the agreed state after the round
	Updates  int      `json:"updates"`
	Signers  int      `json:"signers"`            // precommits in its certificate
	Restored bool     `json:"restored,omitempty"` // adopted by certificate, not decided here
	Admitted []string `json:"admitted,omitempty"`
	Dropped  []string `json:"dropped,omitempty"`
	Excluded []string `json:"excluded,omitempty"`
	// Late are the members the round expected but did not aggregate (it
	// did not wait for them past its deadline); DeadlineSeconds is that
	// agreed deadline.
	Late            []string `json:"late,omitempty"`
	DeadlineSeconds float64  `json:"deadline_s,omitempty"`
}

// Writer appends records to a directory's metrics.jsonl.
type Writer struct {
	f *os.File
}

// Create opens dir's record for appending, creating it if needed.
func Create(dir string) (*Writer, error) {
	f, err := os.OpenFile(filepath.Join(dir, File), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	return &Writer{f: f}, nil
}

// Append writes one record as one line.
func (w *Writer) Append(r Record) error {
	r.Time = r.Time.UTC().Truncate(time.Second)
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.f.Write(append(b, '\n'))
	return err
}

// Close closes the file.
func (w *Writer) Close() error { return w.f.Close() }

// MaxLine bounds one line of a record.
const MaxLine = 1 << 20

// Read reads a record: path is a node's output directory or its
// metrics.jsonl. Lines are returned in file order; a round recorded twice
// (a node restarted from an older checkpoint) keeps its last line. A
// truncated last line (a node killed mid-write) is skipped.
func Read(path string) ([]Record, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, File)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return read(f, path)
}

func read(r io.Reader, name string) ([]Record, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	byRound := map[uint64]Record{}
	var lines []string
	line := 0
	for sc.Scan() {
		line++
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: line %d: %w", name, line+1, err)
	}
	for i, s := range lines {
		if s == "" {
			continue
		}
		var rec Record
		if err := json.Unmarshal([]byte(s), &rec); err != nil {
			if i == len(lines)-1 {
				break // cut short by a crash
			}
			return nil, fmt.Errorf("%s: line %d: %v", name, i+1, err)
		}
		byRound[rec.Round] = rec
	}
	if len(byRound) == 0 {
		return nil, fmt.Errorf("%s: %w", name, ErrEmpty)
	}
	out := make([]Record, 0, len(byRound))
	for _, r := range byRound {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int { return cmp.Compare(a.Round, b.Round) })
	return out, nil
}

// ErrEmpty means a record holds no round.
var ErrEmpty = errors.New("history: no rounds recorded")
