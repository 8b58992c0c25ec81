package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// console owns a command's stderr: the progress bar it draws there on a
// terminal, and every other line (logs, notes). A line first erases the
// bar and the bar comes back under it, so that a log line never lands in
// the middle of a bar or of another line.
type console struct {
	mu  sync.Mutex
	w   io.Writer
	tty bool
	bar string // drawn now, "" if none
}

func newConsole(w io.Writer) *console { return &console{w: w, tty: isTerminal(w)} }

// Write writes whole lines (slog's handler writes one record per call).
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tty && c.bar != "" {
		fmt.Fprint(c.w, "\r\033[K")
	}
	n, err := c.w.Write(p)
	if c.tty && c.bar != "" {
		fmt.Fprint(c.w, c.bar)
	}
	return n, err
}

func (c *console) println(s string) { c.Write([]byte(s + "\n")) }

// out returns a writer for the command's other output (stdout) that
// erases the bar before each write and draws it again after, when both
// go to a terminal.
func (c *console) out(w io.Writer) io.Writer {
	if !c.tty || !isTerminal(w) {
		return w
	}
	return &barAware{c: c, w: w}
}

type barAware struct {
	c *console
	w io.Writer
}

func (b *barAware) Write(p []byte) (int, error) {
	b.c.mu.Lock()
	defer b.c.mu.Unlock()
	if b.c.bar != "" {
		fmt.Fprint(b.c.w, "\r\033[K")
	}
	n, err := b.w.Write(p)
	if b.c.bar != "" {
		fmt.Fprint(b.c.w, b.c.bar)
	}
	return n, err
}

func (c *console) draw(bar string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bar = bar
	fmt.Fprint(c.w, "\r\033[K"+bar)
}

func (c *console) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bar != "" {
		fmt.Fprint(c.w, "\r\033[K")
		c.bar = ""
	}
}

// logger returns the command's one logging path: slog text records at
// level and above, through the console.
func (c *console) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(c, &slog.HandlerOptions{Level: level}))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress reports how far long work is: on a terminal a bar with the
// rate and ETA, redrawn at most ten times a second; elsewhere a plain
// line every Every (10 s by default), so that logs and CI output show it
// without control characters.
type progress struct {
	c     *console
	unit  string // "step", "round", "entry"
	total int64
	start time.Time
	last  time.Time
	Every time.Duration
	now   func() time.Time
}

func (c *console) progress(unit string, total int64) *progress {
	now := time.Now()
	return &progress{c: c, unit: unit, total: total, start: now, last: now, Every: 10 * time.Second, now: time.Now}
}

// update reports done units of total, with what else is worth showing
// (a loss), and returns the line or bar it drew ("" if none).
func (p *progress) update(done int64, extra string) string {
	now := p.now()
	frac := float64(done) / float64(max(p.total, 1))
	el := now.Sub(p.start)
	eta := "?"
	if done > 0 && el > 0 {
		eta = fmtDur(time.Duration(float64(el) * (float64(p.total-done) / float64(done))))
	}
	if extra != "" {
		extra = " " + extra
	}
	if p.c.tty {
		if now.Sub(p.last) < 100*time.Millisecond && done != p.total {
			return ""
		}
		p.last = now
		const width = 30
		n := min(width, int(frac*width))
		bar := fmt.Sprintf("[%s%s] %3.0f%% %s %d/%d%s, %s elapsed, eta %s ", strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac,
			p.unit, done, p.total, extra, fmtDur(el), eta)
		p.c.draw(bar)
		return bar
	}
	if now.Sub(p.last) < p.Every {
		return ""
	}
	p.last = now
	line := fmt.Sprintf("%s %d/%d (%.0f%%)%s, %s elapsed, eta %s", p.unit, done, p.total, 100*frac, extra, fmtDur(el), eta)
	p.c.println(line)
	return line
}

// note prints a line above the bar.
func (p *progress) note(msg string) { p.c.println(msg) }

// done erases the bar.
func (p *progress) done() { p.c.clear() }

// phase runs fn, a step with no progress of its own to report (a Groth16
// setup or proof), with a bar by time against an estimate of how long it
// takes: shown as "~" and never past 99% until fn returns.
func (c *console) phase(name string, estimate time.Duration, fn func() error) error {
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		every := 10 * time.Second
		if c.tty {
			every = 200 * time.Millisecond
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				c.phaseLine(name, time.Since(start), estimate)
			}
		}
	}()
	if !c.tty {
		est := ""
		if estimate > 0 {
			est = fmt.Sprintf(" (about %s)", fmtDur(estimate))
		}
		c.println(name + est + "…")
	}
	err := fn()
	close(stop)
	wg.Wait()
	c.clear()
	if err == nil {
		c.println(fmt.Sprintf("%s: done in %s", name, fmtDur(time.Since(start))))
	}
	return err
}

func (c *console) phaseLine(name string, el, estimate time.Duration) string {
	if estimate <= 0 {
		s := fmt.Sprintf("%s: %s elapsed", name, fmtDur(el))
		if c.tty {
			c.draw(s + " ")
		} else {
			c.println(s)
		}
		return s
	}
	frac := min(0.99, float64(el)/float64(estimate))
	eta := "~" + fmtDur(max(0, estimate-el))
	if el > estimate {
		eta = "soon (past the estimate)"
	}
	if c.tty {
		const width = 30
		n := int(frac * width)
		s := fmt.Sprintf("%s [%s%s] ~%3.0f%%, %s elapsed, eta %s ", name, strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*frac, fmtDur(el), eta)
		c.draw(s)
		return s
	}
	s := fmt.Sprintf("%s: ~%.0f%%, %s elapsed, eta %s", name, 100*frac, fmtDur(el), eta)
	c.println(s)
	return s
}

// fmtDur prints a duration to the second (to the tenth under ten seconds).
func fmtDur(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// logLevel parses --log-level.
func logLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, usagef("--log-level must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}
