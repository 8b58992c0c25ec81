package zk

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"

	"github.com/consensys/gnark-crypto/ecc"
	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	"github.com/consensys/gnark/backend/groth16"
	"github.com/consensys/gnark/constraint"
	"github.com/consensys/gnark/frontend"
	"github.com/consensys/gnark/frontend/cs/r1cs"
	"github.com/consensys/gnark/logger"
)

func init() {
	// gnark logs compile and prove progress to stdout by default, in the
	// middle of a command's output: vtrain reports progress itself.
	logger.Disable()
}

// Errors from proving and verifying.
var (
	// ErrProof means a proof does not verify against its statement.
	ErrProof = errors.New("zk: proof rejected")
	// ErrKeys is wrapped by errors about key files.
	ErrKeys = errors.New("zk: invalid keys")
)

// MaxProofBytes bounds a serialized proof read from a peer or a file. A
// Groth16 proof on BN254 with gnark's commitment is a few hundred bytes.
const MaxProofBytes = 4096

// Statement is the public side of a proof: what it claims.
type Statement struct {
	ThetaIn  fr.Element // CommitTheta(θ)
	ThetaOut fr.Element // CommitTheta(θ')
	DataRoot fr.Element // root of the peer's data tree
	Draw     Draw       // which batch: the leaves Params.Leaves(Draw)
	Context  Context
}

// Witness is the private side: θ and the batch with the samples' places in
// the data tree.
type Witness struct {
	Theta   Theta
	Batch   []Sample
	Indices []uint64       // each sample's leaf index: Params.Leaves of the statement's draw
	Paths   [][]fr.Element // each sample's siblings, from Tree.Path
}

// Compile builds the constraint system of the parameters' circuit.
func Compile(p Params) (constraint.ConstraintSystem, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	// No compression of long sums: gnark's default replaces a linear
	// expression of 300 terms or more by a wire, with a constraint that
	// puts the expression in a B term (a point for each of its wires in
	// the prover's B multiplications, in G1 and G2; see assertZero). The
	// long sums here are built in single calls, so compiling them whole
	// costs nothing.
	return frontend.Compile(ecc.BN254.ScalarField(), r1cs.NewBuilder, NewCircuit(p), frontend.WithCompressThreshold(0))
}

// assign fills the circuit's shape with a statement and a witness.
func assign(p Params, st Statement, w Witness) (*StepCircuit, error) {
	if len(w.Theta) != p.NumParams() || len(w.Batch) != p.Batch || len(w.Indices) != p.Batch || len(w.Paths) != p.Batch {
		return nil, fmt.Errorf("%w: witness shape does not match the parameters", ErrBatch)
	}
	c := NewCircuit(p)
	if err := setPublic(p, c, st); err != nil {
		return nil, err
	}
	for i, v := range w.Theta {
		limbs := make([]*big.Int, thetaLimbs)
		for k := range limbs {
			limbs[k] = new(big.Int)
		}
		limbsOf(big.NewInt(v+ThetaBound), thetaBits, limbs)
		for k, l := range limbs {
			c.Theta[i][k] = l
		}
	}
	for b, s := range w.Batch {
		if len(s.Pixels) != p.Features || len(w.Paths[b]) != p.Depth {
			return nil, fmt.Errorf("%w: sample %d does not match the parameters", ErrBatch, b)
		}
		for i, x := range s.Pixels {
			c.Pixels[b][i] = x
		}
		c.Labels[b] = s.Label
		for l := range p.Depth {
			c.Indices[b][l] = w.Indices[b] >> l & 1
			c.Siblings[b][l] = bigOf(w.Paths[b][l])
		}
	}
	return c, nil
}

// publicAssign fills only the public inputs.
func publicAssign(p Params, st Statement) (*StepCircuit, error) {
	c := &StepCircuit{P: p, Leaves: make([]frontend.Variable, p.Batch)}
	return c, setPublic(p, c, st)
}

// setPublic fills the public inputs, the batch's leaves drawn from the
// statement's draw.
func setPublic(p Params, c *StepCircuit, st Statement) error {
	hi, lo, round, peer := st.Context.elements()
	c.ThetaIn, c.ThetaOut, c.DataRoot = bigOf(st.ThetaIn), bigOf(st.ThetaOut), bigOf(st.DataRoot)
	c.RunHi, c.RunLo, c.Round, c.Peer = bigOf(hi), bigOf(lo), bigOf(round), bigOf(peer)
	leaves, err := p.Leaves(st.Draw)
	if err != nil {
		return err
	}
	for b, l := range leaves {
		c.Leaves[b] = l
	}
	return nil
}

// Keys are one circuit's Groth16 keys with its compiled constraint system.
//
// Trust: Setup is a single-party ceremony. Whoever runs it draws the
// toxic waste (τ, α, β, γ, δ) from crypto/rand and could, had they kept
// it, forge proofs of false statements for this circuit; they cannot learn
// anything about a prover's private data either way (Groth16 is
// perfectly zero-knowledge whatever the setup). A run that cannot trust
// its creator with this runs a multi-party ceremony instead (ceremony.go,
// vtrain ceremony), whose keys are sound if one participant per phase was
// honest.
type Keys struct {
	Params Params
	CCS    constraint.ConstraintSystem
	PK     groth16.ProvingKey // nil when only verifying
	VK     groth16.VerifyingKey
}

// Setup compiles the circuit and runs the Groth16 setup.
func Setup(p Params) (*Keys, error) {
	ccs, err := Compile(p)
	if err != nil {
		return nil, err
	}
	return SetupCompiled(p, ccs)
}

// SetupCompiled runs the Groth16 setup on ccs, which must be Compile(p).
func SetupCompiled(p Params, ccs constraint.ConstraintSystem) (*Keys, error) {
	pk, vk, err := groth16.Setup(ccs)
	if err != nil {
		return nil, fmt.Errorf("zk: setup: %w", err)
	}
	return &Keys{Params: p, CCS: ccs, PK: pk, VK: vk}, nil
}

// VKBytes is the verifying key's canonical (compressed) encoding.
func VKBytes(vk groth16.VerifyingKey) []byte {
	var buf bytes.Buffer
	if _, err := vk.WriteTo(&buf); err != nil {
		panic(err) // writing to memory cannot fail
	}
	return buf.Bytes()
}

// VKHash is SHA-256 of the verifying key's encoding, in hex: the value a
// run spec pins.
func VKHash(vk groth16.VerifyingKey) string {
	h := sha256.Sum256(VKBytes(vk))
	return hex.EncodeToString(h[:])
}

// Key files in a keys directory.
const (
	ParamsFile = "params.json"
	VKFile     = "step.vk"
	PKFile     = "step.pk"
)

// Save writes params.json, step.vk and, with a proving key, step.pk and
// circuit.json (the digest of CCS, the constraint system the keys were
// made for, which LoadProver checks) into dir.
func (k *Keys) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pj, _ := json.MarshalIndent(k.Params, "", "  ")
	if err := WriteFile(filepath.Join(dir, ParamsFile), func(w io.Writer) error { _, err := w.Write(append(pj, '\n')); return err }); err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(dir, VKFile), func(w io.Writer) error { _, err := k.VK.WriteTo(w); return err }); err != nil {
		return err
	}
	if k.PK == nil {
		return nil
	}
	if k.CCS == nil {
		return fmt.Errorf("%w: a proving key without the constraint system it was made for", ErrKeys)
	}
	c, err := circuitOf(k.CCS)
	if err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(dir, PKFile), func(w io.Writer) error { _, err := k.PK.WriteRawTo(w); return err }); err != nil {
		return err
	}
	return writeCircuit(dir, c)
}

// WriteFile writes path through a temporary file that fn fills, synced,
// then renamed: a failed or interrupted write never leaves half a file
// under the name.
func WriteFile(path string, fn func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// LoadParams reads a keys directory's params.json.
func LoadParams(dir string) (Params, error) {
	var p Params
	b, err := os.ReadFile(filepath.Join(dir, ParamsFile))
	if err != nil {
		return p, fmt.Errorf("%w: %v", ErrKeys, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("%w: %s: %v", ErrKeys, ParamsFile, err)
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%w: %s: %v", ErrKeys, ParamsFile, err)
	}
	return p, nil
}

// LoadVerifier reads the parameters and the verifying key of a keys
// directory; it checks the key against wantHash when that is not empty.
func LoadVerifier(dir, wantHash string) (*Keys, error) {
	p, err := LoadParams(dir)
	if err != nil {
		return nil, err
	}
	b, err := readLimited(filepath.Join(dir, VKFile), maxVKBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeys, err)
	}
	vk, err := decodeVK(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeys, VKFile, err)
	}
	if wantHash != "" && VKHash(vk) != wantHash {
		return nil, fmt.Errorf("%w: verifying key hash %s, the run pins %s", ErrKeys, VKHash(vk), wantHash)
	}
	return &Keys{Params: p, VK: vk}, nil
}

// LoadProver reads a whole keys directory and compiles the circuit (the
// compilation is deterministic). It refuses keys made for another
// constraint system than the one this build compiles (CircuitFile), and a
// directory without CircuitFile (keys of an older vtrain), before it reads
// the proving key.
func LoadProver(dir, wantHash string) (*Keys, error) {
	k, err := LoadVerifier(dir, wantHash)
	if err != nil {
		return nil, err
	}
	made, err := readCircuit(dir)
	if err != nil {
		return nil, err
	}
	if k.CCS, err = Compile(k.Params); err != nil {
		return nil, err
	}
	if err := checkCircuit(dir, made, k.CCS); err != nil {
		return nil, err
	}
	pk, err := readPK(filepath.Join(dir, PKFile), k.CCS)
	if err != nil {
		return nil, err
	}
	// A proving key of another setup than the directory's verifying key
	// (a step.pk copied from the demo's cache into a ceremony's keys, say)
	// passes every check above and makes proofs that every member refuses:
	// the peer would be excluded as a forger. Say so here.
	if err := sameSetup(pk, k.VK); err != nil {
		return nil, fmt.Errorf("%w: %s and %s: %v", ErrKeys, PKFile, VKFile, err)
	}
	k.PK = pk
	return k, nil
}

// maxVKBytes bounds a verifying key's encoding: a few points per public
// input and commitment (848 bytes for the 784×10 circuit).
const maxVKBytes = 1 << 20

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over %d bytes", filepath.Base(path), limit)
	}
	return b, nil
}

// decodeVK decodes a verifying key from bytes of any origin: its counts
// are checked before gnark's decoder allocates from them (keyfile.go).
func decodeVK(b []byte) (vk groth16.VerifyingKey, err error) {
	if err := checkVKCounts(b); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			vk, err = nil, fmt.Errorf("malformed: %v", r)
		}
	}()
	vk = groth16.NewVerifyingKey(ecc.BN254)
	n, err := vk.ReadFrom(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if n != int64(len(b)) {
		return nil, fmt.Errorf("%d trailing bytes after the key", int64(len(b))-n)
	}
	return vk, nil
}

// readPK reads a proving key for ccs from path, checking its layout
// against ccs first (checkPKLayout): a key of another circuit would fail
// in the middle of a proof with gnark's "len(points) != len(scalars)", and
// a hostile one would make the decoder allocate what its counts declare.
// The points are not checked to lie in their subgroups (it is the prover's
// own key: a bad point only spoils its own proofs, which sameSetup and
// every verifier catch); that check would cost seconds per start.
func readPK(path string, ccs constraint.ConstraintSystem) (groth16.ProvingKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeys, err)
	}
	defer f.Close()
	wires := ccsWires(ccs)
	if err := checkPKLayout(f, ccs.GetNbConstraints(), wires); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (keys of another circuit or an older vtrain? make them again)", ErrKeys, filepath.Base(path), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeys, err)
	}
	pk := groth16.NewProvingKey(ecc.BN254)
	if _, err := pk.UnsafeReadFrom(bufio.NewReaderSize(f, 1<<20)); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeys, filepath.Base(path), err)
	}
	return pk, nil
}

// Prove proves the statement with the witness. It fails, without a proof,
// when the witness does not satisfy the statement.
func (k *Keys) Prove(st Statement, w Witness) ([]byte, error) {
	if k.PK == nil || k.CCS == nil {
		return nil, fmt.Errorf("%w: no proving key", ErrKeys)
	}
	a, err := assign(k.Params, st, w)
	if err != nil {
		return nil, err
	}
	wit, err := frontend.NewWitness(a, ecc.BN254.ScalarField())
	if err != nil {
		return nil, fmt.Errorf("zk: witness: %w", err)
	}
	proof, err := groth16.Prove(k.CCS, k.PK, wit)
	if err != nil {
		return nil, fmt.Errorf("zk: prove: %w", err)
	}
	var buf bytes.Buffer
	if _, err := proof.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Verify checks a serialized proof of the statement. Any failure, from a
// malformed encoding to a false statement, wraps ErrProof.
func (k *Keys) Verify(st Statement, proofBytes []byte) (err error) {
	if len(proofBytes) == 0 || len(proofBytes) > MaxProofBytes {
		return fmt.Errorf("%w: %d proof bytes (limit %d)", ErrProof, len(proofBytes), MaxProofBytes)
	}
	if err := checkProofCounts(proofBytes); err != nil {
		return fmt.Errorf("%w: malformed proof: %v", ErrProof, err)
	}
	defer func() { // the decoder must never take a peer down
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: malformed proof: %v", ErrProof, r)
		}
	}()
	proof := groth16.NewProof(ecc.BN254)
	n, err := proof.ReadFrom(bytes.NewReader(proofBytes))
	if err != nil {
		return fmt.Errorf("%w: malformed proof: %v", ErrProof, err)
	}
	if n != int64(len(proofBytes)) {
		return fmt.Errorf("%w: %d trailing bytes after the proof", ErrProof, int64(len(proofBytes))-n)
	}
	pa, err := publicAssign(k.Params, st)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProof, err)
	}
	pub, err := frontend.NewWitness(pa, ecc.BN254.ScalarField(), frontend.PublicOnly())
	if err != nil {
		return fmt.Errorf("zk: public witness: %w", err)
	}
	if err := groth16.Verify(proof, k.VK, pub); err != nil {
		return fmt.Errorf("%w: %v", ErrProof, err)
	}
	return nil
}

// checkProofCounts checks the one count a serialized BN254 Groth16 proof
// declares, its commitments after the points Ar, Bs and Krs, against the
// bytes that follow it, before gnark's decoder trusts it: the decoder
// allocates the points a count declares before it reads them (2³²−1 of
// them are 256 GiB: a fatal out-of-memory error, which no recover
// catches). Each point is compressed or not as its first byte's top two
// bits say, as the decoder reads it.
func checkProofCounts(b []byte) error {
	w := &keyWalk{r: bufio.NewReader(bytes.NewReader(b))}
	for _, size := range []int64{g1Compressed, g2Compressed, g1Compressed} {
		if w.point(size, "a point") != nil {
			return errors.New("truncated")
		}
	}
	n, err := w.u32("the commitments")
	if err != nil {
		return errors.New("truncated")
	}
	if room := uint64(int64(len(b))-w.off) / g1Compressed; n > room {
		return fmt.Errorf("%d commitments declared, room for %d in %d bytes", n, room, len(b))
	}
	return nil
}

// Bundle is a proof with its statement, as vtrain prove writes it and
// vtrain verify-proof reads it.
type Bundle struct {
	Version  int    `json:"version"`
	Params   Params `json:"params"`
	ThetaIn  string `json:"theta_in"`
	ThetaOut string `json:"theta_out"`
	DataRoot string `json:"data_root"`
	Run      string `json:"run"`
	Round    uint64 `json:"round"`
	Peer     string `json:"peer"`
	Seed     uint64 `json:"batch_seed"` // the draw: batch Step of the sampler seeded with Seed
	Step     uint64 `json:"step"`       // over DataSize samples
	DataSize uint64 `json:"data_size"`
	Proof    []byte `json:"proof"` // base64 in JSON
}

// BundleVersion is the version of the bundle format (2: with the draw).
const BundleVersion = 2

// NewBundle packs a statement and its proof.
func NewBundle(p Params, st Statement, proof []byte) Bundle {
	return Bundle{
		Version: BundleVersion, Params: p,
		ThetaIn: Hex(st.ThetaIn), ThetaOut: Hex(st.ThetaOut), DataRoot: Hex(st.DataRoot),
		Run: hex.EncodeToString(st.Context.Run[:]), Round: st.Context.Round, Peer: st.Context.Peer,
		Seed: st.Draw.Seed, Step: st.Draw.Step, DataSize: st.Draw.Size,
		Proof: proof,
	}
}

// Statement decodes the bundle's statement, checking every field.
func (b Bundle) Statement() (Statement, error) {
	var st Statement
	var err error
	if b.Version != BundleVersion {
		return st, fmt.Errorf("zk: bundle version %d, want %d", b.Version, BundleVersion)
	}
	st.Draw = Draw{Seed: b.Seed, Step: b.Step, Size: b.DataSize}
	if st.ThetaIn, err = ParseHex(b.ThetaIn); err != nil {
		return st, fmt.Errorf("theta_in: %w", err)
	}
	if st.ThetaOut, err = ParseHex(b.ThetaOut); err != nil {
		return st, fmt.Errorf("theta_out: %w", err)
	}
	if st.DataRoot, err = ParseHex(b.DataRoot); err != nil {
		return st, fmt.Errorf("data_root: %w", err)
	}
	run, err := hex.DecodeString(b.Run)
	if err != nil || len(run) != 32 {
		return st, fmt.Errorf("zk: run %q is not 64 hex digits", b.Run)
	}
	copy(st.Context.Run[:], run)
	st.Context.Round, st.Context.Peer = b.Round, b.Peer
	if len(b.Peer) == 0 || len(b.Peer) > 256 {
		return st, errors.New("zk: peer must be 1..256 bytes")
	}
	return st, nil
}

// ReadBundle decodes a bundle strictly, from at most 64 KiB.
func ReadBundle(r io.Reader) (Bundle, error) {
	var b Bundle
	data, err := io.ReadAll(io.LimitReader(r, 64<<10+1))
	if err != nil {
		return b, err
	}
	if len(data) > 64<<10 {
		return b, errors.New("zk: proof bundle over 64 KiB")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("zk: proof bundle: %w", err)
	}
	return b, nil
}

// Encode writes the bundle as ReadBundle reads it (JSON).
func (b Bundle) Encode() []byte {
	out, err := json.Marshal(b)
	if err != nil {
		panic(fmt.Sprintf("zk: bundle: %v", err)) // plain fields only
	}
	return out
}

// DecodeBundle decodes an encoded bundle strictly (ReadBundle).
func DecodeBundle(b []byte) (Bundle, error) { return ReadBundle(bytes.NewReader(b)) }

// VerifierFromBytes reads a verifying key for the circuit p from its bytes
// (VKBytes), as a ledger stores it, and checks it against wantHash. The
// bytes are hashed before they are decoded: VKHash is the hash of exactly
// these bytes, and gnark's decoder allocates the points a count in them
// declares before it reads any (a count of 2^32-1 is a fatal
// out-of-memory error), so it decodes only the key the run pins.
func VerifierFromBytes(p Params, b []byte, wantHash string) (*Keys, error) {
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("%w: verifying key of %d bytes", ErrKeys, len(b))
	}
	if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != wantHash {
		return nil, fmt.Errorf("%w: verifying key hash %x, the run pins %s", ErrKeys, h, wantHash)
	}
	vk, err := decodeVK(b)
	if err != nil {
		return nil, fmt.Errorf("%w: verifying key: %v", ErrKeys, err)
	}
	if h := VKHash(vk); h != wantHash {
		return nil, fmt.Errorf("%w: verifying key hash %s, the run pins %s", ErrKeys, h, wantHash)
	}
	return &Keys{Params: p, VK: vk}, nil
}
