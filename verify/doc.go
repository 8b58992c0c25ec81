// Package verify will make contributions checkable without trust:
// commitments and hashes, the append-only Merkle-tree ledger with signed
// tree heads, challenge selection from the round beacon, spot-check
// re-execution, and the audit that replays a ledger from genesis.
//
// Subpackage zk holds what exists today: gnark circuits and Groth16 proofs
// of a training step on private data, with the commitments, data trees and
// challenge/response flow they need. The ledger, re-execution challenges
// and the audit are the verification issue's.
package verify
