package audit

import (
	"reflect"
	"testing"

	"github.com/vtrain/vtrain/consensus"
	"github.com/vtrain/vtrain/trainer"
)

func TestEvidenceAndStatePayloadsRoundTrip(t *testing.T) {
	v := func(x float32) []float32 { return []float32{x, x + 1, x + 2} }
	fin := trainer.Snapshot{Step: 9, Params: v(9), Opt: map[string][]float32{"m": v(2), "v": v(3)}, OptSteps: 9}
	light := fin.Light()
	path := []trainer.Hash{{1}, {2, 3}}
	for _, ev := range []trainer.Evidence{
		{Openings: []trainer.Opening{{Block: 4, In: v(4), InPath: path, OutPath: path[:1]}, {Block: 70, In: v(5)[:1], InPath: path[1:], OutPath: path}}},
		{Final: &fin, Openings: []trainer.Opening{{Block: 0, In: v(6)}}},
		{Final: &light, Answer: &consensus.Answer{Round: 2, Update: trainer.Hash{7}, Segment: 3, Leaves: path, Sig: []byte("sig")}},
	} {
		got, err := DecodeEvidence(EncodeEvidence(ev))
		if err != nil || !reflect.DeepEqual(got, ev) {
			t.Fatalf("evidence round trip: %v\n got %+v\nwant %+v", err, got, ev)
		}
	}
	st := consensus.State{Round: 7, Theta: v(1), Momentum: v(2), Members: consensus.Members{
		List:     []consensus.Member{{ID: "a", Founder: true, Seat: true, Work: 5, Last: 6}, {ID: "c", Since: 3, Work: 2, Last: 6}},
		Excluded: []consensus.PeerID{"b"}}}
	got, _, err := DecodeState(EncodeState(st, nil))
	if err != nil || got.Hash() != st.Hash() || !reflect.DeepEqual(got, st) {
		t.Fatalf("state round trip: %v %+v", err, got)
	}
	bad := st.Clone()
	bad.Members.List[0], bad.Members.List[1] = bad.Members.List[1], bad.Members.List[0]
	if _, _, err := DecodeState(EncodeState(bad, nil)); err == nil {
		t.Fatal("a state with unsorted members decoded")
	}
	if _, err := DecodeEvidence([]byte("not safetensors")); err == nil {
		t.Fatal("garbage decoded as evidence")
	}
}
