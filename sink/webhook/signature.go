package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks headers (https://www.standardwebhooks.com/), in Go's canonical form
// (HTTP header names are case-insensitive).
const (
	HeaderID        = "Webhook-Id"        // the message id, stable across retries
	HeaderTimestamp = "Webhook-Timestamp" // Unix seconds of the attempt
	HeaderSignature = "Webhook-Signature" // space-separated "v1,<base64 HMAC-SHA256>"
)

// HeaderAttempt is the sink's own header: "1" when, as far as this sink knows, the request is
// the message's first (the relay counted no failed attempt, and this sink has not sent it
// before without an answer that settled it), and otherwise at least the attempt's number. A
// receiver may count deliveries only from 2 on, as a broker's redelivery flag allows
// (inbox/webhookinbox does). It is a lower bound: a relay that crashed after sending does
// not know, and the next relay's first send says 1 again.
const HeaderAttempt = "Outbox-Attempt"

// SecretPrefix marks a secret in the Standard Webhooks form: "whsec_" + base64 of the key.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a webhook-timestamp may be from the receiver's clock when
// Verify is given no tolerance: 5 minutes, as in the Standard Webhooks libraries.
const DefaultTolerance = 5 * time.Minute

// Errors returned by Verify. None of them says more than which check failed.
var (
	ErrMissingHeaders     = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrInvalidTimestamp   = errors.New("webhook: webhook-timestamp is not a Unix time in seconds")
	ErrTimestampTooOld    = errors.New("webhook: webhook-timestamp too old")
	ErrTimestampTooNew    = errors.New("webhook: webhook-timestamp too new")
	ErrInvalidSignature   = errors.New("webhook: no matching signature")
	ErrInvalidSecret      = errors.New("webhook: invalid secret")
	errSecretNotBase64    = errors.New("the whsec_ form must be followed by standard base64")
	errSecretEmpty        = errors.New("empty")
	errSecretEmptyDecoded = errors.New("the whsec_ form decodes to an empty key")
)

// decodeSecret returns the HMAC key of a secret: the base64-decoded part after "whsec_", or
// the secret's own bytes when it has no such prefix. Errors never contain the secret.
func decodeSecret(secret string) ([]byte, error) {
	if secret == "" {
		return nil, errSecretEmpty
	}
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return []byte(secret), nil
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errSecretNotBase64
	}
	if len(key) == 0 {
		return nil, errSecretEmptyDecoded
	}
	return key, nil
}

// Sign returns the Standard Webhooks signature of a message, "v1," + base64(HMAC-SHA256(key,
// id + "." + timestamp + "." + body)), where key is decoded from secret: a "whsec_" secret is
// base64-decoded after the prefix, any other is used as is.
func Sign(secret, id string, timestamp time.Time, body []byte) (string, error) {
	key, err := decodeSecret(secret)
	if err != nil {
		return "", errors.Join(ErrInvalidSecret, err)
	}
	mac := hmac.New(sha256.New, key)
	var sum [sha256.Size]byte
	return string(appendSignature(nil, mac, sum[:0], id, strconv.FormatInt(timestamp.Unix(), 10), body)), nil
}

// appendSignature appends "v1,<signature>" to dst. mac is reset first; sum is scratch space.
func appendSignature(dst []byte, mac hash.Hash, sum []byte, id, ts string, body []byte) []byte {
	mac.Reset()
	_, _ = mac.Write([]byte(id)) // hash writes never fail
	_, _ = mac.Write([]byte{'.'})
	_, _ = mac.Write([]byte(ts))
	_, _ = mac.Write([]byte{'.'})
	_, _ = mac.Write(body)
	sum = mac.Sum(sum[:0])
	dst = append(dst, "v1,"...)
	return base64.StdEncoding.AppendEncode(dst, sum)
}

// Verify checks a webhook request the way a receiver must before trusting it: the
// webhook-signature header holds a v1 signature made with secret over webhook-id,
// webhook-timestamp and body, and the timestamp is within tolerance of the local clock
// (DefaultTolerance when tolerance is zero or negative), which bounds replays. secret is in
// the form the sink was configured with ("whsec_..." or raw). Pass the body exactly as
// received, before any parsing. During a secret rotation the sink sends one signature per
// secret; Verify accepts the request if any of them matches.
func Verify(secret string, headers http.Header, body []byte, tolerance time.Duration) error {
	return verifyAt(secret, headers, body, tolerance, time.Now())
}

func verifyAt(secret string, headers http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	key, err := decodeSecret(secret)
	if err != nil {
		return errors.Join(ErrInvalidSecret, err)
	}
	id, ts, sigs := headers.Get(HeaderID), headers.Get(HeaderTimestamp), headers.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMissingHeaders
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrInvalidTimestamp
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	sent := time.Unix(unix, 0)
	if now.Sub(sent) > tolerance {
		return ErrTimestampTooOld
	}
	if sent.Sub(now) > tolerance {
		return ErrTimestampTooNew
	}
	var sum [sha256.Size]byte
	want := appendSignature(nil, hmac.New(sha256.New, key), sum[:0], id, ts, body)
	for _, sig := range strings.Fields(sigs) {
		if hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return ErrInvalidSignature
}

// signer signs requests with every configured key. It is not safe for concurrent use: each
// worker of a Publish call has its own.
type signer struct {
	macs []hash.Hash
	sum  []byte
	buf  []byte
}

func newSigner(keys [][]byte) *signer {
	if len(keys) == 0 {
		return nil
	}
	s := &signer{macs: make([]hash.Hash, len(keys)), sum: make([]byte, 0, sha256.Size)}
	for i, k := range keys {
		s.macs[i] = hmac.New(sha256.New, k)
	}
	return s
}

// sign returns the webhook-signature header value: one signature per key, space-separated.
func (s *signer) sign(id, ts string, body []byte) string {
	s.buf = s.buf[:0]
	for i, mac := range s.macs {
		if i > 0 {
			s.buf = append(s.buf, ' ')
		}
		s.buf = appendSignature(s.buf, mac, s.sum, id, ts, body)
	}
	return string(s.buf)
}
