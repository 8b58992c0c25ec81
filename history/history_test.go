package history

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func records(n int, acc0 float64) []Record {
	var out []Record
	for r := range n {
		rec := Record{Round: uint64(r), Time: time.Date(2026, 12, 2, 6, 0, r, 0, time.UTC), InnerLoss: 2 / float64(r+1),
			OutBytes: map[string]uint64{"updates": 1300, "challenge_evidence": uint64(4000 * (r % 2))}, Peers: 3, Members: 4, Voters: 4,
			Decision: Decision{Hash: "ab", Updates: 4, Signers: 3}}
		if r%2 == 1 || r == n-1 {
			a, l := acc0+0.05*float64(r), 1/float64(r+1)
			rec.AgreedAccuracy, rec.AgreedLoss = &a, &l
		}
		out = append(out, rec)
	}
	return out
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(4, 0.5)
	for _, r := range recs[:3] {
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	// A restarted node appends; it may record again a round it recorded
	// before it stopped; and a crash may cut the last line.
	w, _ = Create(dir)
	recs[2].InnerLoss = 9
	w.Append(recs[2])
	w.Append(recs[3])
	w.Close()
	f, _ := os.OpenFile(filepath.Join(dir, File), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"round":4,"time":"2026-`)
	f.Close()
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[2].InnerLoss != 9 || got[3].AgreedAccuracy == nil || *got[3].AgreedAccuracy != 0.65 || got[0].AgreedAccuracy != nil {
		t.Fatalf("read back %+v", got)
	}
	b, _ := os.ReadFile(filepath.Join(dir, File))
	if !strings.Contains(string(b), `"time":"2026-12-02T06:00:00Z"`) {
		t.Errorf("time not RFC 3339 UTC: %s", b)
	}
	// A damaged line that is not the last is an error naming the line.
	os.WriteFile(filepath.Join(dir, File), []byte("{\"round\":0}\nnot json\n{\"round\":1}\n"), 0o644)
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("damaged record: %v", err)
	}
	os.WriteFile(filepath.Join(dir, File), nil, 0o644)
	if _, err := Read(dir); err == nil {
		t.Error("an empty record read without error")
	}
}

// TestPlot draws two runs and checks that the PNG decodes, has the size
// asked for, and that each run's colour covers pixels: the curves are
// drawn, not just the axes.
func TestPlot(t *testing.T) {
	var buf bytes.Buffer
	runs := []Run{{Name: "a", Records: records(12, 0.3)}, {Name: "b", Records: records(8, 0.4)}}
	if err := Plot(&buf, runs, 800, 900); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	CheckPNG(t, img, 800, 900, 2)
	if err := Plot(&buf, nil, 800, 900); err == nil {
		t.Error("plotted no runs")
	}
}

// CheckPNG checks that img is w × h pixels and that the first runs
// colours of the plot palette each cover a visible part of it.
func CheckPNG(t testing.TB, img image.Image, w, h, runs int) {
	t.Helper()
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Fatalf("image %v, want %dx%d", b, w, h)
	}
	for i := range runs {
		want := runColor(i)
		n := 0
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				if near(img.At(x, y), want) {
					n++
				}
			}
		}
		if n < 200 {
			t.Errorf("run %d's colour covers %d pixels: its curves are missing", i, n)
		}
	}
}

func near(a, b color.Color) bool {
	r1, g1, b1, _ := a.RGBA()
	r2, g2, b2, _ := b.RGBA()
	d := func(x, y uint32) uint32 {
		if x > y {
			return x - y
		}
		return y - x
	}
	return d(r1, r2) < 0x1000 && d(g1, g2) < 0x1000 && d(b1, b2) < 0x1000
}
