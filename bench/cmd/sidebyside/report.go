package main

import (
	"fmt"
	"strings"
)

// markdown renders the results as a section of docs/benchmarks.md.
func markdown(r *Results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	var main, wm []*SystemResult
	for _, s := range r.Systems {
		if !s.DrainOnly {
			main = append(main, s)
		}
		if strings.HasPrefix(s.ID, "wm-") {
			wm = append(wm, s)
		}
	}

	p("### Results (%s)\n\n", r.Date)
	p("- Command (from `bench/`): `%s`\n", r.Command)
	p("- Machine: %s; load average %s before, %s after (the machine was shared); run took %.0f s.\n",
		r.Machine, r.LoadBefore, r.LoadAfter, r.DurationSec)
	p("- %s; NATS %s (JetStream, file storage); %s.\n\n", r.PostgreSQL, r.NATS, r.Go)

	row := func(name string, f func(*SystemResult) string) {
		p("| %s |", name)
		for _, s := range main {
			v := "—"
			if out := f(s); out != "" {
				v = out
			}
			p(" %s |", v)
		}
		p("\n")
	}
	p("| figure |")
	for _, s := range main {
		p(" %s |", s.Label)
	}
	p("\n|---|")
	for range main {
		p("---|")
	}
	p("\n")
	row(fmt.Sprintf("drain %s backlog: events/s", r.Options["messages"]), func(s *SystemResult) string {
		if s.Drain == nil {
			return ""
		}
		return "**" + drainRate(s.Drain) + "**"
	})
	row("drain: relay CPU s (ms per 1,000 events)", func(s *SystemResult) string {
		if s.Drain == nil {
			return ""
		}
		return fmt.Sprintf("%.2f (%.1f)", s.Drain.CPUSeconds, s.Drain.CPUmsPer1k)
	})
	row("drain: relay peak RSS", func(s *SystemResult) string {
		if s.Drain == nil {
			return ""
		}
		return fmt.Sprintf("%.1f MiB", s.Drain.PeakRSSMB)
	})
	row("drain check: received / dups / key-order violations / rows left", func(s *SystemResult) string {
		if s.Drain == nil {
			return ""
		}
		left := fmt.Sprint(s.Drain.RowsLeft)
		if s.Drain.RowsLeft < 0 {
			left = "no table"
		}
		return fmt.Sprintf("%d / %d / %d / %s", s.Drain.Received, s.Drain.Duplicates, s.Drain.OrderViolations, left)
	})
	row("re-sends by the relays (sent − committed): drain / idle / steady", func(s *SystemResult) string {
		var parts []string
		for _, t := range []string{"drain", "idle", "steady"} {
			c, ok := s.Committed[t]
			if !ok {
				parts = append(parts, "—")
				continue
			}
			parts = append(parts, fmt.Sprint(s.Sent[t]-c))
		}
		return strings.Join(parts, " / ")
	})
	row(fmt.Sprintf("steady %s/s for %s: p50 / p99 / max ms", r.Options["steady_rate"], r.Options["steady_duration"]), func(s *SystemResult) string {
		if s.Steady == nil {
			return ""
		}
		return fmt.Sprintf("%s / **%s** / %s", ms(s.Steady.P50ms), ms(s.Steady.P99ms), ms(s.Steady.Maxms))
	})
	row("steady: commits/s reached; missing / dups", func(s *SystemResult) string {
		if s.Steady == nil {
			return ""
		}
		return fmt.Sprintf("%.0f; %d / %d", s.Steady.AchievedRate, s.Steady.Missing, s.Steady.Duplicates)
	})
	row("steady: relay CPU (% of a core) / peak RSS", func(s *SystemResult) string {
		if s.Steady == nil {
			return ""
		}
		return fmt.Sprintf("%.1f %% / %.1f MiB", s.Steady.CPUPercent, s.Steady.PeakRSSMB)
	})
	row(fmt.Sprintf("idle → one message (%s samples): p50 / mean / max ms", r.Options["idle_samples"]), func(s *SystemResult) string {
		if s.Idle == nil {
			return ""
		}
		miss := ""
		if s.Idle.Missing > 0 {
			miss = fmt.Sprintf(" (%d missing)", s.Idle.Missing)
		}
		return fmt.Sprintf("%s / %s / **%s**%s", ms(s.Idle.P50ms), ms(s.Idle.Meanms), ms(s.Idle.Maxms), miss)
	})
	row("idle: relay CPU (% of a core)", func(s *SystemResult) string {
		if s.Idle == nil {
			return ""
		}
		return fmt.Sprintf("%.1f %%", s.Idle.CPUPercent)
	})
	row("machine CPU pressure (PSI some) during drain / idle / steady", func(s *SystemResult) string {
		var parts []string
		for _, v := range []float64{pressure(s.Drain), pressure(s.Idle), pressure(s.Steady)} {
			if v < 0 {
				parts = append(parts, "—")
			} else {
				parts = append(parts, fmt.Sprintf("%.0f %%", v))
			}
		}
		return strings.Join(parts, " / ")
	})
	if r.Plain != nil {
		row(fmt.Sprintf("producer tx, INSERT + enqueue: mean (p50) µs; plain INSERT tx: %.0f (%.0f)", r.Plain.MeanUS, r.Plain.P50US), func(s *SystemResult) string {
			if s.Overhead == nil {
				return ""
			}
			return fmt.Sprintf("%.0f (%.0f)", s.Overhead.MeanUS, s.Overhead.P50US)
		})
		row("producer overhead vs plain INSERT (mean)", func(s *SystemResult) string {
			if s.Overhead == nil {
				return ""
			}
			return fmt.Sprintf("%+.0f µs (%+.0f %%)", s.Overhead.OverheadUS, 100*s.Overhead.OverheadUS/r.Plain.MeanUS)
		})
	}
	p("\n")

	if len(wm) > 0 {
		p("Drain, every configuration tried (the ratio below uses Watermill's best):\n\n")
		p("| system | events/s | seconds | relay CPU ms / 1,000 | peak RSS |\n|---|---|---|---|---|\n")
		for _, s := range r.Systems {
			if s.Drain == nil {
				continue
			}
			p("| %s | %s | %.1f | %.1f | %.1f MiB |\n", s.Label, drainRate(s.Drain), s.Drain.Seconds, s.Drain.CPUmsPer1k, s.Drain.PeakRSSMB)
		}
		p("\n")
	}

	// Targets of the issue.
	ours := find(r, "outbox-notify")
	var bestWM *SystemResult
	for _, s := range wm {
		if s.Drain != nil && (bestWM == nil || s.Drain.EventsPerSec > bestWM.Drain.EventsPerSec) {
			bestWM = s
		}
	}
	if ours != nil && bestWM != nil {
		p("Ratios and targets (outbox with NOTIFY, the default, against Watermill):\n\n")
		ratio := ours.Drain.EventsPerSec / bestWM.Drain.EventsPerSec
		p("- Drain: %.0f vs %.0f events/s (%s) = **%.1f×** — target ≥ 10×: %s.", ours.Drain.EventsPerSec,
			bestWM.Drain.EventsPerSec, bestWM.Label, ratio, metStr(ratio >= 10))
		p("\n")
		var others []string
		for _, s := range r.Systems {
			if s == ours || !strings.HasPrefix(s.ID, "outbox") || s.Drain == nil {
				continue
			}
			others = append(others, fmt.Sprintf("%s %.0f/s = **%.1f×**", s.Label, s.Drain.EventsPerSec, s.Drain.EventsPerSec/bestWM.Drain.EventsPerSec))
		}
		if len(others) > 0 {
			p("- Drain, the other outbox sources against the same Watermill figure: %s.\n", strings.Join(others, "; "))
		}
		if ours.Steady != nil {
			var parts []string
			met := true
			for _, s := range wm {
				if s.Steady == nil {
					continue
				}
				parts = append(parts, fmt.Sprintf("%s %s ms (%.1f× ours)", s.Label, ms(s.Steady.P99ms), s.Steady.P99ms/ours.Steady.P99ms))
				met = met && ours.Steady.P99ms < s.Steady.P99ms
			}
			p("- Steady p99: %s ms vs %s — target below Watermill's: %s.\n", ms(ours.Steady.P99ms), strings.Join(parts, ", "), metStr(met))
		}
		if ours.Idle != nil {
			p("- Idle → one message: p50 %s ms, max %s ms — target ≤ 10 ms: %s", ms(ours.Idle.P50ms), ms(ours.Idle.Maxms),
				metStr(ours.Idle.Maxms <= 10 && ours.Idle.Missing == 0))
			var parts []string
			for _, s := range wm {
				if s.Idle != nil {
					parts = append(parts, fmt.Sprintf("%s p50 %s / max %s ms", s.Label, ms(s.Idle.P50ms), ms(s.Idle.Maxms)))
				}
			}
			if len(parts) > 0 {
				p(" (Watermill at its %s poll interval: %s)", find(r, wm[0].ID).KnobPoll(), strings.Join(parts, "; "))
			}
			p(".\n")
		}
		p("\n")
	}

	p("Settings of each system (everything not listed is the library's default):\n\n")
	for _, s := range r.Systems {
		p("- **%s**: %s.\n", s.Label, s.Knobs)
	}
	p("\n")
	return b.String()
}

// KnobPoll extracts the poll interval from a Watermill system's knobs for the report.
func (s *SystemResult) KnobPoll() string {
	_, after, ok := strings.Cut(s.Knobs, "PollInterval ")
	if !ok {
		return "?"
	}
	v, _, _ := strings.Cut(after, ",")
	return v
}

func find(r *Results, id string) *SystemResult {
	for _, s := range r.Systems {
		if s.ID == id {
			return s
		}
	}
	return nil
}

func drainRate(d *DrainResult) string {
	if !d.Complete {
		return fmt.Sprintf("%.0f (incomplete: %d of %d in %.0f s)", d.EventsPerSec, d.Published, d.Messages, d.Seconds)
	}
	return fmt.Sprintf("%.0f", d.EventsPerSec)
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// pressure returns a result's CPUPressure, -1 for a workload not run.
func pressure(r any) float64 {
	switch r := r.(type) {
	case *DrainResult:
		if r != nil {
			return r.CPUPressure
		}
	case *IdleResult:
		if r != nil {
			return r.CPUPressure
		}
	case *SteadyResult:
		if r != nil {
			return r.CPUPressure
		}
	}
	return -1
}
