package hostport

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		addr         string
		portOptional bool
		bad          string // a fragment of the reason; "" when valid
	}{
		{"k:9092", false, ""},
		{"10.0.0.1:9092", false, ""},
		{"[::1]:6379", false, ""},
		{"kafka-1", true, ""},
		{"[::1]", true, ""},
		{"kafka-1", false, "must be host:port"},
		{"", true, "is empty"},
		{"u:hunter2@k:9092", true, "without credentials before an @"},
		{":hunter2@k:9092", true, "without credentials before an @"},
		{"redis://:hunter2@h:6379", false, "without a scheme"},
		{"kafka://k:9092", true, "without a scheme"},
		{"k:9092/hunter2", true, "without a path or query"},
		{"k:9092?token=hunter2", true, "without a path or query"},
		{"k :9092", true, "whitespace"},
		{":9092", false, "the host is missing"},
		{"k:0", false, "port from 1 to 65535"},
		{"k:65536", false, "port from 1 to 65535"},
		{"k:http", false, "port from 1 to 65535"},
		{"k:", true, "port from 1 to 65535"},
		{"a:b:c", true, "must be host:port"},
	} {
		got := Check(tt.addr, "the address", tt.portOptional)
		switch {
		case tt.bad == "" && got != "":
			t.Errorf("Check(%q) = %q, want valid", tt.addr, got)
		case tt.bad != "" && !strings.Contains(got, tt.bad):
			t.Errorf("Check(%q) = %q, want %q", tt.addr, got, tt.bad)
		case strings.Contains(got, "hunter2") || (tt.addr != "" && strings.Contains(got, tt.addr)):
			t.Errorf("Check(%q) = %q quotes the value", tt.addr, got)
		}
	}
}
