package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// The two names every Linkerd2 proxy re-resolves.
var names = []string{
	"linkerd-policy.linkerd.svc.cluster.local.",
	"linkerd-dst-headless.linkerd.svc.cluster.local.",
}

const (
	fixedProxyFloor = 5 * time.Second // linkerd2-proxy#3807
	errorBackoff    = time.Second
	// maxPerLoop bounds one proxy's queries for one name, whatever the server answers.
	maxPerLoop = 200_000
)

// query is one query a proxy sent: when (since the scenario's start), the TTL
// answered, and whether it was answered at all.
type query struct {
	loop   int // which proxy and name
	at     time.Duration
	ttl    uint32
	failed bool
}

// simulate runs cfg.clients proxies against addr for cfg.duration and returns
// every query they sent. Scenario index picks the client address range
// 127.(10+index).x.y, so scenarios running side by side never share a client.
func simulate(ctx context.Context, cfg config, index int, name, addr string) []query {
	start := time.Now()
	end := start.Add(cfg.duration)
	loops := make([][]query, cfg.clients*len(names))
	var sent atomic.Int64
	var wg sync.WaitGroup
	for c := range cfg.clients {
		src := net.IPv4(127, byte(10+index), byte(c/250), byte(c%250+1))
		delay := time.Duration(0)
		if cfg.clients > 1 {
			delay = cfg.stagger * time.Duration(c) / time.Duration(cfg.clients)
		}
		for n, qname := range names {
			wg.Go(func() {
				loop := c*len(names) + n
				loops[loop] = resolveLoop(ctx, cfg, loop, src, addr, qname, start, start.Add(delay), end, &sent)
			})
		}
	}
	stopProgress := progress(ctx, cfg, name, start, &sent)
	wg.Wait()
	stopProgress()
	var all []query
	for _, l := range loops {
		all = append(all, l...)
	}
	return all
}

// resolveLoop is one proxy resolving one name the way linkerd2-proxy did before
// its 2025 fix: resolve, sleep until now + TTL, resolve again; on TTL 0 re-query
// at once. With cfg.fixed it waits at least 5 s between resolutions instead.
func resolveLoop(ctx context.Context, cfg config, loop int, src net.IP, addr, qname string, start, first, end time.Time, total *atomic.Int64) []query {
	client := &dns.Client{Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: src}}}
	req := new(dns.Msg)
	req.SetQuestion(qname, dns.TypeSRV)
	req.SetEdns0(1232, false)
	var sent []query
	if !sleepUntil(ctx, first) {
		return sent
	}
	for len(sent) < maxPerLoop {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		q := query{loop: loop, at: now.Sub(start)}
		resp, _, err := client.ExchangeContext(ctx, req, addr)
		wait := errorBackoff
		if ttl, ok := answerTTL(resp); err == nil && ok {
			q.ttl = ttl
			wait = time.Duration(ttl) * time.Second
			if cfg.fixed {
				wait = max(wait, fixedProxyFloor)
			}
		} else {
			q.failed = true
		}
		sent = append(sent, q)
		total.Add(1)
		if next := time.Now().Add(wait); !next.Before(end) || !sleepUntil(ctx, next) {
			break
		}
	}
	return sent
}

// answerTTL is the lowest TTL in the answer section, the one a client must honour.
func answerTTL(resp *dns.Msg) (uint32, bool) {
	if resp == nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
		return 0, false
	}
	ttl := resp.Answer[0].Header().Ttl
	for _, rr := range resp.Answer[1:] {
		ttl = min(ttl, rr.Header().Ttl)
	}
	return ttl, true
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// progress prints a line for the scenario every cfg.progress until stopped.
func progress(ctx context.Context, cfg config, name string, start time.Time, sent *atomic.Int64) func() {
	if cfg.progress <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(cfg.progress)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Printf("%-20s %3.0f%% (%s of %s), %d queries\n", name, 100*time.Since(start).Seconds()/cfg.duration.Seconds(),
					time.Since(start).Round(time.Second), cfg.duration, sent.Load())
			case <-done:
				fmt.Printf("%-20s done, %d queries\n", name, sent.Load())
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}
