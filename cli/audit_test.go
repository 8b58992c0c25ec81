package cli

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtrain/vtrain/verify/audit"
)

// auditMutations damages a real ledger at random (a flipped byte, a cut,
// two entries swapped, one deleted) and checks that vtrain audit exits 1
// and names an entry each time.
func auditMutations(t *testing.T, ledgerPath string, trials int) {
	t.Helper()
	orig, err := os.ReadFile(ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	const header = 10 + 32
	var offs []int
	for off := header; off < len(orig); off += 8 + int(binary.BigEndian.Uint32(orig[off:])) {
		offs = append(offs, off)
	}
	rec := func(i int) []byte {
		if i+1 < len(offs) {
			return orig[offs[i]:offs[i+1]]
		}
		return orig[offs[i]:]
	}
	dir := t.TempDir()
	// The audit looks for summary.json and blobs/ beside the ledger.
	for _, f := range []string{"summary.json", audit.BlobDir} {
		if err := os.Symlink(filepath.Join(filepath.Dir(ledgerPath), f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(5, 5))
	for trial := range trials {
		var m []byte
		var what string
		switch trial % 4 {
		case 0:
			off := header + r.IntN(len(orig)-header)
			m = bytes.Clone(orig)
			m[off] ^= byte(1 + r.IntN(255))
			what = fmt.Sprintf("byte %d flipped", off)
		case 1:
			off := header + r.IntN(len(orig)-header)
			m, what = orig[:off], fmt.Sprintf("cut at byte %d", off)
		case 2:
			i := 1 + r.IntN(len(offs)-2)
			m = append(append(append(bytes.Clone(orig[:offs[i]]), rec(i+1)...), rec(i)...), orig[offs[i]+len(rec(i))+len(rec(i+1)):]...)
			what = fmt.Sprintf("entries %d and %d swapped", i, i+1)
			if bytes.Equal(rec(i), rec(i+1)) {
				continue
			}
		case 3:
			i := r.IntN(len(offs))
			m = append(bytes.Clone(orig[:offs[i]]), orig[offs[i]+len(rec(i)):]...)
			what = fmt.Sprintf("entry %d deleted", i)
		}
		p := filepath.Join(dir, "ledger.vtl")
		if err := os.WriteFile(p, m, 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := vtrain(t, "audit", p)
		if code != 1 || !strings.Contains(errOut, "entry ") {
			t.Fatalf("%s: audit exit %d, %q", what, code, errOut)
		}
		oneLine(t, what, errOut)
	}
}

func TestAuditUsage(t *testing.T) {
	for _, args := range [][]string{{"audit"}, {"audit", "--bogus", "x"}, {"audit", "--full", "x"}} {
		if code, _, _ := vtrain(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, _ := vtrain(t, "audit", filepath.Join(t.TempDir(), "missing")); code != 1 {
		t.Errorf("missing ledger: exit %d, want 1", code)
	}
}
