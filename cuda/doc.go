// Package cuda will hold a GPU engine for vtrain's models, built on
// gorgonia.org/cu (driver API, cuBLAS, kernels) behind the "cuda" build
// tag, so that CPU builds never need CUDA.
//
// Nothing is implemented yet; see the CUDA issue.
package cuda
