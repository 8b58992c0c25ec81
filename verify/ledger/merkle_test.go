package ledger

import (
	"encoding/hex"
	"fmt"
	"testing"
)

// naiveRoot is MTH straight from RFC 6962 §2.1.
func naiveRoot(entries [][]byte) Hash {
	switch len(entries) {
	case 0:
		return EmptyRoot
	case 1:
		return LeafHash(entries[0])
	}
	k := split(uint64(len(entries)))
	return NodeHash(naiveRoot(entries[:k]), naiveRoot(entries[k:]))
}

func entries(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("entry %d", i))
	}
	return out
}

func treeOf(es [][]byte) *Tree {
	var t Tree
	for _, e := range es {
		t.Append(LeafHash(e))
	}
	return &t
}

// TestRFC6962Vectors checks the roots of the reference test vectors used by
// Certificate Transparency's implementations.
func TestRFC6962Vectors(t *testing.T) {
	leaves := []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	roots := []string{
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	var tr Tree
	if tr.Root(0).String() != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatalf("empty root %s", tr.Root(0))
	}
	for i, l := range leaves {
		b, _ := hex.DecodeString(l)
		tr.Append(LeafHash(b))
		if got := tr.Root(uint64(i + 1)).String(); got != roots[i] {
			t.Fatalf("root of %d leaves: %s, want %s", i+1, got, roots[i])
		}
	}
}

func TestRootsMatchTheDefinition(t *testing.T) {
	es := entries(100)
	tr := treeOf(es)
	for n := 0; n <= len(es); n++ {
		if got, want := tr.Root(uint64(n)), naiveRoot(es[:n]); got != want {
			t.Fatalf("root of %d: %s, want %s", n, got, want)
		}
	}
}

func TestInclusionProofs(t *testing.T) {
	es := entries(70)
	tr := treeOf(es)
	for n := uint64(1); n <= 70; n++ {
		root := tr.Root(n)
		for m := uint64(0); m < n; m++ {
			p, err := tr.InclusionProof(m, n)
			if err != nil {
				t.Fatal(err)
			}
			leaf := tr.Leaf(m)
			if err := VerifyInclusion(leaf, m, n, p, root); err != nil {
				t.Fatalf("leaf %d of %d: %v", m, n, err)
			}
			// Every tampering fails: another leaf, index, size, a changed,
			// missing or extra hash.
			if n > 1 {
				if VerifyInclusion(tr.Leaf((m+1)%n), m, n, p, root) == nil {
					t.Fatalf("leaf %d of %d: another leaf verifies", m, n)
				}
				if VerifyInclusion(leaf, (m+1)%n, n, p, root) == nil {
					t.Fatalf("leaf %d of %d: another index verifies", m, n)
				}
				for i := range p {
					bad := append([]Hash(nil), p...)
					bad[i][0] ^= 1
					if VerifyInclusion(leaf, m, n, bad, root) == nil {
						t.Fatalf("leaf %d of %d: a changed hash verifies", m, n)
					}
				}
				if len(p) > 0 && VerifyInclusion(leaf, m, n, p[:len(p)-1], root) == nil {
					t.Fatalf("leaf %d of %d: a short proof verifies", m, n)
				}
			}
			if VerifyInclusion(leaf, m, n, append(p, Hash{}), root) == nil {
				t.Fatalf("leaf %d of %d: a long proof verifies", m, n)
			}
			if n < 70 && VerifyInclusion(leaf, m, n+1, p, tr.Root(n+1)) == nil {
				t.Fatalf("leaf %d of %d: the proof verifies against the next tree head", m, n)
			}
		}
	}
	if _, err := tr.InclusionProof(5, 5); err == nil {
		t.Fatal("a proof for a leaf past the tree")
	}
}

func TestConsistencyProofs(t *testing.T) {
	es := entries(70)
	tr := treeOf(es)
	other := treeOf(append(entries(3), []byte("forged"))) // differs from entry 3 on
	for n := uint64(1); n <= 70; n++ {
		for m := uint64(1); m <= n; m++ {
			p, err := tr.ConsistencyProof(m, n)
			if err != nil {
				t.Fatal(err)
			}
			r1, r2 := tr.Root(m), tr.Root(n)
			if err := VerifyConsistency(m, n, r1, r2, p); err != nil {
				t.Fatalf("%d → %d: %v", m, n, err)
			}
			for i := range p {
				bad := append([]Hash(nil), p...)
				bad[i][31] ^= 0x80
				if VerifyConsistency(m, n, r1, r2, bad) == nil {
					t.Fatalf("%d → %d: a changed hash verifies", m, n)
				}
			}
			if m < n {
				if VerifyConsistency(m, n, r2, r2, p) == nil || VerifyConsistency(m, n, r1, r1, p) == nil {
					t.Fatalf("%d → %d: wrong roots verify", m, n)
				}
				if m >= 4 && VerifyConsistency(4, n, other.Root(4), r2, p) == nil {
					t.Fatalf("%d → %d: a forked log verifies", m, n)
				}
			}
		}
	}
	if VerifyConsistency(0, 5, EmptyRoot, tr.Root(5), nil) != nil {
		t.Fatal("the empty tree is consistent with every tree")
	}
	if VerifyConsistency(6, 5, tr.Root(6), tr.Root(5), nil) == nil {
		t.Fatal("a shrinking log verifies")
	}
}
