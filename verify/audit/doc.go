// Package audit replays a run from the ledgers its nodes kept, as a
// library: `vtrain audit` is a thin shell over it, and any program can
// audit a run without the CLI. See Audit.
package audit
