package zk

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/consensys/gnark/constraint"
	cs "github.com/consensys/gnark/constraint/bn254"
)

// A keys directory names the constraint system its keys were made for
// (CircuitFile), and LoadProver refuses a proving key made for another
// one. Groth16 keys encode the circuit's constraints: keys of a circuit
// whose gadgets changed load, but prove nothing the verifying key accepts,
// and a private peer that proves with them is excluded for bad proofs.
// The wire count alone misses a change that keeps it (a coefficient, a
// wire swapped for another), and circuitVersion is bumped by hand.
//
// The digest covers what the keys depend on and nothing else: the wire
// counts, every constraint's three linear expressions (wire and
// coefficient ids), the coefficient table, and the committed wires. Two
// constraint systems with the same digest have interchangeable keys. It
// leaves out what gnark's serialization also holds and the keys do not
// depend on: hints (how the solver fills the wires), the solver's levels,
// debug information and gnark's version header, so that a change of the
// solver alone does not void a ceremony's keys. It is also cheaper: 33 ms
// for the 784×10 batch-4 circuit, against 72 ms for SHA-256 over its 23 MB
// serialization and 22 s for the compilation LoadProver does anyway
// (benchmarks/README.md, BenchmarkKeyLoadCheck).

// CircuitFile names, in a keys directory, the constraint system the keys
// were made for.
const CircuitFile = "circuit.json"

// circuitDigestVersion tags the digest's encoding.
const circuitDigestVersion = "vtrain/zk/r1cs-digest/v1"

// circuitInfo is CircuitFile's content.
type circuitInfo struct {
	Digest      string `json:"r1cs_sha256"` // CircuitDigest of the constraint system
	Constraints int    `json:"constraints"`
	Wires       int    `json:"wires"`
}

// maxCircuitFile bounds CircuitFile as read.
const maxCircuitFile = 4096

// ccsWires is the number of wires of ccs: public, secret and internal.
func ccsWires(ccs constraint.ConstraintSystem) int {
	return ccs.GetNbPublicVariables() + ccs.GetNbSecretVariables() + ccs.GetNbInternalVariables()
}

// circuitOf describes ccs, a BN254 R1CS as Compile makes them.
func circuitOf(ccs constraint.ConstraintSystem) (circuitInfo, error) {
	d, err := CircuitDigest(ccs)
	if err != nil {
		return circuitInfo{}, err
	}
	return circuitInfo{Digest: d, Constraints: ccs.GetNbConstraints(), Wires: ccsWires(ccs)}, nil
}

// CircuitDigest is SHA-256, in hex, over what Groth16 keys of ccs depend
// on (see above), in a fixed binary encoding; ccs must be a BN254 R1CS,
// as Compile makes them.
func CircuitDigest(ccs constraint.ConstraintSystem) (string, error) {
	r, ok := ccs.(*cs.R1CS)
	if !ok {
		return "", fmt.Errorf("%w: a %T is not a BN254 R1CS", ErrKeys, ccs)
	}
	h := sha256.New()
	buf := make([]byte, 0, 64<<10)
	u64 := func(v int) { buf = binary.LittleEndian.AppendUint64(buf, uint64(v)) }
	flush := func() {
		h.Write(buf)
		buf = buf[:0]
	}
	buf = append(buf, circuitDigestVersion...)
	u64(r.GetNbPublicVariables())
	u64(r.GetNbSecretVariables())
	u64(r.GetNbInternalVariables())
	u64(r.GetNbConstraints())
	u64(len(r.Coefficients))
	for i := range r.Coefficients {
		b := r.Coefficients[i].Bytes()
		buf = append(buf, b[:]...)
		if len(buf) > 60<<10 {
			flush()
		}
	}
	n := 0
	it := r.GetR1CIterator()
	for c := it.Next(); c != nil; c = it.Next() {
		for _, l := range [3]constraint.LinearExpression{c.L, c.R, c.O} {
			buf = binary.LittleEndian.AppendUint32(buf, uint32(len(l)))
			for _, t := range l {
				buf = binary.LittleEndian.AppendUint32(buf, t.CID)
				buf = binary.LittleEndian.AppendUint32(buf, t.VID)
			}
		}
		if len(buf) > 60<<10 {
			flush()
		}
		n++
	}
	if n != r.GetNbConstraints() {
		return "", fmt.Errorf("%w: the constraint system has %d constraints, %d of them R1C", ErrKeys, r.GetNbConstraints(), n)
	}
	commits, ok := r.CommitmentInfo.(constraint.Groth16Commitments)
	if !ok {
		return "", fmt.Errorf("%w: commitments of type %T, not Groth16's", ErrKeys, r.CommitmentInfo)
	}
	u64(len(commits))
	for _, c := range commits {
		u64(c.CommitmentIndex)
		u64(c.NbPublicCommitted)
		for _, s := range [2][]int{c.PublicAndCommitmentCommitted, c.PrivateCommitted} {
			u64(len(s))
			for _, w := range s {
				u64(w)
			}
		}
	}
	flush()
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeCircuit writes CircuitFile into dir.
func writeCircuit(dir string, c circuitInfo) error {
	b, _ := json.MarshalIndent(c, "", "  ")
	return WriteFile(filepath.Join(dir, CircuitFile), func(w io.Writer) error { _, err := w.Write(append(b, '\n')); return err })
}

// errNoCircuit means a keys directory has no CircuitFile.
var errNoCircuit = errors.New("no " + CircuitFile)

// readCircuit reads dir's CircuitFile strictly. A directory without one
// (keys written before vtrain recorded their circuit) is refused: such
// keys would be checked by their wire count alone.
func readCircuit(dir string) (circuitInfo, error) {
	var c circuitInfo
	f, err := os.Open(filepath.Join(dir, CircuitFile))
	if errors.Is(err, fs.ErrNotExist) {
		return c, fmt.Errorf("%w: %s: %w, the constraint system the keys were made for: keys of an older vtrain; make them again for this build (vtrain keygen, or vtrain ceremony finalize from the ceremony's transcripts; the demo makes its own when its cache has none)",
			ErrKeys, dir, errNoCircuit)
	}
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrKeys, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCircuitFile+1))
	if err != nil {
		return c, fmt.Errorf("%w: %s: %v", ErrKeys, CircuitFile, err)
	}
	if len(b) > maxCircuitFile {
		return c, fmt.Errorf("%w: %s is over %d bytes", ErrKeys, CircuitFile, maxCircuitFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%w: %s: %v", ErrKeys, CircuitFile, err)
	}
	if d, err := hex.DecodeString(c.Digest); err != nil || len(d) != sha256.Size {
		return c, fmt.Errorf("%w: %s: r1cs_sha256 %q is not 64 hex digits", ErrKeys, CircuitFile, c.Digest)
	}
	return c, nil
}

// checkCircuit refuses keys made for another constraint system than ccs,
// the circuit this build compiles.
func checkCircuit(dir string, made circuitInfo, ccs constraint.ConstraintSystem) error {
	now, err := circuitOf(ccs)
	if err != nil {
		return err
	}
	if made.Digest != now.Digest {
		return fmt.Errorf("%w: %s holds keys made for another build of the circuit (%d constraints, %d wires, r1cs digest %.16s…) than this vtrain compiles (%d constraints, %d wires, %.16s…): proofs made with them would not verify; make the keys again (vtrain keygen, or a new ceremony's phase 2 for this build; the demo's cache: delete the directory)",
			ErrKeys, dir, made.Constraints, made.Wires, made.Digest, now.Constraints, now.Wires, now.Digest)
	}
	return nil
}
