// Package trainer runs vtrain's local training: inner optimizers (SGD with
// momentum, AdamW) on the flat parameter vector, learning-rate schedules
// (constant, cosine with linear warm-up), the step loop over a
// deterministic batch schedule, evaluation, and checkpoints; a round's
// inner steps with the segment roots a challenger checks (TrainRound) and
// the re-execution that checks them (Judge); and the application side of
// the round protocol (App: what an update's payload means, how a decided
// set of updates steps the model). The round protocol itself is package
// consensus.
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
