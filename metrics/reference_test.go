package metrics_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outboxgo/outbox/metrics"
)

// names returns the metric names every collector of the package describes, with the series
// names of histograms (_bucket, _sum, _count).
func names(t *testing.T) map[string]bool {
	t.Helper()
	cs := []prometheus.Collector{
		metrics.NewRelay(metrics.RelayOptions{}),
		metrics.NewTable(metrics.TableOptions{Table: "outbox"}),
		metrics.NewSource("wal", func() metrics.SourceStats { return metrics.SourceStats{} }),
		metrics.NewInbox(metrics.InboxOptions{}),
	}
	re := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	out := map[string]bool{"outbox_build_info": true} // the command's own
	for _, c := range cs {
		ch := make(chan *prometheus.Desc, 100)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			m := re.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			out[m[1]] = true
		}
	}
	return out
}

// Every metric is in docs/operations.md's table, and the alert rules and the Grafana
// dashboard in deploy/ name only metrics that exist.
func TestReference(t *testing.T) {
	have := names(t)
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for n := range have {
		if !strings.Contains(string(doc), "| `"+n+"` |") {
			t.Errorf("docs/operations.md: no row for %s", n)
		}
	}
	ref := regexp.MustCompile(`\boutbox_[a-z_]+`)
	for _, f := range []string{"../deploy/prometheus/alerts.yml", "../deploy/grafana/outbox.json", "../docs/operations.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var unknown []string
		for _, n := range ref.FindAllString(string(b), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
			if !have[n] && !have[base] && !slices.Contains(unknown, n) {
				unknown = append(unknown, n)
			}
		}
		if len(unknown) > 0 {
			t.Errorf("%s names metrics that do not exist: %v", f, unknown)
		}
	}
}
