// Package golden holds the golden vectors of every encoding that peers or
// auditors must agree on byte for byte: update and value IDs, state,
// snapshot and parameter hashes, the sign bytes of votes, joins, verdicts
// and certificates, the run ID, ledger entries and their Merkle hashes,
// and the spot-check beacon and draw. The expected values in
// testdata/vectors.json were derived by an independent implementation,
// testdata/derive.py; the package has only tests.
package golden
