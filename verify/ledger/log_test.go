package ledger

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
)

var testRun = [32]byte{1, 2, 3}

func TestAppendReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger")
	l, rec, err := Open(path, testRun)
	if err != nil || rec != nil {
		t.Fatal(err, rec)
	}
	var want [][]byte
	for i := range 50 {
		e := []byte(fmt.Sprintf("entry %d", i))
		want = append(want, e)
		if _, err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	root := l.Root(l.Size())
	got, err := l.Entry(17)
	if err != nil || !bytes.Equal(got, want[17]) {
		t.Fatalf("entry 17: %q %v", got, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, rec, err = Open(path, testRun)
	if err != nil || rec != nil {
		t.Fatal(err, rec)
	}
	if l.Size() != 50 || l.Root(50) != root {
		t.Fatalf("reopened: %d entries, root %s, want 50 and %s", l.Size(), l.Root(50), root)
	}
	if _, err := l.Append([]byte("after")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, all, err := Read(path)
	if err != nil || len(all) != 51 || string(all[50]) != "after" {
		t.Fatalf("read back %d entries: %v", len(all), err)
	}
	if _, _, err := Open(path, [32]byte{9}); err == nil {
		t.Fatal("a ledger of another run opened")
	}
	if err := os.WriteFile(path+".bad", []byte("not a ledger at all, no"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(path+".bad", testRun); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad magic: %v", err)
	}
}

// TestCrashRecovery: a torn or corrupt tail is reported, saved aside, cut
// off, and the ledger goes on from its last good entry; a strict read names
// the first bad entry.
func TestCrashRecovery(t *testing.T) {
	for name, damage := range map[string]func(b []byte, offs []int64) []byte{
		"torn header": func(b []byte, offs []int64) []byte { return append(b, 0, 0, 0) },
		"torn record": func(b []byte, offs []int64) []byte {
			var hdr [8]byte
			binary.BigEndian.PutUint32(hdr[:4], 100)
			return append(append(b, hdr[:]...), make([]byte, 40)...)
		},
		"flipped byte in entry 7": func(b []byte, offs []int64) []byte { b[offs[7]+10] ^= 0x20; return b },
		"huge length at entry 3": func(b []byte, offs []int64) []byte {
			binary.BigEndian.PutUint32(b[offs[3]:], 1<<30)
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger")
			l, _, err := Open(path, testRun)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				l.Append([]byte(fmt.Sprintf("entry number %d", i)))
			}
			l.Close()
			b, _ := os.ReadFile(path)
			offs := recordOffsets(t, b)
			good := uint64(10)
			switch name {
			case "flipped byte in entry 7":
				good = 7
			case "huge length at entry 3":
				good = 3
			}
			bad := damage(append([]byte(nil), b...), offs)
			os.WriteFile(path, bad, 0o644)

			_, _, err = Read(path)
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Index != good {
				t.Fatalf("strict read: %v, want entry %d named", err, good)
			}
			l, rec, err := Open(path, testRun)
			if err != nil {
				t.Fatal(err)
			}
			if rec == nil || rec.Kept != good || l.Size() != good {
				t.Fatalf("recovery %v, %d entries; want %d kept", rec, l.Size(), good)
			}
			saved, err := os.ReadFile(rec.SavedTo)
			if err != nil || !bytes.Equal(saved, bad[rec.Offset:]) {
				t.Fatalf("the dropped bytes were not saved: %v", err)
			}
			if _, err := l.Append([]byte("after recovery")); err != nil {
				t.Fatal(err)
			}
			l.Close()
			if _, all, err := Read(path); err != nil || uint64(len(all)) != good+1 {
				t.Fatalf("after recovery: %d entries, %v", len(all), err)
			}
		})
	}
}

func recordOffsets(t testing.TB, b []byte) []int64 {
	var offs []int64
	for off := int64(headerSize); off < int64(len(b)); {
		offs = append(offs, off)
		off += recordHead + int64(binary.BigEndian.Uint32(b[off:]))
	}
	return offs
}

// keeperLedger writes a ledger as a node keeps one: the genesis, then per
// round some entries and a signed tree head over everything before it.
func keeperLedger(t testing.TB, path string, rounds int) (SignedTreeHead, crypto.PrivKey) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := Open(path, testRun)
	if err != nil {
		t.Fatal(err)
	}
	l.Append(Entry{Kind: KindGenesis, Data: []byte(`{"spec":"test"}`)}.Encode())
	var head SignedTreeHead
	for r := range uint64(rounds) {
		for k := range 4 {
			l.Append(Entry{Kind: KindUpdate, Round: r, Peer: fmt.Sprintf("peer%d", k), Blob: fmt.Sprintf("%064x", r*10+uint64(k))}.Encode())
		}
		if r%3 == 0 {
			l.Append(Entry{Kind: KindReject, Round: r, Peer: "peerX", Reason: "bad signature"}.Encode())
		}
		if head, err = SignTreeHead(TreeHead{Run: testRun, Round: r, Size: l.Size(), Root: l.Root(l.Size())}, key); err != nil {
			t.Fatal(err)
		}
		l.Append(Entry{Kind: KindTreeHead, Round: r, Head: &head}.Encode())
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	return head, key
}

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger")
	head, key := keeperLedger(t, path, 12)
	c, err := Check(path, &head)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Heads) != 12 || c.Keeper != head.Signer || c.Entries[0].Kind != KindGenesis {
		t.Fatalf("checked: %d heads, keeper %s", len(c.Heads), c.Keeper)
	}
	// A head signed by someone else, or a forged signature, is caught.
	other, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	forged, _ := SignTreeHead(head.TreeHead, other)
	if _, err := Check(path, &forged); err == nil {
		t.Fatal("another keeper's head accepted")
	}
	bent := head
	bent.Sig = append([]byte(nil), head.Sig...)
	bent.Sig[0] ^= 1
	if _, err := Check(path, &bent); !errors.Is(err, ErrSignature) {
		t.Fatalf("forged signature: %v", err)
	}
	_ = key
}

// TestCheckCatchesEveryMutation flips one byte, truncates, reorders or
// deletes entries of a keeper's ledger at random, many times: Check must
// fail every time and name an entry at or before the damage.
func TestCheckCatchesEveryMutation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger")
	head, _ := keeperLedger(t, path, 10)
	orig, _ := os.ReadFile(path)
	offs := recordOffsets(t, orig)
	r := mrand.New(mrand.NewPCG(1, 2))
	record := func(i int) []byte {
		end := int64(len(orig))
		if i+1 < len(offs) {
			end = offs[i+1]
		}
		return orig[offs[i]:end]
	}
	entryAt := func(off int64) int { // the record holding byte off
		i := 0
		for i+1 < len(offs) && offs[i+1] <= off {
			i++
		}
		return i
	}
	for trial := range 400 {
		var mutated []byte
		var first int // the first entry the mutation touches
		var what string
		switch trial % 4 {
		case 0:
			off := headerSize + r.IntN(len(orig)-headerSize)
			mutated = bytes.Clone(orig)
			mutated[off] ^= byte(1 + r.IntN(255))
			first, what = entryAt(int64(off)), fmt.Sprintf("byte %d flipped", off)
		case 1:
			off := headerSize + r.IntN(len(orig)-headerSize)
			mutated = orig[:off]
			first, what = entryAt(int64(off)), fmt.Sprintf("cut at byte %d", off)
		case 2:
			i := 1 + r.IntN(len(offs)-2)
			j := i + 1 + r.IntN(len(offs)-1-i)
			if bytes.Equal(record(i), record(j)) {
				continue
			}
			mutated = bytes.Clone(orig[:offs[i]])
			for k := i; k < len(offs); k++ {
				switch k {
				case i:
					mutated = append(mutated, record(j)...)
				case j:
					mutated = append(mutated, record(i)...)
				default:
					mutated = append(mutated, record(k)...)
				}
			}
			first, what = i, fmt.Sprintf("entries %d and %d swapped", i, j)
		case 3:
			i := r.IntN(len(offs))
			mutated = append(bytes.Clone(orig[:offs[i]]), orig[offs[i]+int64(len(record(i))):]...)
			first, what = i, fmt.Sprintf("entry %d deleted", i)
		}
		p := filepath.Join(dir, "mutated")
		if err := os.WriteFile(p, mutated, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Check(p, &head)
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: Check says %v", what, err)
		}
		if ce.Index > uint64(first) {
			t.Fatalf("%s: Check names entry %d, after the damage (%v)", what, ce.Index, err)
		}
	}
}

func TestStore(t *testing.T) {
	s, err := OpenStore(filepath.Join(t.TempDir(), "blobs"), 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Put([]byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	if h2, _ := s.Put([]byte("payload")); h2 != h {
		t.Fatal("same bytes, another address")
	}
	if b, err := s.Get(h); err != nil || string(b) != "payload" {
		t.Fatalf("get: %q %v", b, err)
	}
	os.WriteFile(s.path(h), []byte("tampered"), 0o644)
	if _, err := s.Get(h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered payload: %v", err)
	}
	if _, err := s.Put(make([]byte, 2<<10)); err == nil {
		t.Fatal("an oversized payload stored")
	}
	if _, err := s.Get(Hash{1}); err == nil {
		t.Fatal("a missing payload read")
	}
}

func TestEntryCanonical(t *testing.T) {
	e := Entry{Kind: KindDecision, Round: 3, Peer: "p", Data: []byte(`{"ids":[1,2]}`)}
	b := e.Encode()
	if _, err := DecodeEntry(b); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"kind":"commit","round":3,"peer":"p","data":{"ids":[1,2]}} `,
		`{"round":3,"kind":"commit"}`,
		`{"kind":"vote","round":3}`,
		`{"kind":"tree_head","round":3}`,
		`{"kind":"commit","round":3,"extra":1}`,
		`not json`,
	} {
		if _, err := DecodeEntry([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// FuzzCheck feeds arbitrary files to the auditor's reader: it must never
// panic, and only the keeper's own ledger may pass.
func FuzzCheck(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "ledger")
	head, _ := keeperLedger(f, path, 3)
	orig, _ := os.ReadFile(path)
	f.Add(orig)
	f.Add(orig[:len(orig)/2])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "l")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Check(p, &head); err == nil && !bytes.Equal(b, orig) {
			t.Fatalf("a different file passes as the keeper's ledger")
		}
	})
}

// TestWitnessedHead: a head the keeper gossiped pins the prefix it covers;
// a ledger rewritten under the same key afterwards still passes Check on
// its own but not against the witnessed head.
func TestWitnessedHead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger")
	_, key := keeperLedger(t, path, 6)
	c, err := Check(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The head of round 2, as another peer received it.
	h := *c.Entries[c.Heads[2]].Head
	if err := c.Witnessed(h); err != nil {
		t.Fatalf("the keeper's own head: %v", err)
	}
	// The keeper rewrites round 1 (drops a rejection) and re-signs every head.
	re := filepath.Join(dir, "rewritten")
	l, _, err := Open(re, testRun)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range c.Entries {
		switch {
		case e.Kind == KindReject && e.Round == 0:
			continue
		case e.Kind == KindTreeHead:
			nh, err := SignTreeHead(TreeHead{Run: testRun, Round: e.Round, Size: l.Size(), Root: l.Root(l.Size())}, key)
			if err != nil {
				t.Fatal(err)
			}
			e.Head = &nh
		}
		l.Append(e.Encode())
	}
	l.Close()
	c2, err := Check(re, nil)
	if err != nil {
		t.Fatalf("the rewritten ledger is self-consistent: %v", err)
	}
	var ce *CorruptError
	if err := c2.Witnessed(h); !errors.As(err, &ce) {
		t.Fatalf("rewritten ledger against the witnessed head: %v", err)
	}
	// Heads that are not the keeper's, or cover more than the ledger, fail.
	other, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	forged, _ := SignTreeHead(h.TreeHead, other)
	big := h
	big.Size = 1 << 20
	big, _ = SignTreeHead(big.TreeHead, key)
	for name, w := range map[string]SignedTreeHead{"another signer": forged, "longer than the ledger": big} {
		if err := c.Witnessed(w); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// TestCorruptErrorNamesNoUnknownByte: a finding about an entry whose place
// in the file is not known (the audit's replay) names the entry, not
// "byte -1"; one found while reading names its byte.
func TestCorruptErrorNamesNoUnknownByte(t *testing.T) {
	replay := (&CorruptError{Path: "l.vtl", Index: 7, Offset: -1, Reason: "genesis: no founders"}).Error()
	read := (&CorruptError{Path: "l.vtl", Index: 7, Offset: 1234, Reason: "bad checksum"}).Error()
	if replay != "ledger: l.vtl: entry 7: genesis: no founders" || read != "ledger: l.vtl: entry 7 (byte 1234): bad checksum" {
		t.Errorf("messages %q and %q", replay, read)
	}
}
