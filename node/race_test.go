//go:build race

package node_test

// raceEnabled: the race detector slows the Groth16 prover tenfold and
// more, past the time a run's challengers wait for a proof.
const raceEnabled = true
