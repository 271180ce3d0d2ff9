package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestTracingSettings(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]Setting{
		"tracing.endpoint":     {Env: "OUTBOX_TRACING_ENDPOINT", Flag: "tracing-endpoint", Kind: KindString},
		"tracing.protocol":     {Env: "OUTBOX_TRACING_PROTOCOL", Flag: "tracing-protocol", Kind: KindString, Default: "http/protobuf"},
		"tracing.insecure":     {Env: "OUTBOX_TRACING_INSECURE", Flag: "tracing-insecure", Kind: KindBool, Default: "false"},
		"tracing.headers":      {Kind: KindMap, Secret: true},
		"tracing.sample_ratio": {Env: "OUTBOX_TRACING_SAMPLE_RATIO", Flag: "tracing-sample-ratio", Kind: KindFloat, Default: "1"},
		"tracing.service_name": {Env: "OUTBOX_TRACING_SERVICE_NAME", Flag: "tracing-service-name", Kind: KindString, Default: "outbox"},
	} {
		s, ok := Lookup(path)
		want.Path, want.Doc, want.index = path, s.Doc, s.index
		if !ok || !reflect.DeepEqual(s, want) {
			t.Errorf("%s: %+v, want %+v", path, s, want)
		}
	}

	file := writeFile(t, "tracing:\n  endpoint: collector:4317\n  protocol: grpc\n  sample_ratio: 0.25\n  headers:\n    Authorization: Bearer hunter2-trace\n")
	cfg, err := Load(LoadOptions{File: file, Getenv: env("OUTBOX_DATABASE_URL", pgURL, "OUTBOX_TRACING_INSECURE", "true")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tracing.SampleRatio != 0.25 || cfg.Tracing.Protocol != ProtocolGRPC || !cfg.Tracing.Insecure ||
		cfg.Tracing.Headers["Authorization"] != "Bearer hunter2-trace" {
		t.Fatalf("tracing: %+v", cfg.Tracing)
	}
	if got, _ := cfg.Get("tracing.headers"); got != redacted {
		t.Errorf("Get(tracing.headers) = %q", got)
	}
	if got, _ := cfg.Get("tracing.sample_ratio"); got != "0.25" {
		t.Errorf("Get(tracing.sample_ratio) = %q", got)
	}
	for _, dump := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg.Tracing), fmt.Sprintf("%#v", cfg.Tracing)} {
		if strings.Contains(dump, "hunter2") {
			t.Fatalf("a dump shows the header: %s", dump)
		}
	}
}

func TestTracingEndpoint(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		endpoint string
		insecure bool
		want     Endpoint
	}{
		{"collector:4318", false, Endpoint{HostPort: "collector:4318"}},
		{"collector:4318", true, Endpoint{HostPort: "collector:4318", Insecure: true}},
		{"http://collector:4318", false, Endpoint{URL: true, HostPort: "collector:4318", Insecure: true}},
		{"https://collector", false, Endpoint{URL: true, HostPort: "collector:443"}},
		{"https://collector:4318/otlp/v1/traces/", false, Endpoint{URL: true, HostPort: "collector:4318", Path: "/otlp/v1/traces"}},
		{"http://[::1]:4318/", false, Endpoint{URL: true, HostPort: "[::1]:4318", Insecure: true}},
	} {
		got, err := Tracing{Endpoint: URL(tt.endpoint), Insecure: tt.insecure}.ParseEndpoint()
		if err != nil || got != tt.want {
			t.Errorf("%q: %+v, %v; want %+v", tt.endpoint, got, err, tt.want)
		}
	}
	for _, bad := range []string{"collector", ":4318", "ftp://c:21", "https://u:hunter2@c:4318", "http://c:4318?token=hunter2", "http://"} {
		if _, err := (Tracing{Endpoint: URL(bad)}).ParseEndpoint(); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: the error shows the secret: %v", bad, err)
		}
	}
}
