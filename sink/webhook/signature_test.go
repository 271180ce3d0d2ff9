package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox/sink/webhook"
)

// The test vector published with the Standard Webhooks specification and reproduced by its
// reference libraries (and by `openssl dgst -sha256 -mac HMAC` on the decoded key).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// referenceSignature computes a signature the way the specification describes it, written
// out independently of the package.
func referenceSignature(t *testing.T, secret, id, ts string, body []byte) string {
	t.Helper()
	key := []byte(secret)
	if b64, ok := strings.CutPrefix(secret, "whsec_"); ok {
		var err error
		if key, err = base64.StdEncoding.DecodeString(b64); err != nil {
			t.Fatal(err)
		}
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func vectorHeaders(sig string) http.Header {
	h := http.Header{}
	h.Set("webhook-id", vectorID)
	h.Set("webhook-timestamp", strconv.Itoa(vectorTimestamp))
	h.Set("webhook-signature", sig)
	return h
}

// centuries accepts the vector's 2021 timestamp.
const centuries = 200 * 365 * 24 * time.Hour

func TestSignVector(t *testing.T) {
	t.Parallel()
	got, err := webhook.Sign(vectorSecret, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if err != nil || got != vectorSignature {
		t.Errorf("Sign = %q, %v; want %q", got, err, vectorSignature)
	}
	if ref := referenceSignature(t, vectorSecret, vectorID, strconv.Itoa(vectorTimestamp), []byte(vectorBody)); ref != vectorSignature {
		t.Errorf("reference computation gives %q", ref)
	}
	// A raw (non-whsec_) secret, cross-checked with
	// printf '%s' 'msg_2Qx7.1700000000.{"hello":"world"}' | openssl dgst -sha256 -hmac my-raw-secret-for-tests-0123 -binary | base64
	got, err = webhook.Sign("my-raw-secret-for-tests-0123", "msg_2Qx7", time.Unix(1700000000, 0), []byte(`{"hello":"world"}`))
	if want := "v1,a/HMLSDH9/oZtvp1T2maNCny3/s/9t5HlM9VLUm9+Mk="; err != nil || got != want {
		t.Errorf("Sign with a raw secret = %q, %v; want %q", got, err, want)
	}
	if _, err := webhook.Sign("whsec_%%%", "id", time.Now(), nil); !errors.Is(err, webhook.ErrInvalidSecret) || strings.Contains(err.Error(), "%%%") {
		t.Errorf("Sign with a bad secret: %v, want ErrInvalidSecret without the secret", err)
	}
}

func TestVerifyVector(t *testing.T) {
	t.Parallel()
	for _, sig := range []string{
		vectorSignature,
		"v1,bm9wZQ== " + vectorSignature, // rotation: any matching signature is enough
		vectorSignature + " v1a,c29tZXRoaW5nIGVsc2U=",
	} {
		if err := webhook.Verify(vectorSecret, vectorHeaders(sig), []byte(vectorBody), centuries); err != nil {
			t.Errorf("Verify(%q): %v", sig, err)
		}
	}
	// The vector is from 2021: the default tolerance rejects it as a replay.
	if err := webhook.Verify(vectorSecret, vectorHeaders(vectorSignature), []byte(vectorBody), 0); !errors.Is(err, webhook.ErrTimestampTooOld) {
		t.Errorf("Verify with the default tolerance: %v, want ErrTimestampTooOld", err)
	}
}

// TestVerifyTampering: any change to what was signed is detected.
func TestVerifyTampering(t *testing.T) {
	t.Parallel()
	body := []byte(vectorBody)
	tests := []struct {
		name   string
		secret string
		mutate func(h http.Header) []byte
		want   error
	}{
		{"body changed", vectorSecret, func(http.Header) []byte { return []byte(`{"test": 2432232315}`) }, webhook.ErrInvalidSignature},
		{"body extended", vectorSecret, func(http.Header) []byte { return append([]byte(vectorBody), ' ') }, webhook.ErrInvalidSignature},
		{"id changed", vectorSecret, func(h http.Header) []byte { h.Set("webhook-id", vectorID+"x"); return body }, webhook.ErrInvalidSignature},
		{"timestamp changed", vectorSecret, func(h http.Header) []byte { h.Set("webhook-timestamp", "1614265331"); return body }, webhook.ErrInvalidSignature},
		{"signature changed", vectorSecret, func(h http.Header) []byte {
			h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=")
			return body
		}, webhook.ErrInvalidSignature},
		{"other version", vectorSecret, func(h http.Header) []byte {
			h.Set("webhook-signature", strings.Replace(vectorSignature, "v1,", "v2,", 1))
			return body
		}, webhook.ErrInvalidSignature},
		{"bare signature", vectorSecret, func(h http.Header) []byte {
			h.Set("webhook-signature", strings.TrimPrefix(vectorSignature, "v1,"))
			return body
		}, webhook.ErrInvalidSignature},
		{"wrong secret", "whsec_" + base64.StdEncoding.EncodeToString([]byte("another key, 24 bytes!!")), func(http.Header) []byte { return body }, webhook.ErrInvalidSignature},
		{"secret without prefix", strings.TrimPrefix(vectorSecret, "whsec_"), func(http.Header) []byte { return body }, webhook.ErrInvalidSignature},
		{"no id", vectorSecret, func(h http.Header) []byte { h.Del("webhook-id"); return body }, webhook.ErrMissingHeaders},
		{"no timestamp", vectorSecret, func(h http.Header) []byte { h.Del("webhook-timestamp"); return body }, webhook.ErrMissingHeaders},
		{"no signature", vectorSecret, func(h http.Header) []byte { h.Del("webhook-signature"); return body }, webhook.ErrMissingHeaders},
		{"bad timestamp", vectorSecret, func(h http.Header) []byte { h.Set("webhook-timestamp", "1614265330.5"); return body }, webhook.ErrInvalidTimestamp},
		{"bad secret", "whsec_***", func(http.Header) []byte { return body }, webhook.ErrInvalidSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := vectorHeaders(vectorSignature)
			b := tc.mutate(h)
			if err := webhook.Verify(tc.secret, h, b, centuries); !errors.Is(err, tc.want) {
				t.Errorf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestVerifyTolerance: the timestamp must be within the tolerance of now, both ways.
func TestVerifyTolerance(t *testing.T) {
	t.Parallel()
	const secret = "a-raw-secret-of-at-least-24-bytes"
	body := []byte("{}")
	signed := func(at time.Time) http.Header {
		sig, err := webhook.Sign(secret, "msg_1", at, body)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		h.Set(webhook.HeaderID, "msg_1")
		h.Set(webhook.HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
		h.Set(webhook.HeaderSignature, sig)
		return h
	}
	now := time.Now()
	tests := []struct {
		offset    time.Duration
		tolerance time.Duration
		want      error
	}{
		{0, 0, nil},
		{-4 * time.Minute, 0, nil}, // default tolerance: 5 minutes
		{4 * time.Minute, 0, nil},
		{-6 * time.Minute, 0, webhook.ErrTimestampTooOld},
		{6 * time.Minute, 0, webhook.ErrTimestampTooNew},
		{-50 * time.Second, time.Minute, nil},
		{-70 * time.Second, time.Minute, webhook.ErrTimestampTooOld},
		{70 * time.Second, time.Minute, webhook.ErrTimestampTooNew},
		{-time.Hour, 2 * time.Hour, nil},
	}
	for _, tc := range tests {
		if err := webhook.Verify(secret, signed(now.Add(tc.offset)), body, tc.tolerance); !errors.Is(err, tc.want) {
			t.Errorf("signed %s from now, tolerance %s: %v, want %v", tc.offset, tc.tolerance, err, tc.want)
		}
	}
}
