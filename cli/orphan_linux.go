//go:build linux

package cli

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// startDemoNode starts a demo's node so that the kernel sends it SIGTERM
// (which it handles like an interrupt: it closes its ledger and stops)
// when the demo dies, killed or crashed, where it would otherwise run on
// alone, an orphan holding its ports: a node that writes nothing to the
// demo's closed pipes does not notice (one ran for half an hour).
//
// The signal is sent when the OS thread that forked the node ends, not
// the process, and Go ends a thread when a goroutine locked to it exits;
// so every node is forked by one goroutine locked to its own thread for
// the life of the process, which no other goroutine runs on.
func startDemoNode(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	spawner.once.Do(func() {
		spawner.req = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked
			for r := range spawner.req {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawner.req <- spawnReq{cmd, done}
	return <-done
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var spawner struct {
	once sync.Once
	req  chan spawnReq
}
