package benchmarks

import (
	"crypto/sha256"
	"fmt"
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
