// Package benchmarks holds vtrain's reproducible benchmarks: Go benchmarks
// that report the domain's figures (ms per step, GFLOP/s, bytes), and the
// scripts that run side-by-side comparisons with PyTorch. Results, with the
// command and the machine, are in README.md beside this file.
package benchmarks
