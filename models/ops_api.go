package models

import G "gorgonia.org/gorgonia"

// The ops a user's model (Definition.Forward) is built from.

// Dense is a fully connected layer, x·w + b, for x [N×I], w [I×O], b [O].
func Dense(x, w, b *G.Node) (*G.Node, error) { return denseLayer(x, w, b) }

// ReLU is max(x, 0), elementwise.
func ReLU(x *G.Node) (*G.Node, error) { return relu(x) }

// Tanh is tanh(x), elementwise.
func Tanh(x *G.Node) (*G.Node, error) { return G.Tanh(x) }

// Add is a + b for tensors of one shape (a residual connection).
func Add(a, b *G.Node) (*G.Node, error) { return G.Add(a, b) }

// Conv is a 2-D convolution with square kernels, stride 1 and pad zeros
// on every side, followed by ReLU and 2×2 max-pooling: x [N×C×H×W],
// w [O×C×K×K], b [O].
func Conv(x, w, b *G.Node, pad int) (*G.Node, error) { return conv2d(x, w, b, pad, true) }
