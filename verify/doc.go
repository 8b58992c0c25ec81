// Package verify makes contributions checkable without trust. Its
// subpackages:
//
//   - ledger: the append-only Merkle-tree log (RFC 6962/9162 hashing,
//     inclusion and consistency proofs), signed tree heads, crash recovery
//     that saves a damaged tail aside, the content-addressed payload store,
//     and Check, the auditor's structural verification of a ledger file;
//   - zk: gnark circuits and Groth16 proofs of a training step on private
//     data, with the commitments, data trees and challenge/response flow
//     they need.
//
// Nodes write their ledgers (package node) and vtrain audit replays them.
// Still to come (the verification issue): commitments and segment roots in
// updates, challenges drawn from the round beacon and re-executed, the
// audit recomputing aggregates, and misbehaving peers on purpose.
package verify
