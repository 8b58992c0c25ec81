package node

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/internal/safetensors"
)

// A private peer's rounds on disk. The chain of states behind an own
// private update (provenRound) lives in memory; a node that restarts
// before it has proved the step a decision drew would be excluded as
// silent. So a private peer keeps, for each of its private updates still
// within keptEvidence rounds, what rebuilds that chain deterministically:
// the agreed state the round started from, the round's batch seed and
// step count, and the update's ID and base, which the rebuilt update must
// match (rebuildPrivate) before the node proves anything of it.

// privateDir is where a private peer keeps its rounds, in its --out.
const privateDir = "private"

// privateRecord is an own private update as kept on disk.
type privateRecord struct {
	round  uint64
	update consensus.Hash
	base   consensus.Hash // the agreed state's hash, the update's Base
	seed   uint64
	steps  int
	theta  []float32 // the agreed state the round trained from
}

// errPrivateRecord is wrapped by the errors about a damaged or foreign
// private round file.
var errPrivateRecord = errors.New("node: private round file")

const privateExt = ".safetensors"

// privateFile names the file of update id of round: the round first, so
// that pruning needs no read.
func privateFile(round uint64, id consensus.Hash) string {
	return fmt.Sprintf("%d-%s%s", round, hex.EncodeToString(id[:8]), privateExt)
}

// thetaSum is the checksum a record keeps of its state: a flipped or
// lost byte is reported as such, not only as an update that does not
// rebuild.
func thetaSum(theta []float32) string {
	h := sha256.New()
	var b [4]byte
	for _, v := range theta {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// savePrivate writes rec into dir (temp file and rename) for run, and
// prunes the records beyond keptEvidence rounds of rec's.
func savePrivate(dir, run string, rec privateRecord) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b := safetensors.Encode([]safetensors.Tensor{{Name: "theta", Shape: []int{len(rec.theta)}, Data: rec.theta}}, map[string]string{
		"run": run, "round": strconv.FormatUint(rec.round, 10), "update": hex.EncodeToString(rec.update[:]),
		"base": hex.EncodeToString(rec.base[:]), "seed": strconv.FormatUint(rec.seed, 10), "steps": strconv.Itoa(rec.steps),
		"theta_sha256": thetaSum(rec.theta),
	})
	if err := writeAtomic(filepath.Join(dir, privateFile(rec.round, rec.update)), b); err != nil {
		return err
	}
	return prunePrivate(dir, rec.round)
}

// prunePrivate removes the records of rounds keptEvidence or more before
// round (as the rounds held in memory), and temp files a crash left.
func prunePrivate(dir string, round uint64) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		name := e.Name()
		old := strings.HasSuffix(name, ".tmp")
		if r, ok := privateRound(name); ok && r+keptEvidence <= round {
			old = true
		}
		if old {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// privateRound is the round a record's file name gives.
func privateRound(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, privateExt)
	if !ok {
		return 0, false
	}
	r, _, ok := strings.Cut(s, "-")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(r, 10, 64)
	return v, err == nil
}

// loadPrivate reads the record of update id from dir: an error wrapping
// os.ErrNotExist when none is kept, or one wrapping errPrivateRecord that
// names the file and what is wrong with it (damaged, truncated, of
// another run, not of this update, not of a state of params values or a
// round of steps steps).
func loadPrivate(dir, run string, id consensus.Hash, params, steps int) (*privateRecord, error) {
	// The directory is listed, not globbed: --out may hold a pattern's
	// special characters.
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), "-"+hex.EncodeToString(id[:8])+privateExt) {
			names = append(names, filepath.Join(dir, e.Name()))
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no record of private update %s in %s: %w", id.Short(), dir, os.ErrNotExist)
	}
	p := names[0]
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w %s: %s", errPrivateRecord, p, fmt.Sprintf(format, a...))
	}
	if len(names) > 1 {
		return nil, bad("%d files for update %s", len(names), id.Short())
	}
	f, err := safetensors.ReadFile(p, int64(4*params)+1<<16)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errPrivateRecord, err) // err names the file
	}
	md := f.Metadata
	if md["run"] != run {
		return nil, bad("of run %q, not %s", md["run"], run)
	}
	if md["update"] != hex.EncodeToString(id[:]) {
		return nil, bad("of update %q, not %s", md["update"], id.Short())
	}
	rec := &privateRecord{update: id}
	if rec.round, err = strconv.ParseUint(md["round"], 10, 64); err != nil {
		return nil, bad("round %q", md["round"])
	}
	if r, ok := privateRound(filepath.Base(p)); !ok || r != rec.round {
		return nil, bad("its name does not say its round %d", rec.round)
	}
	if rec.seed, err = strconv.ParseUint(md["seed"], 10, 64); err != nil {
		return nil, bad("seed %q", md["seed"])
	}
	if rec.steps, err = strconv.Atoi(md["steps"]); err != nil || rec.steps != steps {
		return nil, bad("%q steps, the run takes %d", md["steps"], steps)
	}
	b, err := hex.DecodeString(md["base"])
	if err != nil || len(b) != len(rec.base) {
		return nil, bad("base %q", md["base"])
	}
	copy(rec.base[:], b)
	th, ok := f.Get("theta")
	if !ok || len(th.Data) != params || len(f.Tensors) != 1 {
		return nil, bad("no state of %d values", params)
	}
	if thetaSum(th.Data) != md["theta_sha256"] {
		return nil, bad("its state does not match its checksum (damaged)")
	}
	rec.theta = th.Data
	return rec, nil
}
