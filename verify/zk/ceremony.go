package zk

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"

	"github.com/consensys/gnark-crypto/ecc"
	"github.com/consensys/gnark/backend/groth16/bn254/mpcsetup"
	cs "github.com/consensys/gnark/constraint/bn254"
)

// A multi-party Groth16 setup (a "ceremony"), on gnark's
// backend/groth16/bn254/mpcsetup (Bowe–Gabizon–Miers, eprint 2017/1050).
//
// Phase 1 ("powers of τ") is independent of the circuit but for its size:
// each participant multiplies τ, α, β by fresh secrets and proves that it
// did. It ends with a public random beacon (Seal). Phase 2 is the run's
// circuit: each participant multiplies δ (and the σ of gnark's commitment)
// by a fresh secret; it too ends with a beacon, and yields the keys.
//
// Trust: the keys are sound, whatever the other participants did, if at
// least one participant of phase 1 and at least one of phase 2 drew its
// secret honestly (crypto/rand) and destroyed it. If every participant of
// one phase kept its secret and they pool them, they can forge proofs of
// false steps. Nobody, even then, learns a prover's data: the keys of a
// transcript that verifies are well formed, and Groth16 proofs under
// well-formed keys are zero-knowledge even to whoever knows the secrets
// (gnark's prover does not check its keys, so that rests on the
// verification). The beacons add no secrecy (they
// are public); they only take from the last participant of each phase the
// power to grind the final parameters. That needs a beacon nobody can know
// before the last contribution is published: announce it in advance (for
// example a drand round or a block hash at a height after the deadline).
//
// A transcript is one file per phase that grows by one record per
// contribution:
//
//	"vtrain-ceremony\n"  magic (16 bytes)
//	uint32               version (1)
//	uint32, JSON         header (at most 64 KiB): the phase, the size, and
//	                     for phase 2 the circuit and the phase-1 result
//	repeated: uint64, bytes   one record: gnark's serialization of the state
//
// Phase 1 records are the contributions in order (the initial state
// follows from the size). Phase 2's first record is the initial state,
// computed from the sealed phase 1 and the circuit (anyone recomputes it),
// then the contributions. A contribution is identified by the SHA-256 of
// its record, which is also the challenge the next contribution is bound
// to: the records form a hash chain, so a contribution cannot be dropped,
// reordered or altered without breaking it.

// ErrCeremony is wrapped by every error about a ceremony transcript.
var ErrCeremony = errors.New("zk: ceremony")

const (
	ceremonyMagic   = "vtrain-ceremony\n"
	ceremonyVersion = 1

	// MaxCeremonyPower bounds the domain (2^power) of a transcript: 2^24
	// supports circuits of up to 16.7M constraints, with 3.2 GB records.
	MaxCeremonyPower = 24
	// MaxContributions bounds the records of one transcript.
	MaxContributions = 1000
	maxHeaderBytes   = 64 << 10
	maxCommitments   = 16
	maxBeaconBytes   = 1024

	g1Size          = 32 // compressed
	g2Size          = 64
	updateProofSize = g1Size + g2Size
	challengeSize   = 1 + sha256.Size // a length byte and the previous record's hash
)

// CeremonyHeader is a transcript's header.
type CeremonyHeader struct {
	Phase int `json:"phase"`
	Power int `json:"power"` // the domain has 2^power points

	// Phase 2 only.
	Params      *Params       `json:"params,omitempty"`
	Constraints int           `json:"constraints,omitempty"`
	Phase1      *Phase1Result `json:"phase1,omitempty"`
	Shape       *Phase2Shape  `json:"shape,omitempty"`
}

// Phase1Result names the sealed phase 1 that a phase 2 builds on.
type Phase1Result struct {
	Contributions []string `json:"contributions"` // the IDs, in order
	Beacon        string   `json:"beacon"`        // hex
}

// Phase2Shape is the size of a phase-2 state for the circuit: the private
// wires of the proving key and the wires of each commitment.
type Phase2Shape struct {
	PKK         int   `json:"pkk"`
	Commitments []int `json:"commitments"`
}

func (h *CeremonyHeader) n() uint64 { return 1 << h.Power }

func (h *CeremonyHeader) validate() error {
	if h.Power < 1 || h.Power > MaxCeremonyPower {
		return fmt.Errorf("%w: domain 2^%d out of range 2^1..2^%d", ErrCeremony, h.Power, MaxCeremonyPower)
	}
	switch h.Phase {
	case 1:
		if h.Params != nil || h.Phase1 != nil || h.Shape != nil || h.Constraints != 0 {
			return fmt.Errorf("%w: a phase-1 header names no circuit", ErrCeremony)
		}
		return nil
	case 2:
	default:
		return fmt.Errorf("%w: phase %d, want 1 or 2", ErrCeremony, h.Phase)
	}
	switch {
	case h.Params == nil || h.Phase1 == nil || h.Shape == nil:
		return fmt.Errorf("%w: a phase-2 header needs params, phase1 and shape", ErrCeremony)
	case h.Params.Validate() != nil:
		return fmt.Errorf("%w: %v", ErrCeremony, h.Params.Validate())
	case h.Constraints < 1 || uint64(h.Constraints) > h.n():
		return fmt.Errorf("%w: %d constraints in a domain of 2^%d", ErrCeremony, h.Constraints, h.Power)
	case len(h.Phase1.Contributions) > MaxContributions:
		return fmt.Errorf("%w: %d phase-1 contributions (limit %d)", ErrCeremony, len(h.Phase1.Contributions), MaxContributions)
	case h.Shape.PKK < 0 || h.Shape.PKK > 1<<(MaxCeremonyPower+2) || len(h.Shape.Commitments) > maxCommitments:
		return fmt.Errorf("%w: phase-2 shape out of range", ErrCeremony)
	}
	if _, err := ParseBeacon(h.Phase1.Beacon); err != nil {
		return err
	}
	for _, c := range h.Shape.Commitments {
		if c < 0 || c > 1<<(MaxCeremonyPower+2) {
			return fmt.Errorf("%w: phase-2 shape out of range", ErrCeremony)
		}
	}
	return nil
}

// recordSize is the exact size of a record of this transcript: every point
// compressed, as gnark writes them; contribution says whether the record
// carries a challenge (all but phase 2's initial state).
func (h *CeremonyHeader) recordSize(contribution bool) int64 {
	n := int64(h.n())
	chal := int64(1)
	if contribution {
		chal = challengeSize
	}
	if h.Phase == 1 {
		// 3 update proofs, N, [β]₂, [τ¹..τ²ᴺ⁻²]₁, [τ¹..τᴺ⁻¹]₂, [βτ⁰..]₁, [ατ⁰..]₁
		return 3*updateProofSize + 8 + g2Size + (2*n-2)*g1Size + (n-1)*g2Size + 2*n*g1Size + chal
	}
	s := int64(2) + g1Size + 4 + int64(h.Shape.PKK)*g1Size + 4 + (n-1)*g1Size + g2Size
	for _, c := range h.Shape.Commitments {
		s += 4 + int64(c)*g1Size + g2Size + updateProofSize
	}
	return s + updateProofSize + chal
}

// Beacons are hex strings of 1 to 1024 bytes.

// ParseBeacon decodes a hex beacon.
func ParseBeacon(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 || len(b) > maxBeaconBytes {
		return nil, fmt.Errorf("%w: the beacon must be 1 to %d bytes in hex, got %q", ErrCeremony, maxBeaconBytes, short(s))
	}
	return b, nil
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// ContributionID is the ID of a record: SHA-256 of its bytes, in hex.
func ContributionID(record []byte) string {
	h := sha256.Sum256(record)
	return hex.EncodeToString(h[:])
}

// transcriptReader reads a transcript's header and then its records one at
// a time, each bounded by the size the header implies.
type transcriptReader struct {
	r      *bufio.Reader
	h      CeremonyHeader
	n      int // records read
	offset int64
}

func newTranscriptReader(r io.Reader) (*transcriptReader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var pre [len(ceremonyMagic) + 8]byte
	if _, err := io.ReadFull(br, pre[:]); err != nil {
		return nil, fmt.Errorf("%w: not a transcript: %v", ErrCeremony, err)
	}
	if string(pre[:len(ceremonyMagic)]) != ceremonyMagic {
		return nil, fmt.Errorf("%w: not a vtrain ceremony transcript (bad magic)", ErrCeremony)
	}
	if v := binary.BigEndian.Uint32(pre[len(ceremonyMagic):]); v != ceremonyVersion {
		return nil, fmt.Errorf("%w: transcript version %d, this vtrain reads version %d", ErrCeremony, v, ceremonyVersion)
	}
	hl := binary.BigEndian.Uint32(pre[len(ceremonyMagic)+4:])
	if hl > maxHeaderBytes {
		return nil, fmt.Errorf("%w: header of %d bytes (limit %d)", ErrCeremony, hl, maxHeaderBytes)
	}
	hb := make([]byte, hl)
	if _, err := io.ReadFull(br, hb); err != nil {
		return nil, fmt.Errorf("%w: truncated header: %v", ErrCeremony, err)
	}
	t := &transcriptReader{r: br, offset: int64(len(pre)) + int64(hl)}
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t.h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCeremony, err)
	}
	if err := t.h.validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// next returns the next record, or io.EOF after the last.
func (t *transcriptReader) next() ([]byte, error) {
	var lb [8]byte
	if _, err := io.ReadFull(t.r, lb[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: record %d: truncated length at byte %d", ErrCeremony, t.n, t.offset)
	}
	if t.n >= MaxContributions+1 {
		return nil, fmt.Errorf("%w: more than %d records", ErrCeremony, MaxContributions)
	}
	want := t.h.recordSize(!(t.h.Phase == 2 && t.n == 0))
	if l := binary.BigEndian.Uint64(lb[:]); l != uint64(want) {
		return nil, fmt.Errorf("%w: record %d is %d bytes, a record of this transcript is %d", ErrCeremony, t.n, l, want)
	}
	// Grow with the bytes that arrive: a short file that declares a big
	// record costs no more memory than its size.
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, t.r, want); err != nil {
		return nil, fmt.Errorf("%w: record %d: truncated at %d of %d bytes", ErrCeremony, t.n, buf.Len(), want)
	}
	t.n++
	t.offset += 8 + want
	return buf.Bytes(), nil
}

func writeTranscriptHeader(w io.Writer, h *CeremonyHeader) error {
	hb, err := json.Marshal(h)
	if err != nil {
		return err
	}
	var pre [len(ceremonyMagic) + 8]byte
	copy(pre[:], ceremonyMagic)
	binary.BigEndian.PutUint32(pre[len(ceremonyMagic):], ceremonyVersion)
	binary.BigEndian.PutUint32(pre[len(ceremonyMagic)+4:], uint32(len(hb)))
	if _, err := w.Write(pre[:]); err != nil {
		return err
	}
	_, err = w.Write(hb)
	return err
}

func writeRecord(w io.Writer, b []byte) error {
	var lb [8]byte
	binary.BigEndian.PutUint64(lb[:], uint64(len(b)))
	if _, err := w.Write(lb[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func serialize(v io.WriterTo) []byte {
	var buf bytes.Buffer
	if _, err := v.WriteTo(&buf); err != nil {
		panic(err) // writing to memory cannot fail
	}
	return buf.Bytes()
}

// challengeOf returns the hash a contribution record is bound to (its last
// 32 bytes, after a length byte of 32).
func challengeOf(rec []byte) (string, bool) {
	if len(rec) < challengeSize || rec[len(rec)-challengeSize] != sha256.Size {
		return "", false
	}
	return hex.EncodeToString(rec[len(rec)-sha256.Size:]), true
}

// decodePhase1 decodes a record of a phase-1 transcript whose length
// recordSize has checked. gnark's decoder sizes its slices from the N in
// the record: it must be the header's before decoding.
func (h *CeremonyHeader) decodePhase1(rec []byte) (p *mpcsetup.Phase1, err error) {
	const nAt = 3 * updateProofSize
	if got := binary.BigEndian.Uint64(rec[nAt : nAt+8]); got != h.n() {
		return nil, fmt.Errorf("domain size %d, the transcript's is %d (or a point is not compressed)", got, h.n())
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed: %v", r)
		}
	}()
	p = new(mpcsetup.Phase1)
	n, err := p.ReadFrom(bytes.NewReader(rec))
	if err != nil {
		return nil, fmt.Errorf("malformed: %v", err)
	}
	if n != int64(len(rec)) {
		return nil, fmt.Errorf("malformed: %d of %d bytes decoded", n, len(rec))
	}
	return p, nil
}

// decodePhase2 decodes a record of a phase-2 transcript, first checking
// every length gnark's decoder will allocate from against the header.
func (h *CeremonyHeader) decodePhase2(rec []byte) (p *mpcsetup.Phase2, err error) {
	off := 0
	u32 := func(want int, what string) error {
		if got := binary.BigEndian.Uint32(rec[off : off+4]); uint64(got) != uint64(want) {
			return fmt.Errorf("%s has %d points, the transcript's %d (or a point is not compressed)", what, got, want)
		}
		return nil
	}
	if got := int(binary.BigEndian.Uint16(rec)); got != len(h.Shape.Commitments) {
		return nil, fmt.Errorf("%d commitments, the circuit has %d", got, len(h.Shape.Commitments))
	}
	off = 2 + g1Size
	if err := u32(h.Shape.PKK, "the proving key"); err != nil {
		return nil, err
	}
	off += 4 + h.Shape.PKK*g1Size
	if err := u32(int(h.n()-1), "Z"); err != nil {
		return nil, err
	}
	off += 4 + int(h.n()-1)*g1Size + g2Size
	for i, c := range h.Shape.Commitments {
		if err := u32(c, fmt.Sprintf("commitment %d", i)); err != nil {
			return nil, err
		}
		off += 4 + c*g1Size
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed: %v", r)
		}
	}()
	p = new(mpcsetup.Phase2)
	n, err := p.ReadFrom(bytes.NewReader(rec))
	if err != nil {
		return nil, fmt.Errorf("malformed: %v", err)
	}
	if n != int64(len(rec)) {
		return nil, fmt.Errorf("malformed: %d of %d bytes decoded", n, len(rec))
	}
	return p, nil
}

// CeremonyPower is the domain a circuit needs: 2^power ≥ its constraints.
func CeremonyPower(constraints int) int {
	if constraints <= 2 {
		return 1
	}
	return bits.Len64(ecc.NextPowerOfTwo(uint64(constraints)) - 1)
}

// InitPhase1 writes an empty phase-1 transcript for a domain of 2^power.
func InitPhase1(w io.Writer, power int) error {
	h := CeremonyHeader{Phase: 1, Power: power}
	if err := h.validate(); err != nil {
		return err
	}
	return writeTranscriptHeader(w, &h)
}

// Contribution is one contribution as a transcript lists it.
type ContributionInfo struct {
	Phase int    `json:"phase"`
	Index int    `json:"index"` // 1 for the first contribution
	ID    string `json:"id"`
}

// Contribute reads a transcript, adds a contribution with fresh secrets
// from crypto/rand, and writes the longer transcript. The secrets live
// only in this call's memory: they are gone when it returns. It checks the
// shape of every record, not the proofs: VerifyCeremony does that.
func Contribute(in io.Reader, out io.Writer) (ContributionInfo, error) {
	t, err := newTranscriptReader(in)
	if err != nil {
		return ContributionInfo{}, err
	}
	if err := writeTranscriptHeader(out, &t.h); err != nil {
		return ContributionInfo{}, err
	}
	var last []byte
	for {
		rec, err := t.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return ContributionInfo{}, err
		}
		if t.n > MaxContributions {
			return ContributionInfo{}, fmt.Errorf("%w: the transcript is full (%d contributions)", ErrCeremony, MaxContributions)
		}
		if err := writeRecord(out, rec); err != nil {
			return ContributionInfo{}, err
		}
		last = rec
	}
	info := ContributionInfo{Phase: t.h.Phase, Index: t.n + 1}
	var next []byte
	switch t.h.Phase {
	case 1:
		p := mpcsetup.NewPhase1(t.h.n())
		if last != nil {
			if p, err = t.h.decodePhase1(last); err != nil {
				return info, fmt.Errorf("%w: contribution %d: %v", ErrCeremony, t.n, err)
			}
		}
		p.Contribute()
		next = serialize(p)
	case 2:
		if last == nil {
			return info, fmt.Errorf("%w: a phase-2 transcript without its initial state", ErrCeremony)
		}
		info.Index = t.n // record 0 is the initial state
		p, err := t.h.decodePhase2(last)
		if err != nil {
			return info, fmt.Errorf("%w: record %d: %v", ErrCeremony, t.n-1, err)
		}
		p.Contribute()
		next = serialize(p)
	}
	if int64(len(next)) != t.h.recordSize(true) {
		return info, fmt.Errorf("%w: contribution of %d bytes, want %d", ErrCeremony, len(next), t.h.recordSize(true))
	}
	info.ID = ContributionID(next)
	return info, writeRecord(out, next)
}

// Phase1Verified is a verified phase 1, sealed with its beacon.
type Phase1Verified struct {
	Power         int
	Contributions []string
	Beacon        string // hex; empty if not sealed
	Commons       mpcsetup.SrsCommons
}

// VerifyPhase1 checks every contribution of a phase-1 transcript in order
// against the one before it (its proofs of knowledge, its challenge, the
// well-formedness of the powers) and seals the result with the beacon.
// progress, if not nil, is told of each contribution once it verifies.
func VerifyPhase1(r io.Reader, beacon []byte, progress func(ContributionInfo)) (*Phase1Verified, error) {
	t, err := newTranscriptReader(r)
	if err != nil {
		return nil, err
	}
	if t.h.Phase != 1 {
		return nil, fmt.Errorf("%w: a phase-%d transcript where phase 1 was expected", ErrCeremony, t.h.Phase)
	}
	// The initial state is built once a contribution of its size has been
	// read: a short file that declares a big domain costs nothing.
	var prev *mpcsetup.Phase1
	var prevID string
	res := &Phase1Verified{Power: t.h.Power}
	for {
		rec, err := t.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		i := t.n
		if prev == nil {
			prev = mpcsetup.NewPhase1(t.h.n())
			prevID = ContributionID(serialize(prev))
		}
		next, err := t.h.decodePhase1(rec)
		if err != nil {
			return nil, fmt.Errorf("%w: phase 1 contribution %d: %v", ErrCeremony, i, err)
		}
		if err := link(1, i, rec, prevID, res.Contributions); err != nil {
			return nil, err
		}
		if err := prev.Verify(next); err != nil {
			return nil, fmt.Errorf("%w: phase 1 contribution %d (%s) does not verify: %v", ErrCeremony, i, ContributionID(rec)[:16], err)
		}
		prev, prevID = next, ContributionID(rec)
		res.Contributions = append(res.Contributions, prevID)
		if progress != nil {
			progress(ContributionInfo{Phase: 1, Index: i, ID: prevID})
		}
	}
	if beacon == nil {
		return res, nil
	}
	if prev == nil {
		return nil, fmt.Errorf("%w: phase 1 has no contribution: its secrets would be the beacon's, which is public", ErrCeremony)
	}
	if len(beacon) > maxBeaconBytes {
		return nil, fmt.Errorf("%w: the beacon must be 1 to %d bytes", ErrCeremony, maxBeaconBytes)
	}
	res.Commons, res.Beacon = prev.Seal(beacon), hex.EncodeToString(beacon)
	return res, nil
}

// link checks that contribution i of a phase was made on top of the
// record before it, whose ID is prevID.
func link(phase, i int, rec []byte, prevID string, ids []string) error {
	chal, ok := challengeOf(rec)
	if !ok {
		return fmt.Errorf("%w: phase %d contribution %d names no previous contribution", ErrCeremony, phase, i)
	}
	if chal == prevID {
		return nil
	}
	for j, id := range ids {
		if id == chal {
			return fmt.Errorf("%w: phase %d contribution %d (%s) was made on contribution %d, not on the one before it: contributions are out of order or missing",
				ErrCeremony, phase, i, ContributionID(rec)[:16], j+1)
		}
	}
	return fmt.Errorf("%w: phase %d contribution %d (%s) was made on %s, which is not the contribution before it (%s): a contribution is missing, out of order or altered",
		ErrCeremony, phase, i, ContributionID(rec)[:16], chal[:16], prevID[:16])
}

// InitPhase2 writes the phase-2 transcript of the circuit p on a verified
// and sealed phase 1: its header and initial state. Phase 1's domain must
// hold the circuit, and phase 1 must have a contribution.
func InitPhase2(w io.Writer, p1 *Phase1Verified, p Params) error {
	if p1.Beacon == "" {
		return fmt.Errorf("%w: phase 1 is not sealed with a beacon", ErrCeremony)
	}
	if len(p1.Contributions) == 0 {
		return fmt.Errorf("%w: phase 1 has no contribution: its secrets would be the beacon's, which is public", ErrCeremony)
	}
	ccs, err := Compile(p)
	if err != nil {
		return err
	}
	h, init, _, err := phase2Initial(p, ccs.(*cs.R1CS), p1)
	if err != nil {
		return err
	}
	if err := writeTranscriptHeader(w, h); err != nil {
		return err
	}
	return writeRecord(w, init)
}

// phase2Initial is phase2Init; tests memoize it (gnark's Initialize costs
// seconds even for the smallest circuit).
var phase2Initial = phase2Init

// phase2Init computes a phase-2 transcript's header and initial state, and
// the evaluations that sealing needs.
func phase2Init(p Params, r1cs *cs.R1CS, p1 *Phase1Verified) (*CeremonyHeader, []byte, *mpcsetup.Phase2Evaluations, error) {
	nc := r1cs.GetNbConstraints()
	if uint64(nc) > 1<<p1.Power {
		return nil, nil, nil, fmt.Errorf("%w: the circuit has %d constraints; phase 1's domain of 2^%d is too small", ErrCeremony, nc, p1.Power)
	}
	var ph mpcsetup.Phase2
	evals := ph.Initialize(r1cs, &p1.Commons)
	h := &CeremonyHeader{
		Phase: 2, Power: p1.Power, Params: &p, Constraints: nc,
		Phase1: &Phase1Result{Contributions: p1.Contributions, Beacon: p1.Beacon},
		Shape:  &Phase2Shape{PKK: len(ph.Parameters.G1.PKK), Commitments: []int{}},
	}
	for _, c := range ph.Parameters.G1.SigmaCKK {
		h.Shape.Commitments = append(h.Shape.Commitments, len(c))
	}
	if err := h.validate(); err != nil {
		return nil, nil, nil, err
	}
	init := serialize(&ph)
	if int64(len(init)) != h.recordSize(false) {
		return nil, nil, nil, fmt.Errorf("%w: initial state of %d bytes, want %d", ErrCeremony, len(init), h.recordSize(false))
	}
	return h, init, &evals, nil
}

// CeremonyRecord is what a ceremony's keys come with: every contribution
// of both phases, in order, and the beacons, so that each participant can
// check that its contribution is in the keys.
type CeremonyRecord struct {
	Version     int      `json:"version"`
	Params      Params   `json:"params"`
	Constraints int      `json:"constraints"`
	Power       int      `json:"power"`
	Phase1      []string `json:"phase1_contributions"`
	Beacon1     string   `json:"phase1_beacon"`
	Phase2      []string `json:"phase2_contributions"`
	Beacon2     string   `json:"phase2_beacon,omitempty"`
	VKSHA256    string   `json:"vk_sha256,omitempty"`
}

// CeremonyFile is the record's name in a keys directory.
const CeremonyFile = "ceremony.json"

// VerifyCeremony checks both transcripts: all of phase 1 (as
// VerifyPhase1, sealed with the beacon the phase-2 header names), then
// phase 2 as VerifyPhase2.
func VerifyCeremony(phase1, phase2 io.Reader, beacon2 []byte, progress func(ContributionInfo)) (*CeremonyRecord, *Keys, error) {
	t, err := newTranscriptReader(phase2)
	if err != nil {
		return nil, nil, err
	}
	if t.h.Phase != 2 {
		return nil, nil, fmt.Errorf("%w: a phase-%d transcript where phase 2 was expected", ErrCeremony, t.h.Phase)
	}
	b1, _ := ParseBeacon(t.h.Phase1.Beacon)
	p1, err := VerifyPhase1(phase1, b1, progress)
	if err != nil {
		return nil, nil, err
	}
	return verifyPhase2(p1, t, beacon2, progress)
}

// VerifyPhase2 checks a phase-2 transcript on a verified phase 1: that it
// builds on exactly that phase 1 (its contributions and beacon) and on the
// circuit its header names (recomputing its initial state), and every
// contribution in order against the one before it. With beacon2 not nil it
// also seals phase 2 and returns the keys; that needs a contribution in
// each phase.
func VerifyPhase2(p1 *Phase1Verified, phase2 io.Reader, beacon2 []byte, progress func(ContributionInfo)) (*CeremonyRecord, *Keys, error) {
	t, err := newTranscriptReader(phase2)
	if err != nil {
		return nil, nil, err
	}
	if t.h.Phase != 2 {
		return nil, nil, fmt.Errorf("%w: a phase-%d transcript where phase 2 was expected", ErrCeremony, t.h.Phase)
	}
	return verifyPhase2(p1, t, beacon2, progress)
}

func verifyPhase2(p1 *Phase1Verified, t *transcriptReader, beacon2 []byte, progress func(ContributionInfo)) (*CeremonyRecord, *Keys, error) {
	if !slices.Equal(p1.Contributions, t.h.Phase1.Contributions) || p1.Power != t.h.Power || p1.Beacon != t.h.Phase1.Beacon {
		return nil, nil, fmt.Errorf("%w: phase 2 was started from another phase 1 (%d contributions, domain 2^%d, beacon %s) than this one (%d, 2^%d, %s)",
			ErrCeremony, len(t.h.Phase1.Contributions), t.h.Power, short(t.h.Phase1.Beacon), len(p1.Contributions), p1.Power, short(p1.Beacon))
	}
	params := *t.h.Params
	// The circuit multiplies every weight by every pixel of the batch twice:
	// a header that names a circuit far beyond the domain is refused before
	// it is compiled.
	if 2*uint64(params.Batch)*uint64(params.Features)*uint64(params.Classes) > 1<<t.h.Power {
		return nil, nil, fmt.Errorf("%w: the circuit %+v does not fit phase 1's domain of 2^%d", ErrCeremony, params, t.h.Power)
	}
	ccs, err := Compile(params)
	if err != nil {
		return nil, nil, err
	}
	r1cs := ccs.(*cs.R1CS)
	h, init, evals, err := phase2Initial(params, r1cs, p1)
	if err != nil {
		return nil, nil, err
	}
	if h.Constraints != t.h.Constraints || h.Shape.PKK != t.h.Shape.PKK || !slices.Equal(h.Shape.Commitments, t.h.Shape.Commitments) {
		return nil, nil, fmt.Errorf("%w: the phase-2 header does not match the circuit", ErrCeremony)
	}
	rec, err := t.next()
	if err == io.EOF {
		return nil, nil, fmt.Errorf("%w: phase 2 has no initial state", ErrCeremony)
	} else if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(rec, init) {
		return nil, nil, fmt.Errorf("%w: phase 2's initial state is not the one phase 1 and the circuit give", ErrCeremony)
	}
	prev, err := t.h.decodePhase2(init)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: phase 2 initial state: %v", ErrCeremony, err)
	}
	prevID := ContributionID(init)
	out := &CeremonyRecord{Version: 1, Params: params, Constraints: h.Constraints, Power: h.Power,
		Phase1: p1.Contributions, Beacon1: t.h.Phase1.Beacon, Phase2: []string{}}
	for {
		rec, err := t.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		i := t.n - 1
		next, err := t.h.decodePhase2(rec)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: phase 2 contribution %d: %v", ErrCeremony, i, err)
		}
		if err := link(2, i, rec, prevID, out.Phase2); err != nil {
			return nil, nil, err
		}
		if err := prev.Verify(next); err != nil {
			return nil, nil, fmt.Errorf("%w: phase 2 contribution %d (%s) does not verify: %v", ErrCeremony, i, ContributionID(rec)[:16], err)
		}
		prev, prevID = next, ContributionID(rec)
		out.Phase2 = append(out.Phase2, prevID)
		if progress != nil {
			progress(ContributionInfo{Phase: 2, Index: i, ID: prevID})
		}
	}
	if beacon2 == nil {
		return out, nil, nil
	}
	if len(out.Phase1) == 0 || len(out.Phase2) == 0 {
		return nil, nil, fmt.Errorf("%w: phase 1 has %d contributions and phase 2 %d: keys need at least one in each", ErrCeremony, len(out.Phase1), len(out.Phase2))
	}
	if len(beacon2) > maxBeaconBytes {
		return nil, nil, fmt.Errorf("%w: the beacon must be 1 to %d bytes", ErrCeremony, maxBeaconBytes)
	}
	pk, vk := prev.Seal(&p1.Commons, evals, beacon2)
	out.Beacon2 = hex.EncodeToString(beacon2)
	out.VKSHA256 = VKHash(vk)
	return out, &Keys{Params: params, CCS: ccs, PK: pk, VK: vk}, nil
}
