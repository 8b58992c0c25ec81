package consensus

// Test coverage of this package (go test -cover ./consensus/): 98.1% of
// statements, from the simulations (sim_test.go: every Byzantine strategy,
// loss, partitions, crashes, joiners, a Sybil wave, a finite run, and the
// harness's own test with a weakened quorum) and the engine's unit tests
// (engine_test.go: every refusal branch). The statements no test runs, and
// why:
//
//   - agreement.go:239, validate.go:229, validate.go:108: the proposer's or
//     a voter's App.Step failing. The toy applications never fail on
//     updates they accepted (CheckUpdate decodes; Step cannot then fail);
//     trainer.App likewise. Kept: an App is an interface, and a failing
//     one must not decide.
//   - validate.go:118, validate.go:235: a value that would leave no voter
//     (every seated member excluded or dropped at once). Reaching it needs
//     every voter accused in one round; the check keeps a run from
//     deciding itself into a state no one can certify.
//   - agreement.go:597: decide called twice in one round; decide is only
//     called when a.decided is nil (defence in depth).
//   - catchup.go:60: a certificate for the nil value; checkCommit refuses
//     it first (the value's ID is never zero).
//   - catchup.go:84: CheckEquivocation on a malformed proof (the auditor's
//     entry point; the engine's path is covered).
//   - catchup.go:144: a proof asked of nobody but this node.
//   - catchup.go:281, 284: Restore of a state whose hash a verified link
//     vouches for, without that link, or with voters the link does not
//     name; wantState is only set from a verified link, and the voters are
//     part of the state hash the link certifies, so only more than a third
//     of Byzantine voters could sign such a pair.
//   - engine.go:259: NewEngine with a kept chain that fails to verify
//     (covered through verifyLinks' own tests; this is the error wrap).
//   - engine.go:320: a pending verdict older than the kept history at the
//     start of a round (pruned earlier when it is decided).
//   - engine.go:442: the signature cache reaching 65,536 entries (it is
//     then cleared).
//   - engine.go:478: the buffer of next-round messages full (8 per member
//     and 64); the simulations never send that many early.
//   - engine.go:714, 717, messages.go:236, validate.go:250: sort
//     comparators' "greater" or "equal" case, for keys that are unique by
//     construction (which cases run depends on the sort's input order).
//   - engine.go:734: Status naming a proposal checked valid. TestStatus
//     covers the unchecked, pending and invalid states from hand-made
//     values; a valid one needs the aggregate's state hash, which only a
//     proposer's engine computes, and the status line is a log.
//   - state.go:69: Genesis of a spec whose model does not validate; specs
//     are validated before.
//   - validate.go:136: asking for missing updates while a decided value is
//     pending (the pending path asks in tryApply instead).
//   - verdicts.go:143: more than 16,384 pending verdicts.
//   - verdicts.go:172: a verdict of the current round kept past the
//     round's start (the simulations decide before any arrives).
