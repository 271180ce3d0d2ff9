package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

// MailServer is an SMTP server on loopback that stores what it receives, once per
// Message-ID: a message repeating a Message-ID it already stored is accepted (250) and
// counted as a duplicate. Stop and Start cut it and bring it back on the same address.
type MailServer struct {
	addr string

	mu         sync.Mutex
	srv        *smtp.Server
	byID       map[string]Delivery
	order      []string
	duplicates int
	requests   int
	onDeliver  func(Delivery)
}

// StartMailServer starts an SMTP server on addr ("127.0.0.1:0" picks a free port).
func StartMailServer(addr string) (*MailServer, error) {
	m := &MailServer{addr: addr, byID: map[string]Delivery{}}
	if err := m.Start(); err != nil {
		return nil, err
	}
	return m, nil
}

// Addr is the server's host:port.
func (m *MailServer) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addr
}

// Start (re)starts the server on its address; it is a no-op while it runs.
func (m *MailServer) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv != nil {
		return nil
	}
	var ln net.Listener
	var err error
	for range 50 { // the port of a just-stopped server may take a moment to be free
		if ln, err = net.Listen("tcp", m.addr); err == nil { //nolint:noctx // a loopback listener
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("smtp server: %w", err)
	}
	m.addr = ln.Addr().String()
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &mailSession{m: m}, nil }))
	s.Domain = "localhost"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.MaxRecipients = 1
	s.ErrorLog = log.New(io.Discard, "", 0)
	m.srv = s
	go func() { _ = s.Serve(ln) }()
	return nil
}

// Stop closes the listener and every open connection: the SMTP server is down until Start.
func (m *MailServer) Stop() {
	m.mu.Lock()
	s := m.srv
	m.srv = nil
	m.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

// OnDeliver sets a function called with each newly stored message (not the duplicates).
func (m *MailServer) OnDeliver(f func(Delivery)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onDeliver = f
}

// Deliveries returns the stored messages, one per Message-ID, in arrival order.
func (m *MailServer) Deliveries() []Delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Delivery, 0, len(m.order))
	for _, id := range m.order {
		out = append(out, m.byID[id])
	}
	return out
}

// Stats returns the counts of stored messages, deduped duplicates and transactions.
func (m *MailServer) Stats() ChannelStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return ChannelStats{Channel: "email", Delivered: len(m.order), Duplicates: m.duplicates, Requests: m.requests}
}

func (m *MailServer) store(to string, msg *mail.Message, body []byte) error {
	id := strings.Trim(msg.Header.Get("Message-Id"), "<>")
	if i := strings.IndexByte(id, '@'); i >= 0 {
		id = id[:i]
	}
	if id == "" {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message-ID required"}
	}
	m.mu.Lock()
	m.requests++
	if _, ok := m.byID[id]; ok {
		m.duplicates++
		m.mu.Unlock()
		return nil
	}
	d := Delivery{Channel: "email", Key: id, Ref: msg.Header.Get("X-Notification-Ref"), To: to, Body: string(bytes.TrimSpace(body)), At: time.Now()}
	m.byID[id] = d
	m.order = append(m.order, id)
	f := m.onDeliver
	m.mu.Unlock()
	if f != nil {
		f(d)
	}
	return nil
}

type mailSession struct {
	m  *MailServer
	to string
}

func (s *mailSession) Reset()        { s.to = "" }
func (s *mailSession) Logout() error { return nil }
func (s *mailSession) Mail(string, *smtp.MailOptions) error {
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if _, err := mail.ParseAddress(to); err != nil {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	s.to = to
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "unreadable message"}
	}
	body, err := io.ReadAll(msg.Body)
	if err != nil {
		return err
	}
	return s.m.store(s.to, msg, body)
}

// EmailSink sends notifications by SMTP, one connection per batch, each message with
// Message-ID <outbox message id@domain>, so a receiving server (or the customer's mail
// client) can tell a resend from a new message.
//
// It maps SMTP's answers to the sink contract: no connection, a connection cut mid-batch,
// and 421 (service closing) are sink.Unavailable (the relay pauses email and probes the
// server); other 4xx replies are retryable; 5xx replies (no such mailbox, message refused)
// are permanent and dead-letter the message.
type EmailSink struct {
	addr, from, domain string
	dial               net.Dialer
}

// NewEmailSink returns a sink sending through the SMTP server at addr (host:port).
func NewEmailSink(addr string) *EmailSink {
	return &EmailSink{addr: addr, from: "notify@example.com", domain: "notify.example", dial: net.Dialer{Timeout: 5 * time.Second}}
}

// Close is a no-op: connections live for one batch.
func (s *EmailSink) Close() error { return nil }

// Publish sends msgs over one SMTP connection, in order.
func (s *EmailSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	conn, err := s.dial.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		if ctx.Err() != nil {
			return sink.FailAll(len(msgs), ctx.Err())
		}
		return sink.FailAll(len(msgs), sink.Unavailablef("smtp: %w", err))
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello(s.domain); err != nil {
		return sink.FailAll(len(msgs), smtpResult(ctx, err))
	}
	res := make([]error, len(msgs))
	for i, m := range msgs {
		res[i] = smtpResult(ctx, s.send(c, m))
		if sink.IsUnavailable(res[i]) || ctx.Err() != nil {
			for j := i + 1; j < len(msgs); j++ {
				res[j] = res[i]
			}
			return res
		}
		if res[i] != nil {
			if err := c.Reset(); err != nil { // a clean slate for the next message
				for j := i + 1; j < len(msgs); j++ {
					res[j] = smtpResult(ctx, err)
				}
				return res
			}
		}
	}
	_ = c.Quit()
	return res
}

func (s *EmailSink) send(c *smtp.Client, m *outbox.Record) error {
	var n Notification
	if err := json.Unmarshal(m.Payload, &n); err != nil {
		return sink.Permanentf("notification %s: %w", m.ID, err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", m.ID, s.domain)
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\n", s.from, n.Address)
	fmt.Fprintf(&b, "Date: %s\r\n", m.CreatedAt.UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Subject: Order %s\r\n", n.Order)
	fmt.Fprintf(&b, "X-Notification-Ref: %s\r\n", Ref(n.Order, n.Version))
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", n.Text())
	return c.SendMail(s.from, []string{n.Address}, &b)
}

// smtpResult maps an SMTP client error to the sink contract (see EmailSink).
func smtpResult(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return sink.Unavailablef("smtp: %w", err) // the conversation broke: the server is gone
	}
	switch {
	case se.Code == 421:
		return sink.Unavailablef("smtp: %w", err)
	case se.Code >= 500:
		return sink.Permanentf("smtp: %w", err)
	default:
		return fmt.Errorf("smtp: %w", err)
	}
}
