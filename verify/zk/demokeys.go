package zk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// OtherCircuitError means a keys directory holds keys for another circuit
// than the one asked for.
type OtherCircuitError struct {
	Dir       string
	Got, Want Params
}

func (e *OtherCircuitError) Error() string {
	return fmt.Sprintf("zk: %s: keys for circuit %+v, not %+v", e.Dir, e.Got, e.Want)
}

// Unwrap makes the error an ErrKeys.
func (e *OtherCircuitError) Unwrap() error { return ErrKeys }

// DemoKeysDir is the user cache's directory for the keys of circuit p, as
// DemoKeys makes them: one per circuit (CircuitID), shared by every demo
// and test on the machine.
func DemoKeysDir(p Params) string {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "vtrain", "zk-keys", CircuitID(p))
}

// DemoKeys returns keys of circuit p for a demo or a test, and their
// directory: dir when it is not empty, else DemoKeysDir(p). When that
// directory holds no keys (no params.json), it makes them by a
// single-party Setup (a minute or two for the 784×10 circuit), calling
// onSetup first when it is not nil, and writes them to a temporary
// directory beside it that it renames into place, so that no one sees
// half the keys; when another process renamed its keys there first, it
// takes those. Keys it made come whole (PK and CCS too); keys it found
// come with the verifying key only, their directory checked to hold a
// proving key and circuit.json (LoadProver reads the proving key and
// checks it against the circuit this build compiles).
//
// Not for real runs: whoever runs a single-party setup could forge proofs
// (Keys). A run's keys come from a multi-party ceremony (ceremony.go,
// vtrain ceremony).
//
// A directory that holds another circuit's keys is an *OtherCircuitError;
// one that holds keys without a proving key, or unreadable keys, is an
// error too: DemoKeys never overwrites keys.
func DemoKeys(p Params, dir string, onSetup func(dir string)) (*Keys, string, error) {
	if err := p.Validate(); err != nil {
		return nil, "", err
	}
	if dir == "" {
		dir = DemoKeysDir(p)
	}
	if k, err := foundKeys(p, dir); !errors.Is(err, fs.ErrNotExist) {
		return k, dir, err
	}
	if onSetup != nil {
		onSetup(dir)
	}
	keys, err := Setup(p)
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".keys-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(tmp)
	if err := keys.Save(tmp); err != nil {
		return nil, "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another process made them meanwhile: take those.
		k, ferr := foundKeys(p, dir)
		if errors.Is(ferr, fs.ErrNotExist) {
			return nil, "", err
		}
		return k, dir, ferr
	}
	return keys, dir, nil
}

// foundKeys reads the verifying key of dir's keys for circuit p and checks
// that dir holds a proving key and circuit.json. Its error is an
// fs.ErrNotExist only when dir holds no params.json.
func foundKeys(p Params, dir string) (*Keys, error) {
	if _, err := os.Stat(filepath.Join(dir, ParamsFile)); err != nil {
		return nil, err
	}
	got, err := LoadParams(dir)
	if err != nil {
		return nil, err
	}
	if got != p {
		return nil, &OtherCircuitError{Dir: dir, Got: got, Want: p}
	}
	keys, err := LoadVerifier(dir, "")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, PKFile)); err != nil {
		return nil, fmt.Errorf("%s holds no proving key: the demo's private peers need one", dir)
	}
	if _, err := readCircuit(dir); err != nil {
		return nil, err
	}
	return keys, nil
}
