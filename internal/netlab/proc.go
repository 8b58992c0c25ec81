package netlab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a process the lab runs in a host's namespace.
type Proc struct {
	Host *Host
	Name string
	cmd  *exec.Cmd

	mu     sync.Mutex
	lines  []string // its standard output, by line
	notify chan struct{}
	done   chan struct{}
	err    error
}

// Start runs bin with args in the host's namespace; the process's
// standard output is kept by line (Lines, WaitLine) and written, with its
// standard error, to logDir/NAME.out and NAME.err when logDir is not empty.
// The process dies with the one that started it (SIGKILL).
func (h *Host) Start(logDir, name, bin string, args ...string) (*Proc, error) {
	l := h.lab
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS, bin}, args...)...)
	// ip netns exec execs bin in its place, so bin inherits the death
	// signal: a killed test leaves no node running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout io.Writer = io.Discard
	var files []*os.File
	if logDir != "" {
		o, err := os.Create(filepath.Join(logDir, name+".out"))
		if err != nil {
			return nil, err
		}
		e, err := os.Create(filepath.Join(logDir, name+".err"))
		if err != nil {
			o.Close()
			return nil, err
		}
		files = append(files, o, e)
		stdout, cmd.Stderr = o, e
	}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	p := &Proc{Host: h, Name: name, cmd: cmd, notify: make(chan struct{}), done: make(chan struct{})}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("netlab: lab closed")
	}
	if err := cmd.Start(); err != nil {
		l.mu.Unlock()
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<16), 1<<24)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(stdout, line)
			p.mu.Lock()
			p.lines = append(p.lines, line)
			close(p.notify)
			p.notify = make(chan struct{})
			p.mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		for _, f := range files {
			f.Close()
		}
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Lines returns the standard output so far, by line.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// WaitLine waits until a line of the standard output contains s and
// returns it; an error when the process ends or timeout passes first.
func (p *Proc) WaitLine(s string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	seen := 0
	for {
		p.mu.Lock()
		lines, ch := p.lines, p.notify
		p.mu.Unlock()
		for ; seen < len(lines); seen++ {
			if strings.Contains(lines[seen], s) {
				return lines[seen], nil
			}
		}
		select {
		case <-ch:
		case <-p.done:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if n > seen {
				continue
			}
			return "", fmt.Errorf("netlab: %s ended (%v) before printing %q", p.Name, p.Err(), s)
		case <-deadline:
			return "", fmt.Errorf("netlab: %s printed no %q within %v", p.Name, s, timeout)
		}
	}
}

// Err is the process's exit error once it has ended.
func (p *Proc) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Wait waits for the process to end, at most timeout; then it stops it.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.Err()
	case <-time.After(timeout):
		p.Stop(5 * time.Second)
		return fmt.Errorf("netlab: %s still running after %v: stopped", p.Name, timeout)
	}
}

// Stop asks the process to end (SIGTERM) and kills it after grace.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}
