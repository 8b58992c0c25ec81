package zk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoKeys: DemoKeys makes keys once where there are none and takes
// them afterwards; it takes the keys another process renamed into place
// while it made its own; and it refuses, without a setup, a directory of
// another circuit's keys, of keys without a proving key or circuit.json,
// or of an unreadable params.json.
func TestDemoKeys(t *testing.T) {
	setups := 0
	count := func(string) { setups++ }
	dir := filepath.Join(t.TempDir(), "keys")
	made, got, err := DemoKeys(small, dir, count)
	if err != nil {
		t.Fatal(err)
	}
	if got != dir || setups != 1 || made.PK == nil || made.CCS == nil {
		t.Fatalf("no keys in %s: dir %s, %d setups, proving key %v: want the keys made whole, once", dir, got, setups, made.PK != nil)
	}
	found, _, err := DemoKeys(small, dir, count)
	if err != nil {
		t.Fatal(err)
	}
	if setups != 1 || found.PK != nil || VKHash(found.VK) != VKHash(made.VK) {
		t.Fatalf("keys in place: %d setups, verifying key %s, want the one made (%s) and no setup", setups, VKHash(found.VK), VKHash(made.VK))
	}
	if _, err := LoadProver(dir, VKHash(made.VK)); err != nil {
		t.Fatalf("the keys made: %v", err)
	}

	// Another process renames its keys into place during the setup.
	race := filepath.Join(t.TempDir(), "keys")
	theirs := keysForSmall(t)
	k, _, err := DemoKeys(small, race, func(dir string) {
		if err := theirs.Save(dir); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatalf("keys made meanwhile: %v", err)
	}
	if VKHash(k.VK) != VKHash(theirs.VK) {
		t.Fatal("keys made meanwhile: not those")
	}

	refuse := func(name string, edit func(dir string), want string) {
		t.Helper()
		d := t.TempDir()
		if err := keysForSmall(t).Save(d); err != nil {
			t.Fatal(err)
		}
		edit(d)
		before := setups
		_, _, err := DemoKeys(small, d, count)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", name, err, want)
		}
		if setups != before {
			t.Errorf("%s: a setup over the keys", name)
		}
	}
	remove := func(f string) func(string) {
		return func(d string) {
			if err := os.Remove(filepath.Join(d, f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	refuse("no proving key", remove(PKFile), "holds no proving key")
	refuse("no circuit.json", remove(CircuitFile), "older vtrain")
	refuse("no verifying key", remove(VKFile), VKFile)
	refuse("unreadable params.json", func(d string) {
		if err := os.WriteFile(filepath.Join(d, ParamsFile), []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
	}, ParamsFile)

	other := small
	other.Depth++
	_, _, err = DemoKeys(other, dir, count)
	var oc *OtherCircuitError
	if !errors.As(err, &oc) || !errors.Is(err, ErrKeys) || oc.Dir != dir || oc.Got != small || oc.Want != other {
		t.Fatalf("another circuit's keys: %v, want an OtherCircuitError", err)
	}
}
