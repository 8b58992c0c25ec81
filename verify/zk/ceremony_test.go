package zk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"
	groth16bn254 "github.com/consensys/gnark/backend/groth16/bn254"
	"github.com/consensys/gnark/backend/groth16/bn254/mpcsetup"
	cs "github.com/consensys/gnark/constraint/bn254"
)

// ceremonyParams is the smallest real circuit: softmax regression with 2
// features and 2 classes, batch 1, a data tree of depth 1 (2 samples):
// 1,584 constraints, a domain of 2^11.
var ceremonyParams = Params{Features: 2, Classes: 2, Batch: 1, Depth: 1, LR: 1 << 12}

// splitTranscript returns a transcript's header bytes and its records.
func splitTranscript(t testing.TB, b []byte) (head []byte, recs [][]byte) {
	t.Helper()
	hl := int(binary.BigEndian.Uint32(b[len(ceremonyMagic)+4:]))
	off := len(ceremonyMagic) + 8 + hl
	head = b[:off]
	for off < len(b) {
		n := int(binary.BigEndian.Uint64(b[off:]))
		recs = append(recs, b[off+8:off+8+n])
		off += 8 + n
	}
	return head, recs
}

func joinTranscript(head []byte, recs ...[]byte) []byte {
	out := bytes.Clone(head)
	for _, r := range recs {
		var lb [8]byte
		binary.BigEndian.PutUint64(lb[:], uint64(len(r)))
		out = append(append(out, lb[:]...), r...)
	}
	return out
}

// ceremonyRun is a 3-participant ceremony on ceremonyParams, made once.
type ceremonyRun struct {
	phase1, phase2 []byte          // the final transcripts
	ids1, ids2     []string        // what each participant was told
	p1             *Phase1Verified // phase 1, verified and sealed
	beacon1        []byte          // phase 1's beacon
	err            error
}

var (
	ceremonyOnce sync.Once
	ceremony     ceremonyRun
)

func threeParty(t testing.TB) *ceremonyRun {
	t.Helper()
	if testing.Short() {
		t.Skip("a ceremony takes tens of seconds on 2 cores (gnark's phase-2 initialisation); run without -short")
	}
	ceremonyOnce.Do(func() {
		// Each verification recomputes phase 2's initial state from phase 1
		// and the circuit, as a verifier must; the tests verify the same
		// ceremony many times, so they compute it once.
		type out struct {
			h     *CeremonyHeader
			init  []byte
			evals *mpcsetup.Phase2Evaluations
		}
		memo := map[string]out{}
		phase2Initial = func(p Params, r1cs *cs.R1CS, p1 *Phase1Verified) (*CeremonyHeader, []byte, *mpcsetup.Phase2Evaluations, error) {
			key := fmt.Sprint(p, p1.Contributions, p1.Beacon)
			if o, ok := memo[key]; ok {
				return o.h, o.init, o.evals, nil
			}
			h, init, evals, err := phase2Init(p, r1cs, p1)
			if err == nil {
				memo[key] = out{h, init, evals}
			}
			return h, init, evals, err
		}
		ceremony = makeCeremony()
	})
	if ceremony.err != nil {
		t.Fatal(ceremony.err)
	}
	return &ceremony
}

func makeCeremony() (c ceremonyRun) {
	ccs, err := Compile(ceremonyParams)
	if err != nil {
		c.err = err
		return
	}
	var tr bytes.Buffer
	if c.err = InitPhase1(&tr, CeremonyPower(ccs.GetNbConstraints())); c.err != nil {
		return
	}
	contribute := func(in []byte) ([]byte, string) {
		var out bytes.Buffer
		info, err := Contribute(bytes.NewReader(in), &out)
		if err != nil && c.err == nil {
			c.err = err
		}
		return out.Bytes(), info.ID
	}
	cur := tr.Bytes()
	for range 3 {
		var id string
		cur, id = contribute(cur)
		c.ids1 = append(c.ids1, id)
	}
	c.phase1 = cur
	c.beacon1 = []byte("phase 1 beacon: a drand round announced in advance")
	if c.p1, err = VerifyPhase1(bytes.NewReader(c.phase1), c.beacon1, nil); err != nil {
		c.err = err
		return
	}
	tr.Reset()
	if c.err = InitPhase2(&tr, c.p1, ceremonyParams); c.err != nil {
		return
	}
	cur = tr.Bytes()
	for range 3 {
		var id string
		cur, id = contribute(cur)
		c.ids2 = append(c.ids2, id)
	}
	c.phase2 = cur
	return c
}

// TestCeremonyThreeParties: three participants in each phase; the keys
// prove and verify a real step, every participant finds its contribution
// in the record, and the keys' hash pins them.
func TestCeremonyThreeParties(t *testing.T) {
	c := threeParty(t)
	if !slices.Equal(c.p1.Contributions, c.ids1) {
		t.Fatalf("phase 1 lists %v, the participants were told %v", c.p1.Contributions, c.ids1)
	}
	var seen []ContributionInfo
	rec, keys, err := VerifyPhase2(c.p1, bytes.NewReader(c.phase2), []byte("phase 2 beacon"), func(i ContributionInfo) { seen = append(seen, i) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.Phase2, c.ids2) || !slices.Equal(rec.Phase1, c.ids1) || len(seen) != 3 || seen[2].ID != c.ids2[2] || seen[2].Index != 3 {
		t.Fatalf("record %+v, progress %+v; participants were told %v and %v", rec, seen, c.ids1, c.ids2)
	}
	if rec.VKSHA256 != VKHash(keys.VK) {
		t.Fatalf("record pins %s, the key hashes to %s", rec.VKSHA256, VKHash(keys.VK))
	}

	// A real proof of a step of the smallest circuit.
	st, w := ceremonyStep(t)
	proof, err := keys.Prove(st, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifierOnly(t, keys).Verify(st, proof); err != nil {
		t.Fatalf("a proof under the ceremony's keys does not verify: %v", err)
	}
	wrong := st
	wrong.ThetaOut = st.ThetaIn
	if err := keys.Verify(wrong, proof); err == nil {
		t.Fatal("a proof verifies for another θ'")
	}
	// The keys of another ceremony (or of keygen) do not verify it.
	if err := keysForCeremonyParams(t).Verify(st, proof); err == nil {
		t.Fatal("a proof verifies under unrelated keys")
	}

	// Sealing is deterministic: a verifier that re-runs it gets the same keys.
	rec2, _, err := VerifyPhase2(c.p1, bytes.NewReader(c.phase2), []byte("phase 2 beacon"), nil)
	if err != nil || rec2.VKSHA256 != rec.VKSHA256 {
		t.Fatalf("resealing gives %v (%v), want %s", rec2, err, rec.VKSHA256)
	}
	// Without a contribution in phase 2 there are no keys.
	head, recs := splitTranscript(t, c.phase2)
	if _, _, err := VerifyPhase2(c.p1, bytes.NewReader(joinTranscript(head, recs[0])), []byte("b"), nil); err == nil || !strings.Contains(err.Error(), "at least one in each") {
		t.Fatalf("keys from a phase 2 without contributions: %v", err)
	}
}

var keysForCeremonyParams = func() func(testing.TB) *Keys {
	var once sync.Once
	var k *Keys
	var err error
	return func(t testing.TB) *Keys {
		once.Do(func() { k, err = Setup(ceremonyParams) })
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
}()

// TestCeremonyTampered: a transcript whose contribution was altered,
// dropped or moved fails verification, naming the contribution.
func TestCeremonyTampered(t *testing.T) {
	c := threeParty(t)
	h1, r1 := splitTranscript(t, c.phase1)
	h2, r2 := splitTranscript(t, c.phase2)
	if len(r1) != 3 || len(r2) != 4 {
		t.Fatalf("%d and %d records", len(r1), len(r2))
	}
	flip := func(rec []byte, at int) []byte {
		b := bytes.Clone(rec)
		b[at] ^= 0x01
		return b
	}
	// A well-formed but wrong contribution: phase-2 contribution 3 with its
	// δ in G1 replaced by another point of the group.
	forged := func() []byte {
		var p mpcsetup.Phase2
		if _, err := p.ReadFrom(bytes.NewReader(r2[3])); err != nil {
			t.Fatal(err)
		}
		p.Parameters.G1.Delta.Double(&p.Parameters.G1.Delta)
		return serialize(&p)
	}()
	beacon2 := []byte("b2")
	for name, tc := range map[string]struct {
		phase1, phase2 []byte
		want           string
	}{
		"phase 1: a byte of contribution 2's powers": {joinTranscript(h1, r1[0], flip(r1[1], 3*updateProofSize+100), r1[2]), nil, "phase 1 contribution 2"},
		"phase 1: a byte of contribution 1's proof":  {joinTranscript(h1, flip(r1[0], 40), r1[1], r1[2]), nil, "phase 1 contribution 1"},
		"phase 1: contributions 2 and 3 swapped":     {joinTranscript(h1, r1[0], r1[2], r1[1]), nil, "out of order"},
		"phase 1: contribution 2 dropped":            {joinTranscript(h1, r1[0], r1[2]), nil, "missing"},
		"phase 1: contribution 1 dropped":            {joinTranscript(h1, r1[1], r1[2]), nil, "phase 1 contribution 1"},
		"phase 2: contribution 3's δ replaced":       {nil, joinTranscript(h2, r2[0], r2[1], r2[2], forged), "phase 2 contribution 3"},
		"phase 2: a byte of contribution 1":          {nil, joinTranscript(h2, r2[0], flip(r2[1], 50), r2[2], r2[3]), "phase 2 contribution 1"},
		"phase 2: contributions 1 and 2 swapped":     {nil, joinTranscript(h2, r2[0], r2[2], r2[1], r2[3]), "phase 2 contribution 1"},
		"phase 2: contribution 2 dropped":            {nil, joinTranscript(h2, r2[0], r2[1], r2[3]), "missing"},
		"phase 2: another initial state":             {nil, joinTranscript(h2, flip(r2[0], 50), r2[1], r2[2], r2[3]), "initial state"},
	} {
		var err error
		if tc.phase1 != nil {
			_, err = VerifyPhase1(bytes.NewReader(tc.phase1), c.beacon1, nil)
		} else {
			_, _, err = VerifyPhase2(c.p1, bytes.NewReader(tc.phase2), beacon2, nil)
		}
		if err == nil || !errors.Is(err, ErrCeremony) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error about %q", name, err, tc.want)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}

	// The last contribution dropped leaves a valid, shorter ceremony: its
	// participant finds its ID missing from the record.
	short, err := VerifyPhase1(bytes.NewReader(joinTranscript(h1, r1[0], r1[1])), c.beacon1, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range short.Contributions {
		if id == c.ids1[2] {
			t.Fatal("the dropped contribution is listed")
		}
	}
	// Phase 2 on another phase 1 (another beacon) is refused.
	other := *c.p1
	other.Beacon = "00"
	if _, _, err := VerifyPhase2(&other, bytes.NewReader(c.phase2), beacon2, nil); err == nil || !strings.Contains(err.Error(), "another phase 1") {
		t.Errorf("phase 2 on another phase 1: %v", err)
	}
}

// TestCeremonyBoundedRead: corrupt, truncated and oversized transcripts
// give a clear error before anything large is allocated.
func TestCeremonyBoundedRead(t *testing.T) {
	var empty, one bytes.Buffer
	if err := InitPhase1(&empty, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := Contribute(&empty, &one); err != nil {
		t.Fatal(err)
	}
	phase1 := one.Bytes()
	if _, err := VerifyPhase1(bytes.NewReader(phase1), []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	h1, r1 := splitTranscript(t, phase1)
	header := func(js string) []byte {
		var pre [len(ceremonyMagic) + 8]byte
		copy(pre[:], ceremonyMagic)
		binary.BigEndian.PutUint32(pre[len(ceremonyMagic):], ceremonyVersion)
		binary.BigEndian.PutUint32(pre[len(ceremonyMagic)+4:], uint32(len(js)))
		return append(pre[:], js...)
	}
	withLen := func(head []byte, n uint64, body []byte) []byte {
		var lb [8]byte
		binary.BigEndian.PutUint64(lb[:], n)
		return append(append(bytes.Clone(head), lb[:]...), body...)
	}
	badVersion := bytes.Clone(phase1)
	badVersion[len(ceremonyMagic)+3] = 9
	hugeHeader := header("{}")
	binary.BigEndian.PutUint32(hugeHeader[len(ceremonyMagic)+4:], 1<<31)
	// A record whose N field claims a bigger domain than the header's.
	bigN := bytes.Clone(r1[0])
	binary.BigEndian.PutUint64(bigN[3*updateProofSize:], 1<<40)
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"empty":               {nil, "not a transcript"},
		"bad magic":           {append([]byte("vtrain-ceremonx\n"), phase1[16:]...), "bad magic"},
		"other version":       {badVersion, "version"},
		"huge header":         {hugeHeader, "header of"},
		"header not JSON":     {header("{"), "header"},
		"unknown field":       {header(`{"phase":1,"power":11,"x":1}`), "unknown field"},
		"domain 2^40":         {header(`{"phase":1,"power":40}`), "out of range"},
		"phase 3":             {header(`{"phase":3,"power":11}`), "phase 3"},
		"record of 2^60":      {withLen(h1, 1<<60, nil), "record 0 is"},
		"truncated record":    {withLen(h1, uint64(len(r1[0])), r1[0][:100]), "truncated"},
		"truncated length":    {append(bytes.Clone(h1), 0, 0, 0), "truncated length"},
		"N beyond the header": {joinTranscript(h1, bigN), "domain size"},
	} {
		_, err := VerifyPhase1(bytes.NewReader(tc.b), []byte("x"), nil)
		if err == nil || !errors.Is(err, ErrCeremony) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: verify: got %v, want %q", name, err, tc.want)
		}
		if _, err := Contribute(bytes.NewReader(tc.b), io.Discard); err == nil {
			t.Errorf("%s: contributed on it", name)
		}
	}
}

// TestCeremonyTimed runs a 1+1-participant ceremony on the circuit named
// by VTRAIN_CEREMONY_PARAMS ("features,classes,batch,depth"; the real
// circuit at batch 1 is "784,10,1,16") and logs each step's time: the
// figures in benchmarks/README.md. Skipped unless set (the real circuit
// takes hours on 2 cores).
func TestCeremonyTimed(t *testing.T) {
	env := os.Getenv("VTRAIN_CEREMONY_PARAMS")
	if env == "" {
		t.Skip("set VTRAIN_CEREMONY_PARAMS=features,classes,batch,depth (e.g. 784,10,1,16) to time a ceremony")
	}
	var p Params
	if _, err := fmt.Sscanf(env, "%d,%d,%d,%d", &p.Features, &p.Classes, &p.Batch, &p.Depth); err != nil {
		t.Fatalf("VTRAIN_CEREMONY_PARAMS=%q: %v", env, err)
	}
	p.LR = DefaultLR
	lap := func(what string, start time.Time) { t.Logf("%-28s %8.1f s", what, time.Since(start).Seconds()) }
	start := time.Now()
	ccs, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	power := CeremonyPower(ccs.GetNbConstraints())
	t.Logf("%+v: %d constraints, domain 2^%d", p, ccs.GetNbConstraints(), power)
	lap("compile", start)
	var t0, t1 bytes.Buffer
	if err := InitPhase1(&t0, power); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := Contribute(&t0, &t1); err != nil {
		t.Fatal(err)
	}
	lap("phase 1 contribution", start)
	t.Logf("phase 1 transcript: %d bytes", t1.Len())
	start = time.Now()
	p1, err := VerifyPhase1(bytes.NewReader(t1.Bytes()), []byte("beacon 1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	lap("phase 1 verify and seal", start)
	var q0, q1 bytes.Buffer
	start = time.Now()
	if err := InitPhase2(&q0, p1, p); err != nil {
		t.Fatal(err)
	}
	lap("phase 2 init", start)
	start = time.Now()
	if _, err := Contribute(bytes.NewReader(q0.Bytes()), &q1); err != nil {
		t.Fatal(err)
	}
	lap("phase 2 contribution", start)
	t.Logf("phase 2 transcript: %d bytes", q1.Len())
	start = time.Now()
	_, keys, err := VerifyPhase2(p1, bytes.NewReader(q1.Bytes()), []byte("beacon 2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	lap("phase 2 verify and seal", start)
	start = time.Now()
	if _, err := SetupCompiled(p, ccs); err != nil {
		t.Fatal(err)
	}
	lap("single-party setup (keygen)", start)
	_ = keys
}

// drawOf finds a batch-1 draw over size samples that picks leaf.
func drawOf(t testing.TB, p Params, size, leaf uint64) Draw {
	t.Helper()
	for seed := range uint64(100) {
		d := Draw{Seed: seed, Size: size}
		if l, err := p.Leaves(d); err == nil && l[0] == leaf {
			return d
		}
	}
	t.Fatalf("no seed draws leaf %d of %d", leaf, size)
	return Draw{}
}

// FuzzCeremonyTranscript feeds arbitrary bytes to the transcript reader,
// verifier and contributor: they must return an error or a result, never
// panic, and never take more than the bytes they were given suggest.
func FuzzCeremonyTranscript(f *testing.F) {
	var empty, one, two bytes.Buffer
	if err := InitPhase1(&empty, 2); err != nil {
		f.Fatal(err)
	}
	if _, err := Contribute(bytes.NewReader(empty.Bytes()), &one); err != nil {
		f.Fatal(err)
	}
	if _, err := Contribute(bytes.NewReader(one.Bytes()), &two); err != nil {
		f.Fatal(err)
	}
	f.Add(empty.Bytes())
	f.Add(one.Bytes())
	f.Add(two.Bytes())
	f.Add(two.Bytes()[:len(two.Bytes())-7])
	f.Fuzz(func(t *testing.T, b []byte) {
		if tr, err := newTranscriptReader(bytes.NewReader(b)); err != nil || tr.h.Power > 4 {
			return // contributing to a big domain is legitimate work, not a decoder's
		}
		if _, err := VerifyPhase1(bytes.NewReader(b), []byte("beacon"), nil); err != nil && !errors.Is(err, ErrCeremony) {
			t.Fatalf("an error that is not a ceremony error: %v", err)
		}
		_, _ = Contribute(bytes.NewReader(b), io.Discard)
	})
}

// TestLoadProverCeremonyLargerDomain: a ceremony whose phase 1 is larger
// than the circuit needs (one made for a bigger circuit) gives keys with
// its domain; LoadProver takes them, and they prove. About 80 s on 2 cores
// (a phase 1 of 2^14 for the smallest circuit): set VTRAIN_ZK_E2E=1 to
// run it; TestPKLayoutDomain checks the rule in the default suite.
func TestLoadProverCeremonyLargerDomain(t *testing.T) {
	if os.Getenv("VTRAIN_ZK_E2E") == "" {
		t.Skip("set VTRAIN_ZK_E2E=1 to run a ceremony with a phase 1 larger than the circuit (about 80 s)")
	}
	ccs, err := Compile(ceremonyParams)
	if err != nil {
		t.Fatal(err)
	}
	var tr bytes.Buffer
	if err := InitPhase1(&tr, CeremonyPower(ccs.GetNbConstraints())+1); err != nil {
		t.Fatal(err)
	}
	var p1 bytes.Buffer
	if _, err := Contribute(bytes.NewReader(tr.Bytes()), &p1); err != nil {
		t.Fatal(err)
	}
	v1, err := VerifyPhase1(bytes.NewReader(p1.Bytes()), []byte("beacon 1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.Reset()
	if err := InitPhase2(&tr, v1, ceremonyParams); err != nil {
		t.Fatal(err)
	}
	var p2 bytes.Buffer
	if _, err := Contribute(bytes.NewReader(tr.Bytes()), &p2); err != nil {
		t.Fatal(err)
	}
	rec, keys, err := VerifyPhase2(v1, bytes.NewReader(p2.Bytes()), []byte("beacon 2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := keys.Save(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadProver(dir, rec.VKSHA256)
	if err != nil {
		t.Fatalf("keys with a domain of 2^%d for a circuit of %d constraints: %v", v1.Power, ccs.GetNbConstraints(), err)
	}
	if d := loaded.PK.(*groth16bn254.ProvingKey).Domain.Cardinality; d != 1<<v1.Power {
		t.Fatalf("the keys' domain is %d, want the phase 1's 2^%d", d, v1.Power)
	}
	st, w := ceremonyStep(t)
	proof, err := loaded.Prove(st, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Verify(st, proof); err != nil {
		t.Fatalf("a proof under the larger domain's keys: %v", err)
	}
}

// ceremonyStep is a statement and witness of one step of ceremonyParams'
// circuit: the second of two samples, drawn by seed 2 at step 1.
func ceremonyStep(t *testing.T) (Statement, Witness) {
	t.Helper()
	p := ceremonyParams
	samples := []Sample{{Pixels: []byte{7, 250}, Label: 1}, {Pixels: []byte{129, 3}, Label: 0}}
	tree, err := NewTree(p.Depth, []fr.Element{Leaf(samples[0]), Leaf(samples[1])})
	if err != nil {
		t.Fatal(err)
	}
	theta := Theta{1 << 19, -(1 << 18), 3 << 16, 5, -7, 1 << 10}
	next, err := p.Step(theta, samples[1:])
	if err != nil {
		t.Fatal(err)
	}
	path, _ := tree.Path(1)
	st := Statement{ThetaIn: p.CommitTheta(theta), ThetaOut: p.CommitTheta(next), DataRoot: tree.Root(), Draw: drawOf(t, p, 2, 1),
		Context: Context{Round: 3, Peer: "12D3KooWceremony"}}
	return st, Witness{Theta: theta, Batch: samples[1:], Indices: []uint64{1}, Paths: [][]fr.Element{path}}
}
