package cli

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// clock is a fake clock for progress.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// TestProgressPlainLines: away from a terminal, progress is a plain line
// at most every Every, with the count, the elapsed time and the ETA, and
// no control characters.
func TestProgressPlainLines(t *testing.T) {
	var b bytes.Buffer
	con := newConsole(&b)
	ck := &clock{t: time.Unix(1000, 0)}
	p := con.progress("round", 10)
	p.now, p.start, p.last = ck.now, ck.t, ck.t
	var lines []string
	for i := int64(1); i <= 10; i++ {
		ck.t = ck.t.Add(4 * time.Second)
		if s := p.update(i, "inner loss 0.5"); s != "" {
			lines = append(lines, s)
		}
	}
	// 40 s in steps of 4 s: a line every 12 s (the first at 12 s).
	if len(lines) != 3 || lines[0] != "round 3/10 (30%) inner loss 0.5, 12s elapsed, eta 28s" {
		t.Fatalf("lines %q", lines)
	}
	if strings.ContainsAny(b.String(), "\r\033") || strings.Count(b.String(), "\n") != 3 {
		t.Errorf("output %q", b.String())
	}
}

// TestProgressBar: on a terminal, a bar with the ETA; a log line through
// the same console erases the bar, and the bar is drawn again under it,
// so no log line lands in the middle of the bar.
func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	con := newConsole(&b)
	con.tty = true
	ck := &clock{t: time.Unix(1000, 0)}
	p := con.progress("step", 4)
	p.now, p.start, p.last = ck.now, ck.t, ck.t
	ck.t = ck.t.Add(time.Second)
	bar := p.update(1, "")
	if !strings.HasPrefix(bar, "[=======                       ]  25% step 1/4, 1s elapsed, eta 3s") {
		t.Fatalf("bar %q", bar)
	}
	b.Reset()
	con.logger(slog.LevelWarn).Warn("peer slow", "peer", "12D3…abcdef")
	out := b.String()
	i, j := strings.Index(out, "\r\033[K"), strings.Index(out, "level=WARN")
	if i != 0 || j < 0 || !strings.HasSuffix(out, "\n"+bar) {
		t.Errorf("a log line under a bar: %q", out)
	}
	b.Reset()
	con.logger(slog.LevelWarn).Info("chatter")
	if b.Len() != 0 {
		t.Errorf("an info record at level warn: %q", b.String())
	}
	p.done()
	if !strings.HasSuffix(b.String(), "\r\033[K") || con.bar != "" {
		t.Errorf("done left the bar: %q", b.String())
	}
}

// TestPhase: work without progress of its own (a Groth16 setup) reports
// its name, the estimate and the time it took.
func TestPhase(t *testing.T) {
	var b bytes.Buffer
	con := newConsole(&b)
	if err := con.phase("Groth16 setup of 1000 constraints", 150*time.Millisecond, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	if !strings.HasPrefix(s, "Groth16 setup of 1000 constraints (about 200ms)…\n") || !strings.Contains(s, "Groth16 setup of 1000 constraints: done in ") {
		t.Errorf("output %q", s)
	}
	if got := con.phaseLine("setup", 30*time.Second, time.Minute); got != "setup: ~50%, 30s elapsed, eta ~30s" {
		t.Errorf("phase line %q", got)
	}
	if got := con.phaseLine("setup", 2*time.Minute, time.Minute); got != "setup: ~99%, 2m0s elapsed, eta soon (past the estimate)" {
		t.Errorf("phase line past the estimate %q", got)
	}
}
