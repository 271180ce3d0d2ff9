package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Recipient is a channel's receiving end (a provider stand-in or the SMTP server).
type Recipient interface {
	Deliveries() []Delivery
	Stats() ChannelStats
}

// DriveConfig is a run of customers and status changes.
type DriveConfig struct {
	Customers int      // each places one order, subscribing to a random set of channels
	Changes   int      // status changes after the orders are placed
	Rate      int      // status changes per second (0: as fast as they commit)
	Channels  []string // the channels customers choose among
	// UnsubscribeFirst customers unsubscribe right after subscribing, before any status
	// of their order; UnsubscribeMid more unsubscribe when half the changes are made.
	UnsubscribeFirst, UnsubscribeMid int
	Seed                             uint64
	// Run names the run in the order ids (o-<Run>-001), so that runs can share a database.
	Run string
	// Progress, if set, is called before change i (0 ≤ i < Changes) is committed: the
	// place for the caller's faults.
	Progress func(i int)
	// Say, if set, is told what happens (subscriptions, changes, unsubscribes).
	Say func(format string, args ...any)
}

// Drive subscribes the customers, places their orders and makes the status changes,
// recording everything in the ledger.
func Drive(ctx context.Context, sys *System, l *Ledger, cfg DriveConfig) error {
	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	say := cfg.Say
	if say == nil {
		say = func(string, ...any) {}
	}
	orders := make([]string, 0, cfg.Customers)
	customerOf := map[string]string{}
	for i := range cfg.Customers {
		customer, order := fmt.Sprintf("c-%03d", i+1), fmt.Sprintf("o-%03d", i+1)
		if cfg.Run != "" {
			order = fmt.Sprintf("o-%s-%03d", cfg.Run, i+1)
		}
		chans := map[string]string{}
		for _, ch := range cfg.Channels {
			if rng.IntN(100) < 55 {
				chans[ch] = Address(ch, i+1)
			}
		}
		if err := sys.Subscribe(ctx, SubscribeRequest{Customer: customer, Order: order, Channels: chans}); err != nil {
			return err
		}
		l.Subscribed(order, chans)
		say("subscribe    %s order %s: %s\n", customer, order, describe(chans))
		orders = append(orders, order)
		customerOf[order] = customer
	}
	unsubscribe := func(order string) error {
		if err := sys.Unsubscribe(ctx, UnsubscribeRequest{Customer: customerOf[order], Order: order}); err != nil {
			return err
		}
		l.Unsubscribed(order)
		say("unsubscribe  %s order %s: nothing more for them from here on\n", customerOf[order], order)
		return nil
	}
	for _, o := range orders[:min(cfg.UnsubscribeFirst, len(orders))] {
		if err := unsubscribe(o); err != nil {
			return err
		}
	}
	for _, o := range orders {
		ev, err := sys.Orders.Place(ctx, o, customerOf[o])
		if err != nil {
			return err
		}
		l.Committed(o, ev.Version)
	}
	var tick *time.Ticker
	if cfg.Rate > 0 {
		tick = time.NewTicker(time.Second / time.Duration(cfg.Rate))
		defer tick.Stop()
	}
	version := map[string]int{}
	for i := range cfg.Changes {
		if cfg.Progress != nil {
			cfg.Progress(i)
		}
		if i == cfg.Changes/2 {
			mid := orders[min(cfg.UnsubscribeFirst, len(orders)):]
			for _, o := range mid[:min(cfg.UnsubscribeMid, len(mid))] {
				if err := unsubscribe(o); err != nil {
					return err
				}
			}
		}
		if tick != nil {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		o := orders[rng.IntN(len(orders))]
		version[o]++
		ev, err := sys.Orders.SetStatus(ctx, o, Statuses[(version[o])%len(Statuses)])
		if err != nil {
			return err
		}
		l.Committed(o, ev.Version)
		say("status       %s → %s (version %d)\n", o, ev.Status, ev.Version)
	}
	return nil
}

// Address is customer n's address on a channel.
func Address(channel string, n int) string {
	switch channel {
	case "sms", "voice":
		return fmt.Sprintf("+1555%07d", n)
	case "email":
		return fmt.Sprintf("c-%03d@example.com", n)
	default:
		return fmt.Sprintf("%s:c-%03d", channel, n)
	}
}

func describe(chans map[string]string) string {
	if len(chans) == 0 {
		return "no notifications"
	}
	names := make([]string, 0, len(chans))
	for ch := range chans {
		names = append(names, ch)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, ch := range names {
		parts[i] = ch + " " + chans[ch]
	}
	return strings.Join(parts, ", ")
}

// AllDeliveries concatenates the deliveries of the recipients.
func AllDeliveries(rs ...Recipient) []Delivery {
	var out []Delivery
	for _, r := range rs {
		out = append(out, r.Deliveries()...)
	}
	return out
}
