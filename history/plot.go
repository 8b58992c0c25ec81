package history

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Run is one run's record, with the name it is plotted under.
type Run struct {
	Name    string
	Records []Record
}

// Load reads the record of a run directory: a node's output directory
// (holding metrics.jsonl), a demo's (the record of its peer00), or a
// metrics.jsonl file.
func Load(path string) (Run, error) {
	p := path
	if _, err := os.Stat(filepath.Join(path, File)); err != nil {
		if _, err := os.Stat(filepath.Join(path, "peer00", File)); err == nil {
			p = filepath.Join(path, "peer00")
		}
	}
	recs, err := Read(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Run{}, fmt.Errorf("history: %s holds no %s (a node's --out directory or a demo's)", path, File)
		}
		return Run{}, err
	}
	name := filepath.Base(filepath.Clean(path))
	if name == File {
		name = filepath.Base(filepath.Dir(filepath.Clean(path)))
	}
	return Run{Name: name, Records: recs}, nil
}

// Plot draws the runs' curves against round, one panel each: the agreed
// model's test accuracy, its test loss beside the inner loss, and the
// bytes a node moved per round; runs are overlaid in distinct colours.
// It writes a PNG of width × height pixels.
func Plot(w io.Writer, runs []Run, width, height int) error {
	if len(runs) == 0 {
		return errors.New("history: no runs to plot")
	}
	acc, loss, bytes := plot.New(), plot.New(), plot.New()
	acc.Title.Text, acc.Y.Label.Text = "agreed model: test accuracy", "accuracy"
	loss.Title.Text, loss.Y.Label.Text = "loss: agreed model (test, solid) and inner steps (dashed)", "loss"
	bytes.Title.Text, bytes.Y.Label.Text = "bytes on the wire per round (out, one node)", "KB"
	for _, p := range []*plot.Plot{acc, loss, bytes} {
		p.X.Label.Text = "round"
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
	}
	acc.Y.Min, acc.Y.Max = 0, 1
	// One round axis for the three panels: from round 0 to the last
	// round of any run.
	var last float64
	for _, r := range runs {
		if n := len(r.Records); n > 0 {
			last = max(last, float64(r.Records[n-1].Round))
		}
	}
	for _, p := range []*plot.Plot{acc, loss, bytes} {
		p.X.Min, p.X.Max = 0, max(last, 1)
		p.X.Tick.Marker = roundTicks{}
	}
	for i, r := range runs {
		var a, l, inner, b plotter.XYs
		for _, rec := range r.Records {
			x := float64(rec.Round)
			if rec.AgreedAccuracy != nil {
				a = append(a, plotter.XY{X: x, Y: *rec.AgreedAccuracy})
			}
			if rec.AgreedLoss != nil {
				l = append(l, plotter.XY{X: x, Y: *rec.AgreedLoss})
			}
			inner = append(inner, plotter.XY{X: x, Y: rec.InnerLoss})
			var out uint64
			for _, v := range rec.OutBytes {
				out += v
			}
			b = append(b, plotter.XY{X: x, Y: float64(out) / 1024})
		}
		c := runColor(i)
		if err := addLine(acc, r.Name, a, c, nil, true); err != nil {
			return err
		}
		if err := addLine(loss, r.Name+" (agreed)", l, c, nil, true); err != nil {
			return err
		}
		if err := addLine(loss, r.Name+" (inner)", inner, c, []vg.Length{vg.Points(4), vg.Points(3)}, false); err != nil {
			return err
		}
		if err := addLine(bytes, r.Name, b, c, nil, false); err != nil {
			return err
		}
	}
	img := vgimg.New(vg.Length(width)*vg.Inch/96, vg.Length(height)*vg.Inch/96)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadX: vg.Millimeter * 3, PadY: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	cs := plot.Align([][]*plot.Plot{{acc}, {loss}, {bytes}}, tiles, dc)
	acc.Draw(cs[0][0])
	loss.Draw(cs[1][0])
	bytes.Draw(cs[2][0])
	png := vgimg.PngCanvas{Canvas: img}
	_, err := png.WriteTo(w)
	return err
}

// addLine adds a line (with its points where points is set, for sparse
// series such as the evaluated rounds) to p, if it has any point.
func addLine(p *plot.Plot, name string, xys plotter.XYs, c color.Color, dashes []vg.Length, points bool) error {
	if len(xys) == 0 {
		return nil
	}
	line, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("history: %s: %w", name, err)
	}
	line.Color, line.Width, line.Dashes = c, vg.Points(1.5), dashes
	p.Add(line)
	p.Legend.Add(name, line)
	if points {
		sc, err := plotter.NewScatter(xys)
		if err != nil {
			return fmt.Errorf("history: %s: %w", name, err)
		}
		sc.Color = c
		sc.Radius = vg.Points(2)
		p.Add(sc)
	}
	return nil
}

// PlotFile plots the runs into a PNG file (written whole, then renamed).
func PlotFile(path string, runs []Run) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	if err := Plot(f, runs, 1000, 1200); err != nil {
		f.Close()
		os.Remove(path + ".tmp")
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path + ".tmp")
		return err
	}
	return os.Rename(path+".tmp", path)
}

// runColor is the colour of the i-th run's curves.
func runColor(i int) color.Color { return plotutil.Color(i) }

// roundTicks marks whole rounds on the axis: about six labelled ticks.
type roundTicks struct{}

func (roundTicks) Ticks(min, max float64) []plot.Tick {
	step := 1.0
	for (max-min)/step > 6 {
		switch {
		case step < 2:
			step = 2
		case step < 5:
			step = 5
		default:
			step *= 2
		}
	}
	var out []plot.Tick
	for x := math.Ceil(min/step) * step; x <= max; x += step {
		out = append(out, plot.Tick{Value: x, Label: strconv.Itoa(int(x))})
	}
	return out
}
