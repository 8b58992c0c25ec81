package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/vtrain/vtrain/verify/zk"
)

// TestCeremonyCommands runs a ceremony through the commands, two
// participants per phase on the smallest real circuit (softmax regression
// 2×2, batch 1, data depth 1: 1,584 constraints), and uses its keys: a
// proof made with them passes vtrain verify-proof under the printed hash.
// A tampered transcript fails verify with one line.
func TestCeremonyCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("a ceremony takes tens of seconds on 2 cores; run without -short")
	}
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	circuit := []string{"--features", "2", "--classes", "2", "--batch", "1", "--depth", "1", "--lr", "0.0625"}
	must := func(args ...string) string {
		t.Helper()
		code, out, errOut := vtrain(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	must(append([]string{"ceremony", "init", "--phase", "1", "--out", at("p1-0")}, circuit...)...)
	var ids []string
	contribute := func(in, out string) {
		t.Helper()
		var info zk.ContributionInfo
		if err := json.Unmarshal([]byte(must("ceremony", "contribute", at(in), at(out), "--json")), &info); err != nil || len(info.ID) != 64 {
			t.Fatalf("contribute %s: %+v (%v)", out, info, err)
		}
		ids = append(ids, info.ID)
	}
	contribute("p1-0", "p1-1")
	contribute("p1-1", "p1-2")
	beacon1, beacon2 := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
	must(append([]string{"ceremony", "init", "--phase", "2", "--phase1", at("p1-2"), "--beacon", beacon1, "--out", at("p2-0")}, circuit...)...)
	contribute("p2-0", "p2-1")
	contribute("p2-1", "p2-2")

	out := must("ceremony", "verify", "--phase1", at("p1-2"), "--json")
	var v struct {
		OK            bool                  `json:"ok"`
		Contributions []zk.ContributionInfo `json:"contributions"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || !v.OK || len(v.Contributions) != 2 || v.Contributions[1].ID != ids[1] {
		t.Fatalf("verify phase 1: %q", out)
	}

	out = must("ceremony", "finalize", "--phase1", at("p1-2"), "--phase2", at("p2-2"), "--beacon", beacon2, "--out", at("keys"))
	i := strings.Index(out, "verifying key sha256 ")
	if i < 0 {
		t.Fatalf("finalize printed %q", out)
	}
	vkHash := strings.TrimSpace(out[i+len("verifying key sha256 "):])
	var rec zk.CeremonyRecord
	rj, err := os.ReadFile(at("keys/" + zk.CeremonyFile))
	if err != nil || json.Unmarshal(rj, &rec) != nil {
		t.Fatalf("ceremony record: %v", err)
	}
	if got := append(append([]string{}, rec.Phase1...), rec.Phase2...); strings.Join(got, ",") != strings.Join(ids, ",") || rec.VKSHA256 != vkHash || rec.Beacon1 != beacon1 {
		t.Fatalf("record %+v, the participants were told %v, finalize printed %s", rec, ids, vkHash)
	}

	// A proof under the ceremony's keys, checked by the auditor's command.
	keys, err := zk.LoadProver(at("keys"), vkHash)
	if err != nil {
		t.Fatal(err)
	}
	p := keys.Params
	samples := []zk.Sample{{Pixels: []byte{7, 250}, Label: 1}, {Pixels: []byte{129, 3}, Label: 0}}
	tree, _ := zk.NewTree(p.Depth, []fr.Element{zk.Leaf(samples[0]), zk.Leaf(samples[1])})
	theta := zk.Theta{1 << 19, -(1 << 18), 3 << 16, 5, -7, 1 << 10}
	next, err := p.Step(theta, samples[:1])
	if err != nil {
		t.Fatal(err)
	}
	path, _ := tree.Path(0)
	st := zk.Statement{ThetaIn: p.CommitTheta(theta), ThetaOut: p.CommitTheta(next), DataRoot: tree.Root(),
		Draw: drawLeaf(t, p, 2, 0), Context: zk.Context{Round: 1, Peer: "12D3KooWceremony"}}
	proof, err := keys.Prove(st, zk.Witness{Theta: theta, Batch: samples[:1], Indices: []uint64{0}, Paths: [][]fr.Element{path}})
	if err != nil {
		t.Fatal(err)
	}
	bj, _ := json.Marshal(zk.NewBundle(p, st, proof))
	if err := os.WriteFile(at("proof.json"), bj, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := must("verify-proof", "--keys", at("keys"), "--vk-hash", vkHash, at("proof.json")); !strings.HasPrefix(out, "ok:") {
		t.Fatalf("verify-proof: %q", out)
	}

	// A transcript with one byte of the first contribution changed.
	b, err := os.ReadFile(at("p1-2"))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/4] ^= 0x20
	if err := os.WriteFile(at("bad"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"tampered phase 1":      {"ceremony", "verify", "--phase1", at("bad")},
		"tampered, json":        {"ceremony", "verify", "--phase1", at("bad"), "--json"},
		"phase 2 as phase 1":    {"ceremony", "verify", "--phase1", at("p2-2")},
		"finalize on tampered":  {"ceremony", "finalize", "--phase1", at("bad"), "--phase2", at("p2-2"), "--beacon", beacon2, "--out", at("keys2")},
		"contribute on garbage": {"ceremony", "contribute", at("proof.json"), at("x")},
		"missing file":          {"ceremony", "verify", "--phase1", at("nope")},
	} {
		code, out, errOut := vtrain(t, args...)
		if code != 1 || strings.HasPrefix(out, "ok") {
			t.Errorf("%s: exit %d, stdout %q", name, code, out)
		}
		// finalize says first what it is about to do, on a line of its own
		errOut = strings.TrimPrefix(errOut, "vtrain: verifying both phases and sealing the keys (minutes at full size)\n")
		oneLine(t, name, errOut)
	}
	for name, args := range map[string][]string{
		"unknown step":       {"ceremony", "bless"},
		"one file":           {"ceremony", "contribute", at("p1-2")},
		"existing output":    {"ceremony", "contribute", at("p1-1"), at("p1-2")},
		"same file":          {"ceremony", "contribute", at("p1-2"), at("p1-2")},
		"phase 3":            {"ceremony", "init", "--phase", "3", "--out", at("p3")},
		"phase 2 no beacon":  {"ceremony", "init", "--phase", "2", "--phase1", at("p1-2"), "--out", at("p2-x")},
		"bad beacon":         {"ceremony", "init", "--phase", "2", "--phase1", at("p1-2"), "--beacon", "xyz", "--out", at("p2-x")},
		"finalize no beacon": {"ceremony", "finalize", "--phase1", at("p1-2"), "--phase2", at("p2-2"), "--out", at("k")},
		"power out of range": {"ceremony", "init", "--phase", "1", "--power", "40", "--out", at("p1-x")},
	} {
		code, _, errOut := vtrain(t, args...)
		if code != 2 {
			t.Errorf("%s: exit %d, want 2 (%q)", name, code, errOut)
		}
		oneLine(t, name, errOut)
	}
	if code, _, errOut := vtrain(t, "ceremony"); code != 2 || !strings.Contains(errOut, "destroyed it") {
		t.Errorf("vtrain ceremony: exit %d, want 2 and the trust statement (%q)", code, errOut)
	}
}
