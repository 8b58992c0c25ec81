// Package trainer runs vtrain's local training: inner optimizers (SGD with
// momentum, AdamW) on the flat parameter vector, learning-rate schedules
// (constant, cosine with linear warm-up), the step loop over a
// deterministic batch schedule, evaluation, and checkpoints. It also holds
// the decentralized round protocol as a pure state machine ([Engine]: see
// round.go), which the gossip layer drives.
//
// # Rounds
//
// Each round every peer trains H inner steps from the agreed state θ_r,
// publishes its compressed pseudo-gradient bound to θ_r's hash, collects
// the others' until it holds every expected peer's (or the timeout passes
// with a quorum), aggregates them in sorted-ID order, steps the outer
// optimizer, and publishes a commit naming the update set and the new
// state hash. Commits converge on the union of the committed sets (a peer
// fetches what it lacks and re-commits), and a round is decided when a
// strict majority of the expected peers commit one set, or when peers have
// moved on from a result. A peer that finds itself building on a state the
// majority abandoned fetches the majority's state. A partitioned minority
// does not decide; it stalls and catches up. The simulation tests
// (sim_test.go) drive many engines through loss, delay, duplication,
// partitions and crashes and assert that every peer decides every round
// identically.
//
// # Determinism contract
//
// Given the same Config (model, optimizer, schedule, batch, seed, shard),
// the same training data (checked by fingerprint), the same vtrain build
// and the same BLAS configuration (backend and thread count), N steps give
// a bit-identical parameter vector, and so the same [ParamHash]. This holds
// because:
//
//   - initialisation and batch order come from internal/prng, whose output
//     is specified by vtrain, not by the Go release;
//   - the Gorgonia graph runs its operations in a fixed order on one
//     goroutine, and its pure-Go kernels (gonum) sum in a fixed order;
//   - the optimizers are element-wise loops whose products are rounded to
//     float32 before they are added, so no compiler can fuse them into FMAs
//     differently on another architecture;
//   - a checkpoint stores the parameters, the optimizer buffers and the
//     step count, which is the sampler's whole state, so a resumed run
//     continues exactly where the uninterrupted one would be.
//
// What is outside the contract: a different BLAS backend (gonum vs
// OpenBLAS) or thread count may round matrix products differently, and a
// GPU engine certainly does. Runs that must agree across such boundaries
// are compared within a tolerance, not bit for bit.
package trainer
