package models

import (
	"fmt"
	"runtime"

	G "gorgonia.org/gorgonia"
)

// tape runs a graph's ops in order on the calling goroutine: the CPU
// machine of a Net.
//
// Gorgonia's tape machine computes the same values with the same ops, but
// its RunAll locks the caller's OS thread and runs the program on a new
// goroutine, every call. With one processor (GOMAXPROCS=1) that hands the
// processor from the locked thread to another and back through futex
// wake-ups twice per step: a tenth of an MLP step's CPU time went to
// them, and the step's wall time exceeded its CPU time while the woken
// thread waited for a core.
//
// Every op is called through Do, as the tape machine calls ops that it
// has not preallocated, and computes the same value; vtrain's ops write
// into buffers they own. Inputs (parameters, the batch, the labels),
// constants and Gorgonia's random nodes, whose values are bound when the
// graph is built, are read and not computed, as in the tape machine.
type tape struct {
	nodes []*G.Node
	ops   []G.Op  // ops[i] computes nodes[i]; nil for a bound value
	args  [][]int // args[i] indexes nodes[i]'s inputs in nodes
	vals  []G.Value
	index map[*G.Node]int
	in    []G.Value // scratch for an op's inputs
}

// newTape plans the nodes that roots need, every node after its inputs.
func newTape(roots ...*G.Node) *tape {
	t := &tape{index: map[*G.Node]int{}}
	for _, n := range order(roots) {
		t.index[n] = len(t.nodes)
		t.nodes = append(t.nodes, n)
		var op G.Op
		if n.Op() != nil && !boundOp(n.Op()) {
			op = n.Op()
		}
		t.ops = append(t.ops, op)
		var args []int
		for _, c := range children(n) {
			args = append(args, t.index[c])
		}
		t.args = append(t.args, args)
	}
	t.vals = make([]G.Value, len(t.nodes))
	return t
}

// boundOp reports whether nodes with op hold a value bound when the graph
// was built: Gorgonia's constants and random nodes, which its tape machine
// loads rather than runs.
func boundOp(op G.Op) bool {
	if gorgoniaOp(op) == "constant" {
		return true
	}
	return fmt.Sprintf("%T", op) == "gorgonia.randomOp"
}

// run computes every node.
func (t *tape) run() error {
	// Yield once per run. A goroutine that never yields is found by the
	// scheduler's monitor on the same scheduling tick after 10 ms and, if
	// it is in a cgo call (a matrix product) then, its processor is taken
	// and handed to another thread, and the monitor is back at its fastest
	// tick: the cost that cutting products into short pieces avoids (see
	// internal/openblas). A yield with nothing else to run costs well
	// under a microsecond.
	runtime.Gosched()
	for i, n := range t.nodes {
		op := t.ops[i]
		if op == nil {
			v := n.Value()
			if v == nil {
				return fmt.Errorf("no value bound to %s", n.Name())
			}
			t.vals[i] = v
			continue
		}
		in := t.in[:0]
		for _, a := range t.args[i] {
			in = append(in, t.vals[a])
		}
		t.in = in
		v, err := op.Do(in...)
		clear(in)
		if err != nil {
			return fmt.Errorf("%v: %w", op, err)
		}
		t.vals[i] = v
	}
	return nil
}

// value returns n's value from the last run, nil if n is not on the tape
// or has not been computed.
func (t *tape) value(n *G.Node) G.Value {
	i, ok := t.index[n]
	if !ok {
		return nil
	}
	return t.vals[i]
}
