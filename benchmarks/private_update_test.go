package benchmarks

import (
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/verify/zk"
)

// BenchmarkPrivateUpdateCheck times what a member would spend linking a
// private peer's update to its step commitments before counting it
// (zk.Params.CheckUpdate, softmax regression 784×10: quantize the agreed
// state, two Poseidon2 commitments to θ, decode the change): whether the
// check fits in the gossip validator.
//
//	go test -run - -bench PrivateUpdateCheck ./benchmarks/
func BenchmarkPrivateUpdateCheck(b *testing.B) {
	p := zk.FashionParams(4)
	spec, err := models.NewSpec(models.LogReg, nil)
	if err != nil {
		b.Fatal(err)
	}
	agreed := models.Init(spec, 1)
	start, err := zk.ThetaFromFloat(agreed)
	if err != nil {
		b.Fatal(err)
	}
	d := make(zk.Delta, len(start))
	for i := range d {
		d[i] = int64(i%97) - 48
	}
	end, err := d.Apply(start)
	if err != nil {
		b.Fatal(err)
	}
	c := zk.Contribution{Steps: []fr.Element{p.CommitTheta(start), p.CommitTheta(end)}}
	wire := d.Encode() // a made-up, periodic change: its size says nothing of a real one's
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, err := zk.DecodeDelta(wire, len(start))
		if err != nil {
			b.Fatal(err)
		}
		if err := p.CheckUpdate(agreed, c, got); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*1e3, "ms/check")
}
