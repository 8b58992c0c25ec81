package benchmarks

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vtrain/vtrain/verify/zk"
)

// BenchmarkKeyLoadCheck times what zk.LoadProver adds to tie a proving key
// to the circuit this build compiles: zk.CircuitDigest of the compiled
// constraint system (the R1C constraints, the coefficient table, the wire
// counts and the committed wires). For scale: SHA-256 over gnark's whole
// serialization of the same system (the alternative, which also hashes
// debug information), and the compilation LoadProver already does.
//
//	go test -run - -bench KeyLoadCheck -benchtime 3x ./benchmarks/
func BenchmarkKeyLoadCheck(b *testing.B) {
	for _, batch := range []int{1, 4} {
		p := zk.FashionParams(batch)
		ccs, err := zk.Compile(p)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("digest/b=%d", batch), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := zk.CircuitDigest(ccs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("serialized-sha256/b=%d", batch), func(b *testing.B) {
			b.ReportAllocs()
			var n int64
			for b.Loop() {
				h := sha256.New()
				if n, err = ccs.WriteTo(h); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n), "bytes")
		})
		b.Run(fmt.Sprintf("compile/b=%d", batch), func(b *testing.B) {
			for b.Loop() {
				if _, err := zk.Compile(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoadProver times zk.LoadProver, what a private peer does before
// it can train its first round, on the demo's cached keys of a 784×10
// batch-4 circuit (vtrain demo --private 1 makes them; the benchmark
// skips without them): the compile, the check of the proving key's layout
// against it (keyfile.go), the key's decoding and the check that it comes
// from the verifying key's setup.
//
//	go test -run - -bench LoadProver -benchtime 3x ./benchmarks/
func BenchmarkLoadProver(b *testing.B) {
	cache := filepath.Dir(zk.DemoKeysDir(zk.FashionParams(4)))
	entries, _ := os.ReadDir(cache)
	dir := ""
	for _, e := range entries {
		d := filepath.Join(cache, e.Name())
		if p, err := zk.LoadParams(d); err != nil || p.Features != 784 || p.Classes != 10 || p.Batch != 4 {
			continue
		}
		if _, err := zk.LoadProver(d, ""); err == nil { // keys of this build
			dir = d
			break
		}
	}
	if dir == "" {
		b.Skipf("no cached demo keys of this build's 784×10 batch-4 circuit in %s (vtrain demo --private 1 makes them)", cache)
	}
	for b.Loop() {
		if _, err := zk.LoadProver(dir, ""); err != nil {
			b.Fatal(err)
		}
	}
}
