package main

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
)

// collector is an in-test OTLP receiver: it keeps the resource spans and the Authorization
// header of every export request.
type collector struct {
	mu    sync.Mutex
	spans []*tracepb.ResourceSpans
	auth  []string
}

func (c *collector) add(req *coltracepb.ExportTraceServiceRequest, auth string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spans = append(c.spans, req.GetResourceSpans()...)
	c.auth = append(c.auth, auth)
}

func (c *collector) received() ([]*tracepb.ResourceSpans, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*tracepb.ResourceSpans(nil), c.spans...), append([]string(nil), c.auth...)
}

// httpCollector serves OTLP/HTTP (protobuf) on /v1/traces.
func httpCollector(t *testing.T) (*collector, string) {
	t.Helper()
	c := &collector{}
	srv := httptest.NewServer(otlpHandler(c))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

// tlsCollector serves OTLP/HTTP on /v1/traces over TLS, and returns the file of its
// certificate (PEM) with its URL.
func tlsCollector(t *testing.T) (c *collector, url, certFile string) {
	t.Helper()
	c = &collector{}
	srv := httptest.NewTLSServer(otlpHandler(c))
	t.Cleanup(srv.Close)
	certFile = filepath.Join(t.TempDir(), "collector.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c, srv.URL, certFile
}

// otlpHandler is an OTLP/HTTP trace receiver keeping what it receives in c.
func otlpHandler(c *collector) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces of application/x-protobuf", http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(&req, r.Header.Get("Authorization"))
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	})
}

// grpcCollector implements the OTLP gRPC trace service on a loopback listener.
type grpcCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	c *collector
}

func (g grpcCollector) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	g.c.add(req, strings.Join(md.Get("authorization"), ","))
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func startGRPCCollector(t *testing.T) (*collector, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcCollector{c: c})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return c, ln.Addr().String()
}

// Producer spans of the messages' traceparent headers.
const (
	traceA = "4bf92f3577b34da6a3ce929d0e0e4736"
	spanA  = "00f067aa0ba902b7"
	traceB = "0af7651916cd43dd8448eb211c80319c"
	spanB  = "b7ad6b7169203331"
)

// tracedRelay enqueues two messages with traceparent headers on PostgreSQL, runs the relay
// with the stdout sink and the tracing settings of env and yaml until they are published,
// and returns its result.
func tracedRelay(t *testing.T, env map[string]string, yaml string) (result, map[string]string) {
	t.Helper()
	in := postgresEnv(t)
	for k, v := range env {
		in.env[k] = v
	}
	in.run(t, "migrate", "up").want(t, 0)
	ids := map[string]string{} // message id → producer span id
	for _, m := range []struct{ trace, span string }{{traceA, spanA}, {traceB, spanB}} {
		id := strings.TrimSpace(in.run(t, "enqueue", "--topic", "orders.created", "--key", m.span, "--data", "{}",
			"--header", "traceparent=00-"+m.trace+"-"+m.span+"-01").want(t, 0).stdout)
		ids[id] = m.span
	}
	r := relayUntil(t, in, func(s statusJSON) bool { return s.Pending == 0 },
		"--config", writeConfig(t, yaml), "--sink-type", "stdout", "--poll-interval", "10ms")
	return r, ids
}

// checkSendSpans checks that the collector holds a PRODUCER span "send orders.created" of
// service, linked to the producer span of every message in ids.
func checkSendSpans(t *testing.T, c *collector, service string, ids map[string]string) {
	t.Helper()
	rss, _ := c.received()
	linked := map[string]string{} // linked span id → message id
	for _, rs := range rss {
		if got := attr(rs.GetResource().GetAttributes(), "service.name"); got != service {
			t.Errorf("service.name %q, want %q", got, service)
		}
		if attr(rs.GetResource().GetAttributes(), "service.version") == "" {
			t.Error("no service.version")
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				if sp.GetName() != "send orders.created" || sp.GetKind() != tracepb.Span_SPAN_KIND_PRODUCER {
					t.Errorf("span %q of kind %v", sp.GetName(), sp.GetKind())
				}
				for k, want := range map[string]string{"messaging.system": "outbox", "messaging.destination.name": "orders.created",
					"messaging.operation.type": "send"} {
					if got := attr(sp.GetAttributes(), k); got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
				for _, l := range sp.GetLinks() {
					trace, span := hex.EncodeToString(l.GetTraceId()), hex.EncodeToString(l.GetSpanId())
					if (span == spanA && trace != traceA) || (span == spanB && trace != traceB) {
						t.Errorf("link to span %s in trace %s", span, trace)
					}
					linked[span] = attr(l.GetAttributes(), "messaging.message.id")
				}
			}
		}
	}
	for id, span := range ids {
		if linked[span] != id {
			t.Errorf("no link to producer span %s of message %s (links: %v)", span, id, linked)
		}
	}
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			if s := kv.GetValue().GetStringValue(); s != "" {
				return s
			}
			return kv.GetValue().String()
		}
	}
	return ""
}

// TestRelayTracingHTTP: the relay exports its send spans over OTLP/HTTP, linked to the
// messages' producer spans, with the configured headers, which its log never shows.
func TestRelayTracingHTTP(t *testing.T) {
	t.Parallel()
	c, url := httpCollector(t)
	r, ids := tracedRelay(t, map[string]string{
		"OUTBOX_TRACING_ENDPOINT":     url,
		"OUTBOX_TRACING_SERVICE_NAME": "relay-under-test",
	}, "tracing:\n  headers:\n    Authorization: Bearer hunter2-otlp-http\n")
	checkSendSpans(t, c, "relay-under-test", ids)
	if _, auth := c.received(); len(auth) == 0 || auth[0] != "Bearer hunter2-otlp-http" {
		t.Errorf("Authorization headers received: %q", auth)
	}
	r.contains(t, "relay started", "tracing=\"http/protobuf http://127.0.0.1:")
	if strings.Contains(r.stdout+r.stderr, "hunter2") {
		t.Fatalf("the header's value is printed:\n%s", r.stderr)
	}
}

// TestRelayTracingGRPC: the same over OTLP/gRPC, plain text to host:port with
// tracing.insecure.
func TestRelayTracingGRPC(t *testing.T) {
	t.Parallel()
	c, addr := startGRPCCollector(t)
	r, ids := tracedRelay(t, map[string]string{
		"OUTBOX_TRACING_ENDPOINT": addr,
		"OUTBOX_TRACING_PROTOCOL": "grpc",
		"OUTBOX_TRACING_INSECURE": "true",
		"OUTBOX_LOG_FORMAT":       "json",
	}, "tracing:\n  headers:\n    authorization: Bearer hunter2-otlp-grpc\n")
	checkSendSpans(t, c, "outbox", ids)
	if _, auth := c.received(); len(auth) == 0 || auth[0] != "Bearer hunter2-otlp-grpc" {
		t.Errorf("authorization metadata received: %q", auth)
	}
	if strings.Contains(r.stdout+r.stderr, "hunter2") {
		t.Fatalf("the header's value is printed:\n%s", r.stderr)
	}
}

// TestRelayTracingSampleRatio: with tracing.sample_ratio 0 the send spans (roots linked to
// the producer spans, not their children) are not sampled: nothing is exported.
func TestRelayTracingSampleRatio(t *testing.T) {
	t.Parallel()
	c, url := httpCollector(t)
	tracedRelay(t, map[string]string{"OUTBOX_TRACING_ENDPOINT": url, "OUTBOX_TRACING_SAMPLE_RATIO": "0"}, "")
	if rss, _ := c.received(); len(rss) != 0 {
		t.Fatalf("%d resource spans exported with sample_ratio 0", len(rss))
	}
}

// TestRelayTracingUnreachable: a collector that is down costs warnings, not the relay.
func TestRelayTracingUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	r, _ := tracedRelay(t, map[string]string{"OUTBOX_TRACING_ENDPOINT": "http://" + addr}, "")
	r.contains(t, "relay stopped", "tracing: exporting spans failed")
	t.Log(r.stderr)
}

func TestTracingConfigErrors(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + t.TempDir() + "/x.db"
	tests := []struct {
		name string
		env  map[string]string
		yaml string
		want string
	}{
		{name: "protocol", env: map[string]string{"OUTBOX_TRACING_ENDPOINT": "c:4318", "OUTBOX_TRACING_PROTOCOL": "http/json"},
			want: `tracing.protocol: "http/json" is not one of http/protobuf, grpc`},
		{name: "ratio above 1", env: map[string]string{"OUTBOX_TRACING_SAMPLE_RATIO": "1.5"}, want: "tracing.sample_ratio: must be between 0 and 1"},
		{name: "ratio negative", env: map[string]string{"OUTBOX_TRACING_SAMPLE_RATIO": "-0.1"}, want: "tracing.sample_ratio: must be between 0 and 1"},
		{name: "ratio not a number", env: map[string]string{"OUTBOX_TRACING_SAMPLE_RATIO": "half"}, want: `tracing.sample_ratio: "half" is not a number`},
		{name: "ratio NaN", env: map[string]string{"OUTBOX_TRACING_SAMPLE_RATIO": "NaN"}, want: "tracing.sample_ratio: must be between 0 and 1"},
		{name: "insecure not a bool", env: map[string]string{"OUTBOX_TRACING_INSECURE": "yes please"}, want: "tracing.insecure: "},
		{name: "endpoint not an address", env: map[string]string{"OUTBOX_TRACING_ENDPOINT": "collector"}, want: "tracing.endpoint: "},
		{name: "endpoint scheme", env: map[string]string{"OUTBOX_TRACING_ENDPOINT": "ftp://collector:21"}, want: "tracing.endpoint: "},
		{name: "endpoint credentials", env: map[string]string{"OUTBOX_TRACING_ENDPOINT": "https://u:hunter2@collector:4318"},
			want: "tracing.endpoint: "},
		{name: "insecure with https", env: map[string]string{"OUTBOX_TRACING_ENDPOINT": "https://collector:4318", "OUTBOX_TRACING_INSECURE": "true"},
			want: "tracing.insecure: contradicts the https:// endpoint"},
		{name: "headers without endpoint", yaml: "tracing:\n  headers:\n    Authorization: hunter2\n", want: "tracing.endpoint: required"},
		{name: "header name", env: map[string]string{"OUTBOX_TRACING_ENDPOINT": "c:4318"}, yaml: "tracing:\n  headers:\n    \"Bad Name\": hunter2\n",
			want: `tracing.headers: "Bad Name" is not a valid header name`},
		{name: "headers from env", env: map[string]string{"OUTBOX_TRACING_HEADERS": "Authorization=hunter2"},
			want: "tracing.headers: can only be set in the YAML file"},
		{name: "empty service name", yaml: "tracing:\n  service_name: \"\"\n", want: "tracing.service_name: must not be empty"},
		{name: "unknown key", yaml: "tracing:\n  endpiont: c:4318\n", want: "tracing.endpiont: unknown key (line 2); did you mean tracing.endpoint?"},
		{name: "unknown variable", env: map[string]string{"OUTBOX_TRACING_ENDPOIN": "c:4318"}, want: "did you mean OUTBOX_TRACING_ENDPOINT?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"OUTBOX_DATABASE_URL": db}
			for k, v := range tt.env {
				env[k] = v
			}
			args := []string{"relay", "--sink-type", "stdout"}
			if tt.yaml != "" {
				args = append(args, "--config", writeConfig(t, tt.yaml))
			}
			r := invocation{env: env}.run(t, args...).want(t, 2).contains(t, "outbox: invalid configuration: ", tt.want)
			if strings.Contains(r.stdout+r.stderr, "hunter2") {
				t.Fatalf("a secret is printed:\n%s", r.stderr)
			}
		})
	}
}

// TestTracingEnvCannotRedirect: the standard OTEL_EXPORTER_OTLP_* variables fill only what
// the tracing settings leave unset: they can neither move the spans (and the headers with
// them) to another endpoint nor turn TLS off. (Not parallel: it sets the process's
// environment, which the exporters read.)
func TestTracingEnvCannotRedirect(t *testing.T) {
	c, url, certFile := tlsCollector(t)
	decoy, decoyURL := httpCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", decoyURL)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", decoyURL+"/v1/traces")
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", certFile) // trusts the collector's certificate
	hostPort := strings.TrimPrefix(url, "https://")
	for i, endpoint := range []string{url, url + "/v1/traces", hostPort} {
		cfg := config.Tracing{Endpoint: config.URL(endpoint), Protocol: config.ProtocolHTTP, SampleRatio: 1, ServiceName: "env-test",
			Headers: map[string]config.Secret{"Authorization": "Bearer hunter2-env"}}
		tp, err := newTracerProvider(context.Background(), cfg, "test", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		_, span := tp.Tracer("test").Start(context.Background(), "probe")
		span.End()
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Fatalf("%s: %v", endpoint, err)
		}
		if spans, auth := c.received(); len(spans) != i+1 || auth[i] != "Bearer hunter2-env" {
			t.Fatalf("endpoint %s: the TLS collector received %d exports (want %d), Authorization %q", endpoint, len(spans), i+1, auth)
		}
		if spans, _ := decoy.received(); len(spans) != 0 {
			t.Fatalf("endpoint %s: the variables' endpoint received %d exports", endpoint, len(spans))
		}
	}
}
