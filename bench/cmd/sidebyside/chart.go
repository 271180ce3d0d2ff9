package main

import (
	"fmt"
	"image/color"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
}

// chart draws drain throughput (every configuration) and latency (steady p50, steady p99,
// idle p50) side by side into a PNG.
func chart(r *Results, path string) error {
	// Throughput.
	var names []string
	var rates, ours, theirs plotter.Values
	for _, s := range r.Systems {
		if s.Drain == nil {
			continue
		}
		names = append(names, shortName(s))
		rates = append(rates, s.Drain.EventsPerSec)
		if strings.HasPrefix(s.ID, "outbox") {
			ours, theirs = append(ours, s.Drain.EventsPerSec), append(theirs, 0)
		} else {
			ours, theirs = append(ours, 0), append(theirs, s.Drain.EventsPerSec)
		}
	}
	tp := plot.New()
	tp.Title.Text = fmt.Sprintf("Drain of a %s-event backlog (blue: outbox, grey: Watermill)", r.Options["messages"])
	tp.Y.Label.Text = "events/s (higher is better)"
	for i, vs := range []plotter.Values{ours, theirs} {
		bars, err := plotter.NewBarChart(vs, vg.Points(26))
		if err != nil {
			return err
		}
		bars.Color = []color.Color{palette[0], color.Gray{Y: 0x80}}[i]
		bars.LineStyle.Width = 0
		tp.Add(bars)
	}
	if err := addLabels(tp, rates, 0, "%.0f"); err != nil {
		return err
	}
	tp.NominalX(names...)
	tp.Y.Min = 0
	tp.Y.Max = maxOf(rates) * 1.15

	// Latency.
	var lnames []string
	var p50, p99, idle plotter.Values
	for _, s := range r.Systems {
		if s.DrainOnly || s.Steady == nil {
			continue
		}
		lnames = append(lnames, shortName(s))
		p50 = append(p50, s.Steady.P50ms)
		p99 = append(p99, s.Steady.P99ms)
		var v float64
		if s.Idle != nil {
			v = s.Idle.P50ms
		}
		idle = append(idle, v)
	}
	lp := plot.New()
	lp.Title.Text = fmt.Sprintf("Commit → consumer latency (steady %s/s; idle → one)", r.Options["steady_rate"])
	lp.Y.Label.Text = "milliseconds (lower is better)"
	w := vg.Points(16)
	top := 0.0
	for i, series := range []struct {
		name string
		vs   plotter.Values
	}{{"steady p50", p50}, {"steady p99", p99}, {"idle → one, p50", idle}} {
		b, err := plotter.NewBarChart(series.vs, w)
		if err != nil {
			return err
		}
		b.Color = palette[i]
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(i-1)
		lp.Add(b)
		lp.Legend.Add(series.name, b)
		if err := addLabels(lp, series.vs, float64(i-1)*0.22, "%.1f"); err != nil {
			return err
		}
		top = max(top, maxOf(series.vs))
	}
	lp.Legend.Top = true
	lp.Legend.Left = true
	lp.Legend.XOffs = vg.Centimeter
	lp.NominalX(lnames...)
	lp.Y.Min = 0
	lp.Y.Max = top * 1.25

	// One chart above the other, each the full width: up to nine labelled bars each.
	const width, height = 28 * vg.Centimeter, 22 * vg.Centimeter
	img := vgimg.New(width, height)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadY: vg.Centimeter, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3,
		PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3}
	canvases := plot.Align([][]*plot.Plot{{tp}, {lp}}, tiles, dc)
	tp.Draw(canvases[0][0])
	lp.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// addLabels writes each value above its bar; dx shifts the labels in category units.
func addLabels(p *plot.Plot, vs plotter.Values, dx float64, format string) error {
	xys := make(plotter.XYs, len(vs))
	texts := make([]string, len(vs))
	for i, v := range vs {
		xys[i] = plotter.XY{X: float64(i) + dx, Y: v}
		texts[i] = fmt.Sprintf(format, v)
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: texts})
	if err != nil {
		return err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign = draw.XCenter
		l.TextStyle[i].YAlign = draw.YBottom
		l.TextStyle[i].Font.Size = vg.Points(7)
	}
	p.Add(l)
	return nil
}

// shortName is a system's label broken into short lines for the x axis.
func shortName(s *SystemResult) string {
	return strings.NewReplacer("Watermill ", "WM\n", "outbox WAL ", "WAL\n", "outbox (", "outbox\n(",
		"), ", ")\n", ", ", "\n").Replace(s.Label)
}

func maxOf(vs plotter.Values) float64 {
	m := 0.0
	for _, v := range vs {
		m = max(m, v)
	}
	return m
}
