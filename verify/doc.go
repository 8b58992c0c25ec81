// Package verify will make contributions checkable without trust:
// commitments and hashes, the append-only Merkle-tree ledger with signed
// tree heads, challenge selection from the round beacon, spot-check
// re-execution, gnark circuits and Groth16 proofs for private data, and the
// audit that replays a ledger from genesis.
//
// Nothing is implemented yet; see the verification and proof issues.
package verify
