//go:build !linux

package cli

import "os/exec"

// startDemoNode starts a demo's node. Only Linux has a parent-death signal;
// elsewhere a killed demo's nodes stop when they next write to its closed
// pipes, or at the end of their rounds.
func startDemoNode(cmd *exec.Cmd) error { return cmd.Start() }
