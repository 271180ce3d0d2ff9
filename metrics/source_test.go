package metrics_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outboxgo/outbox/metrics"
)

// The binlog's lag gauges appear once the lag is known, with the stats' values.
func TestSourceBinlogLag(t *testing.T) {
	t.Parallel()
	st := metrics.SourceStats{Connected: true}
	src := metrics.NewSource("binlog", func() metrics.SourceStats { return st })
	if n := testutil.CollectAndCount(src, "outbox_binlog_lag_seconds", "outbox_binlog_lag_bytes"); n != 0 {
		t.Fatalf("%d lag series before the lag is known", n)
	}
	st.LagSeconds, st.LagBytes, st.HasLag = 12, 3456, true
	want := `
# HELP outbox_binlog_lag_bytes Binary log from the source's read position to the server's current position.
# TYPE outbox_binlog_lag_bytes gauge
outbox_binlog_lag_bytes{source="binlog"} 3456
# HELP outbox_binlog_lag_seconds Time since the last binlog event the source read, while the server's binary log goes further; 0 when caught up.
# TYPE outbox_binlog_lag_seconds gauge
outbox_binlog_lag_seconds{source="binlog"} 12
`
	if err := testutil.CollectAndCompare(src, strings.NewReader(want), "outbox_binlog_lag_seconds", "outbox_binlog_lag_bytes"); err != nil {
		t.Fatal(err)
	}
}
