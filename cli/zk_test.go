package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/consensys/gnark-crypto/ecc/bn254/fr"

	"github.com/vtrain/vtrain/verify/zk"
)

// TestVerifyProofCommand is the auditor's side: vtrain verify-proof
// accepts a real proof bundle and rejects a tampered one, one for another
// circuit or key, and garbage, with exit 1 and one line.
func TestVerifyProofCommand(t *testing.T) {
	p := zk.Params{Features: 4, Classes: 2, Batch: 1, Depth: 2, LR: 1 << 12}
	keys, err := zk.Setup(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := keys.Save(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	samples := []zk.Sample{{Pixels: []byte{1, 2, 3, 4}, Label: 1}, {Pixels: []byte{200, 0, 9, 9}, Label: 0}}
	leaves := []fr.Element{zk.Leaf(samples[0]), zk.Leaf(samples[1])}
	tree, err := zk.NewTree(p.Depth, leaves)
	if err != nil {
		t.Fatal(err)
	}
	theta := zk.Theta{1 << 18, -(1 << 17), 5, 6, 7, 8, 9, 10, 11, 12}
	next, err := p.Step(theta, samples[1:])
	if err != nil {
		t.Fatal(err)
	}
	path, _ := tree.Path(1)
	st := zk.Statement{ThetaIn: p.CommitTheta(theta), ThetaOut: p.CommitTheta(next), DataRoot: tree.Root(),
		Draw: drawLeaf(t, p, 2, 1), Context: zk.Context{Round: 4, Peer: "12D3KooWcli"}}
	proof, err := keys.Prove(st, zk.Witness{Theta: theta, Batch: samples[1:], Indices: []uint64{1}, Paths: [][]fr.Element{path}})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b zk.Bundle) string {
		j, _ := json.Marshal(b)
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, j, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	good := zk.NewBundle(p, st, proof)
	goodPath := write("good.json", good)
	kd := filepath.Join(dir, "keys")

	code, out, errOut := vtrain(t, "verify-proof", "--keys", kd, "--vk-hash", zk.VKHash(keys.VK),
		"--batch-seed", fmt.Sprint(good.Seed), "--step", "0", "--data-size", "2", goodPath)
	if code != 0 || !strings.HasPrefix(out, "ok:") {
		t.Fatalf("valid proof: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ = vtrain(t, "verify-proof", goodPath, "--keys", kd, "--json")
	var v struct {
		OK bool `json:"ok"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || !v.OK {
		t.Fatalf("valid proof, --json after the file: exit %d, %q", code, out)
	}

	flipped := good
	flipped.Proof = append([]byte(nil), good.Proof...)
	flipped.Proof[40] ^= 4
	otherRound := good
	otherRound.Round++
	otherCircuit := good
	otherCircuit.Params.LR++
	// The same proof claimed for another batch: the verifier draws other
	// leaves from the claimed step or seed (step 1 of a 2-sample epoch is
	// the other sample).
	otherStep := good
	otherStep.Step++
	otherSeed := good // a seed that draws the other sample
	otherSeed.Seed = drawLeaf(t, p, 2, 0).Seed
	for name, args := range map[string][]string{
		"flipped bit":                       {"--keys", kd, write("flipped.json", flipped)},
		"other round":                       {"--keys", kd, write("round.json", otherRound)},
		"other circuit":                     {"--keys", kd, write("circuit.json", otherCircuit)},
		"other step":                        {"--keys", kd, write("step.json", otherStep)},
		"other seed":                        {"--keys", kd, write("seed.json", otherSeed)},
		"not the step the verifier expects": {"--keys", kd, "--step", "1", goodPath},
		"not the run's seed":                {"--keys", kd, "--batch-seed", fmt.Sprint(good.Seed + 1), goodPath},
		"not the published size":            {"--keys", kd, "--data-size", "3", goodPath},
		"wrong vk hash":                     {"--keys", kd, "--vk-hash", strings.Repeat("ab", 32), goodPath},
		"wrong root":                        {"--keys", kd, "--data-root", strings.Repeat("0", 64), goodPath},
		"garbage":                           {"--keys", kd, write("garbage.json", zk.Bundle{})},
		"missing file":                      {"--keys", kd, filepath.Join(dir, "nope.json")},
	} {
		code, out, errOut := vtrain(t, append([]string{"verify-proof"}, args...)...)
		if code != 1 || strings.HasPrefix(out, "ok") {
			t.Errorf("%s: exit %d, stdout %q", name, code, out)
		}
		oneLine(t, name, errOut)
	}
	if code, _, _ := vtrain(t, "verify-proof", "--keys", kd); code != 2 {
		t.Errorf("no proof file: exit %d, want 2", code)
	}
}

func TestTrainPrivacyZK(t *testing.T) {
	code, out, errOut := vtrain(t, "train", "--model", "logreg", "--privacy", "zk", "--data", "synthetic", "--steps", "200", "--batch", "4", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r trainResult
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Steps != 200 || !(r.TestAccuracy > 0.5) {
		t.Fatalf("result %q (%v)", out, err)
	}
	for _, args := range [][]string{
		{"train", "--privacy", "zk"}, // an MLP
		{"train", "--model", "logreg", "--privacy", "zk", "--optimizer", "adamw"},
		{"train", "--model", "logreg", "--privacy", "zk", "--lr", "2"},
		{"train", "--model", "logreg", "--privacy", "fhe"},
		{"bench", "zk", "--batch", "0"},
		{"bench", "zk", "--proofs", "0"},
		{"keygen", "--batch", "4"},
		{"prove", "--keys", "x"},
	} {
		code, _, errOut := vtrain(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (%q)", args, code, errOut)
		}
		oneLine(t, strings.Join(args, " "), errOut)
	}
}

// TestKeygenProgress: keygen, minutes at real sizes, says what it is doing
// and how long the setup should take, then how long it took.
func TestKeygenProgress(t *testing.T) {
	code, out, stderr := vtrain(t, "keygen", "--features", "4", "--classes", "2", "--batch", "1", "--depth", "2", "--out", filepath.Join(t.TempDir(), "keys"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"compiling the circuit…", "compiling the circuit: done in ", " constraints (about ", "writing the keys: done in "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("keygen's stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(out, "verifying key sha256 ") || strings.Contains(out, "constraints (about") {
		t.Errorf("stdout %q", out)
	}
}

// drawLeaf finds a batch-1 draw over size samples that picks leaf.
func drawLeaf(t *testing.T, p zk.Params, size, leaf uint64) zk.Draw {
	t.Helper()
	for seed := range uint64(100) {
		d := zk.Draw{Seed: seed, Size: size}
		if l, err := p.Leaves(d); err == nil && l[0] == leaf {
			return d
		}
	}
	t.Fatalf("no seed draws leaf %d of %d", leaf, size)
	return zk.Draw{}
}

// TestProveOtherBatchEndToEnd runs the real commands on the real circuit
// at batch 1: keygen, prove the batch that the seed draws, and verify-proof
// accepts it for that seed and step only; a prover that picks its batch
// (by proving another seed's) is rejected however it labels the proof.
// The setup takes minutes on 2 cores: set VTRAIN_ZK_E2E=1 to run it.
func TestProveOtherBatchEndToEnd(t *testing.T) {
	if os.Getenv("VTRAIN_ZK_E2E") == "" {
		t.Skip("set VTRAIN_ZK_E2E=1 to run keygen, prove and verify-proof on the batch-1 circuit (minutes)")
	}
	dir := t.TempDir()
	kd := filepath.Join(dir, "keys")
	if code, _, errOut := vtrain(t, "keygen", "--batch", "1", "--out", kd); code != 0 {
		t.Fatalf("keygen: %s", errOut)
	}
	run := strings.Repeat("5a", 32)
	prove := func(seed, out string) zk.Bundle {
		t.Helper()
		code, _, errOut := vtrain(t, "prove", "--keys", kd, "--data", "synthetic", "--batch-seed", seed, "--step", "0",
			"--run", run, "--round", "3", "--peer", "12D3KooWe2e", "--out", filepath.Join(dir, out))
		if code != 0 {
			t.Fatalf("prove: %s", errOut)
		}
		f, err := os.Open(filepath.Join(dir, out))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, err := zk.ReadBundle(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	write := func(name string, b zk.Bundle) string {
		j, _ := json.Marshal(b)
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, j, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	honest := prove("7", "honest.json")
	if code, out, errOut := vtrain(t, "verify-proof", "--keys", kd, "--batch-seed", "7", "--step", "0", filepath.Join(dir, "honest.json")); code != 0 || !strings.HasPrefix(out, "ok:") {
		t.Fatalf("the drawn batch's proof: exit %d %q %q", code, out, errOut)
	}
	mine := prove("8", "mine.json") // the batch seed 8 draws, not the run's 7
	relabelled := mine
	relabelled.Seed = 7
	nextStep := honest
	nextStep.Step = 1
	for name, args := range map[string][]string{
		"another seed's batch":             {"--batch-seed", "7", filepath.Join(dir, "mine.json")},
		"another seed's batch, relabelled": {"--batch-seed", "7", write("relabelled.json", relabelled)},
		"the proof claimed for step 1":     {"--step", "1", write("step1.json", nextStep)},
		"step 0's proof, step 1 expected":  {"--step", "1", filepath.Join(dir, "honest.json")},
	} {
		code, out, errOut := vtrain(t, append([]string{"verify-proof", "--keys", kd}, args...)...)
		if code != 1 || strings.HasPrefix(out, "ok") {
			t.Errorf("%s: exit %d, stdout %q", name, code, out)
		}
		oneLine(t, name, errOut)
	}
}
