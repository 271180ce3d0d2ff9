package kafka_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/sink"
	kafkasink "github.com/outboxgo/outbox/sink/kafka"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// tlsConfigForTest is a placeholder client TLS configuration for validation tests.
func tlsConfigForTest() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS12} }

// pki is a throwaway CA with a server certificate for 127.0.0.1 and a client certificate,
// written as PEM files.
type pki struct {
	caFile, certFile, keyFile string // CA, client certificate and key
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "outbox test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, name string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p := &pki{pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)

	srvDER, srvKey := issue(2, "kfake", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.server = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}

	cliDER, cliKey := issue(3, "outbox-relay", x509.ExtKeyUsageClientAuth, nil)
	p.certFile = write("client.pem", "CERTIFICATE", cliDER)
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	p.keyFile = write("client-key.pem", "EC PRIVATE KEY", keyDER)
	return p
}

// roundTrip publishes one message through s and reads it back.
func roundTrip(t *testing.T, c *kfake.Cluster, s *kafkasink.Sink, topic string, opts ...kgo.Opt) {
	t.Helper()
	r := sinktest.NewRecord(topic, "k", []byte(`{"secure":true}`))
	requireOK(t, publish(t, s, r))
	got := readAll(t, c, topic, opts...)
	if len(got) != 1 || !bytes.Equal(got[0].Value, r.Payload) {
		t.Fatalf("topic holds %d records, want the one published", len(got))
	}
}

// TestTLS: the TLS file fields verify the broker against the CA and present a client
// certificate for mutual TLS.
func TestTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	c := newCluster(t, kfake.TLS(&tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
	}))
	clientCert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	admin := kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.pool, Certificates: []tls.Certificate{clientCert}})
	topic := uniqueName("tls")
	createTopic(t, c, topic, 1, nil, admin)

	t.Run("files", func(t *testing.T) {
		s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), TLSCAFile: p.caFile, TLSCertFile: p.certFile, TLSKeyFile: p.keyFile})
		roundTrip(t, c, s, topic, admin)
	})
	t.Run("config", func(t *testing.T) {
		topic := uniqueName("tls")
		createTopic(t, c, topic, 1, nil, admin)
		s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(),
			TLS: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.pool, Certificates: []tls.Certificate{clientCert}}})
		roundTrip(t, c, s, topic, admin)
	})
	t.Run("untrusted broker", func(t *testing.T) {
		// Without the CA the broker's certificate is not trusted: a retryable failure.
		s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), TLSEnabled: true, ProduceTimeout: time.Second})
		res := publish(t, s, sinktest.NewRecord(topic, "k", nil))
		if !sink.IsUnavailable(res[0]) {
			t.Fatalf("publish to an untrusted broker: %v, want an Unavailable error", res[0])
		}
		t.Logf("untrusted broker: %v", res[0])
	})
}

// TestSASL: each mechanism authenticates against kfake; a wrong password (which kfake
// answers by closing the connection, so New cannot tell it from an outage) fails as
// Unavailable, and the password shows in no error and no log line.
func TestSASL(t *testing.T) {
	t.Parallel()
	const user, pass = "relay", "relay-secret-pw"
	for _, mech := range []string{kafkasink.SASLPlain, kafkasink.SASLScramSHA256, kafkasink.SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, kfake.EnableSASL(), kfake.Superuser(mech, user, pass))
			var admin kgo.Opt
			switch mech {
			case kafkasink.SASLPlain:
				admin = kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism())
			case kafkasink.SASLScramSHA256:
				admin = kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism())
			default:
				admin = kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism())
			}
			topic := uniqueName("sasl")
			createTopic(t, c, topic, 1, nil, admin)

			s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), SASLMechanism: mech, SASLUser: user, SASLPassword: pass})
			roundTrip(t, c, s, topic, admin)

			logs := &logtest.Buffer{}
			bad := newSink(t, kafkasink.Config{
				Brokers: c.ListenAddrs(), SASLMechanism: mech, SASLUser: user, SASLPassword: "wrong-" + pass,
				ProduceTimeout: time.Second,
				Logger:         logs.Logger(),
			})
			res := publish(t, bad, sinktest.NewRecord(topic, "k", nil))
			if !sink.IsUnavailable(res[0]) {
				t.Fatalf("publish with a wrong password: %v, want an Unavailable error", res[0])
			}
			t.Logf("wrong password: %v", res[0])
			_ = bad.Close()
			if strings.Contains(res[0].Error(), pass) {
				t.Errorf("error contains the password: %v", res[0])
			}
			if strings.Contains(logs.String(), pass) {
				t.Error("the logs contain the password")
			}
		})
	}
}
