package monitor_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/vtrain/vtrain/internal/testenv"
)

// chromium returns the headless browser to drive, "" if none is installed.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// page is what the test reads from the rendered dashboard.
type page struct {
	RunID     string   `json:"runId"`
	Decided   int      `json:"decided"`
	AccRounds []int    `json:"accRounds"` // rounds with a point on the accuracy curve
	ByteRnds  []int    `json:"byteRounds"`
	Rows      []row    `json:"rows"`
	Members   string   `json:"members"`
	Status    string   `json:"status"`
	Scroll    float64  `json:"scrollWidth"`
	Width     float64  `json:"innerWidth"`
	ChartsFit bool     `json:"chartsFit"` // every chart drawn at its current width
	Wide      []string `json:"wide"`      // elements reaching past the window's right edge (outside the table's scroller)
}

type row struct {
	Peer       string `json:"peer"`
	Aggregated int    `json:"aggregated"`
	Acceptance string `json:"acceptance"`
	Wait       string `json:"wait"`
}

const readPage = `(() => {
  const q = s => document.querySelector(s);
  const nums = s => [...document.querySelectorAll(s)].map(e => +e.getAttribute('data-round'));
  return {
    runId: q('#run-id').textContent,
    decided: +(q('#round').getAttribute('data-decided') || -1),
    accRounds: nums('#acc-chart g[data-series="accuracy"] circle'),
    byteRounds: nums('#bytes-chart g[data-series="out"] circle'),
    rows: [...document.querySelectorAll('#contrib tbody tr[data-peer]')].map(r => ({
      peer: r.getAttribute('data-peer'), aggregated: +r.getAttribute('data-aggregated'),
      acceptance: r.querySelector('td.acceptance').textContent, wait: r.querySelector('td.wait').textContent})),
    members: q('#members').textContent,
    status: q('#status').textContent,
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    chartsFit: [...document.querySelectorAll('svg.chart')].every(e => Math.abs(+(e.getAttribute('viewBox') || '0 0 0').split(' ')[2] - e.clientWidth) <= 1),
    wide: [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.table-wrap'))
      .slice(0, 5).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className),
  };
})()`

// outputDir is where the test leaves its screenshots: $VTRAIN_SCREENSHOTS
// if set (to keep them), else the test's temporary directory.
func outputDir(t *testing.T) string {
	if d := os.Getenv("VTRAIN_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestDashboardInBrowser loads the dashboard of a live three-node run in
// headless Chromium, waits for the run to decide two more rounds, and
// checks in the rendered page that the accuracy and bytes curves and the
// contribution table show them; then it views the page at a phone's width
// (nothing wider than the screen but the table, which scrolls inside its
// box) and saves both as PNG screenshots.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("a browser run: not in -short (the metrics tests cover the monitor's goroutines)")
	}
	chrome := chromium()
	testenv.Require(t, chrome != "", "no chromium found (apt-get install chromium)")
	w := startWatched(t, 3, 40) // long enough that chromium, starting, does not miss the rounds it waits for
	n := w.Nodes[0]
	n.WaitRound(t, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(w.url(n))); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	read := func() page {
		t.Helper()
		p, err := chromedp.Run(bctx, chromedp.Evaluate[page](readPage))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		return p
	}
	// waitFor polls the page until ok accepts it (the page polls the node
	// every second); it fails after a minute, a guard against a hang.
	waitFor := func(what string, ok func(page) bool) page {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			p := read()
			if ok(p) {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("the dashboard never showed %s; last seen: %+v", what, p)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	before := waitFor("a decided round", func(p page) bool { return p.Decided >= 1 && len(p.Rows) > 0 })
	if before.RunID != w.Spec.RunID().String() {
		t.Errorf("run ID shown %q, want the full %s", before.RunID, w.Spec.RunID())
	}
	agg := map[string]int{}
	for _, r := range before.Rows {
		agg[r.Peer] = r.Aggregated
	}
	target := before.Decided + 2
	n.WaitRound(t, uint64(target))
	after := waitFor(fmt.Sprintf("round %d", target), func(p page) bool {
		return p.Decided >= target && slices.Contains(p.AccRounds, target)
	})
	for r := before.Decided + 1; r <= target; r++ {
		if !slices.Contains(after.AccRounds, r) || !slices.Contains(after.ByteRnds, r) {
			t.Errorf("round %d missing from the curves: accuracy %v, bytes %v", r, after.AccRounds, after.ByteRnds)
		}
	}
	if after.Members != "3" || len(after.Rows) != 3 {
		t.Errorf("members %q, %d contribution rows; want 3 and 3", after.Members, len(after.Rows))
	}
	// The two new rounds' updates in the table: each round aggregates one
	// update at least (all three, unless a peer on a busy machine missed
	// the round's deadline); no row goes back.
	grown := 0
	for _, r := range after.Rows {
		if r.Aggregated < agg[r.Peer] || r.Acceptance == "–" || r.Wait == "–" {
			t.Errorf("peer %s: aggregated %d (was %d), acceptance %q, wait %q", r.Peer, r.Aggregated, agg[r.Peer], r.Acceptance, r.Wait)
		}
		grown += r.Aggregated - agg[r.Peer]
	}
	if grown < 2 {
		t.Errorf("the contribution table shows %d more aggregated updates after two more rounds, want 2 or more", grown)
	}
	dir := outputDir(t)
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", p, len(b))
	}
	shot("dashboard.png")

	// A phone: 390 CSS pixels wide.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	phone := waitFor("the page laid out again", func(p page) bool { return p.Width != 1280 && p.ChartsFit })
	if phone.Width != 390 || phone.Scroll > phone.Width || len(phone.Wide) > 0 {
		t.Errorf("at a phone's 390 px the page is %v px wide (window %v): it does not fit; too wide: %v", phone.Scroll, phone.Width, phone.Wide)
	}
	shot("dashboard-phone.png")
}
