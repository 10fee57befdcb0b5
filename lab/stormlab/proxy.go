package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
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

func isProxyName(name string) bool {
	for _, n := range names {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}

const (
	fixedProxyFloor = 5 * time.Second // linkerd2-proxy#3807
	errorBackoff    = time.Second
	// maxPerLoop bounds one proxy's queries for one name, whatever the server answers.
	maxPerLoop = 200_000
)

// fleet is the proxies of one scenario: where each one sends its queries.
type fleet struct {
	clients int
	// source is proxy c's address; targets(c) the servers it picks from at
	// random for each query (the kube-dns replicas behind kube-proxy, or its
	// node's cache).
	source  func(c int) net.IP
	targets func(c int) []string
	// weights skew the random choice among the targets, as topology-aware
	// routing or IPVS source hashing skew kube-dns replicas' loads (nil:
	// every target as likely).
	weights []int
	// sticky sends all of a proxy's queries to the one target it picked
	// first, as IPVS source hashing and NodeLocal DNSCache's TCP connections
	// pin a client to a replica.
	sticky bool
	// validity is how long the zone's data is valid (its TTL).
	validity time.Duration
	churn    *churnWatch // kube scenarios: the proxies' staleness after endpoint changes
}

// proxyAddr is proxy c of scenario index: 127.(10+index).(c/250).(c%250+1),
// so scenarios running side by side never share a client. With perNode > 0
// the proxies are the pods of nodes of perNode pods each, numbered as a /24
// per node hands them out (.0 the network, .1 the node's bridge):
// 127.(10+index).(c/perNode).(c%perNode+2), the herd simulation's layout
// (herd_test.go). minttl reads the node from the first three bytes and the pod
// from the last, so the layout decides how evenly its slots can spread them.
func proxyAddr(index, c, perNode int) net.IP {
	if perNode > 0 {
		return net.IPv4(127, byte(10+index), byte(c/perNode), byte(c%perNode+2))
	}
	return net.IPv4(127, byte(10+index), byte(c/250), byte(c%250+1))
}

// simulate runs the fleet for cfg.duration and tallies every query.
func simulate(ctx context.Context, cfg config, name string, f fleet, t *tally) {
	end := t.start.Add(cfg.duration)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for c := range f.clients {
		delay := time.Duration(0)
		if f.clients > 1 {
			delay = cfg.stagger * time.Duration(c) / time.Duration(f.clients)
		}
		for n, qname := range names {
			p := proxy{cfg: cfg, loop: c*len(names) + n, src: f.source(c), targets: f.targets(c), qname: qname, validity: f.validity}
			t.loops[p.loop].src, t.loops[p.loop].qname = p.src, qname
			p.pick = picker(len(p.targets), f.weights)
			if f.sticky {
				pinned := p.pick(rand.New(rand.NewPCG(uint64(c), 0x571c)))
				p.pick = func(*rand.Rand) int { return pinned }
			}
			if qname == churnName {
				p.churn = f.churn
			}
			wg.Go(func() { p.run(ctx, t, t.start.Add(delay), end, &sent) })
		}
	}
	stopProgress := progress(ctx, cfg, name, t.start, &sent)
	wg.Wait()
	stopProgress()
}

// proxy is one proxy resolving one name.
type proxy struct {
	cfg      config
	loop     int
	src      net.IP
	targets  []string
	pick     func(*rand.Rand) int // the index of the next query's target
	qname    string
	validity time.Duration
	churn    *churnWatch
}

// picker picks one of n targets at random, weighted by weights when they are
// given for exactly n.
func picker(n int, weights []int) func(*rand.Rand) int {
	if len(weights) != n {
		return func(rng *rand.Rand) int { return rng.IntN(n) }
	}
	var upTo []int // cumulative weights
	total := 0
	for _, w := range weights {
		total += w
		upTo = append(upTo, total)
	}
	return func(rng *rand.Rand) int {
		x := rng.IntN(total)
		for i, u := range upTo {
			if x < u {
				return i
			}
		}
		return n - 1
	}
}

// run resolves the way linkerd2-proxy did before its 2025 fix: resolve, sleep
// until now + TTL, resolve again; on TTL 0 re-query at once. With cfg.fixed it
// waits at least 5 s between resolutions instead. Each query leaves from a new
// socket, so kube-proxy would send it to a random replica.
func (p proxy) run(ctx context.Context, t *tally, first, end time.Time, total *atomic.Int64) {
	client := &dns.Client{Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: p.src}}}
	req := new(dns.Msg)
	req.SetQuestion(p.qname, dns.TypeSRV)
	req.SetEdns0(1232, false)
	rng := rand.New(rand.NewPCG(uint64(p.loop), 0x5eed))
	next := first
	for range maxPerLoop {
		if !next.Before(end) || !sleepUntil(ctx, next) {
			return
		}
		now := time.Now()
		target := p.pick(rng)
		t.toReplica(target, now)
		resp, rtt, err := client.ExchangeContext(ctx, req, p.targets[target])
		a := answer{at: now, failed: true, replica: target, rtt: rtt}
		wait := errorBackoff
		if ttl, ok := answerTTL(resp); err == nil && ok {
			wait = time.Duration(ttl) * time.Second
			if p.cfg.fixed {
				wait = max(wait, fixedProxyFloor)
			}
			a = answer{at: now, ttl: ttl, held: wait, stamp: stampOf(resp), replica: target, rtt: rtt}
			if p.churn != nil {
				p.churn.saw(p.loop, resp, now.Add(rtt))
			}
		}
		t.record(p.loop, a, p.validity)
		t.timing(now.Sub(next), rtt)
		total.Add(1)
		next = time.Now().Add(wait)
	}
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

// agreement counts how often replicas asked the same question at the same
// instant, by the same client, answered with different TTLs.
type agreement struct {
	Probes    int `json:"probes"`
	Differing int `json:"probes_with_differing_ttls"`
	MaxSpread int `json:"largest_ttl_spread"`
}

// probe asks every replica for each name at once, from src, at the middle of
// a wall-clock second every interval, until ctx ends or end.
func probe(ctx context.Context, src net.IP, replicas []string, interval time.Duration, end time.Time) agreement {
	var ag agreement
	if len(replicas) < 2 || interval <= 0 {
		return ag
	}
	for {
		next := time.Now().Truncate(time.Second).Add(interval + time.Second/2)
		if !next.Before(end) || !sleepUntil(ctx, next) {
			return ag
		}
		for _, qname := range names {
			ttls := askAll(ctx, src, replicas, qname)
			if len(ttls) < len(replicas) {
				continue // a lost probe says nothing
			}
			lo, hi := ttls[0], ttls[0]
			for _, t := range ttls {
				lo, hi = min(lo, t), max(hi, t)
			}
			ag.Probes++
			if hi != lo {
				ag.Differing++
			}
			ag.MaxSpread = max(ag.MaxSpread, int(hi-lo))
		}
	}
}

// askAll sends qname to every replica at once and returns the TTLs answered.
func askAll(ctx context.Context, src net.IP, replicas []string, qname string) []uint32 {
	req := new(dns.Msg)
	req.SetQuestion(qname, dns.TypeSRV)
	req.SetEdns0(1232, false)
	var mu sync.Mutex
	var ttls []uint32
	var wg sync.WaitGroup
	for _, r := range replicas {
		wg.Go(func() {
			c := &dns.Client{Timeout: time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: src}}}
			resp, _, err := c.ExchangeContext(ctx, req.Copy(), r)
			if ttl, ok := answerTTL(resp); err == nil && ok {
				mu.Lock()
				ttls = append(ttls, ttl)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ttls
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
				fmt.Printf("%-24s %3.0f%% (%s of %s), %d queries\n", name, 100*time.Since(start).Seconds()/cfg.duration.Seconds(),
					time.Since(start).Round(time.Second), cfg.duration, sent.Load())
			case <-done:
				fmt.Printf("%-24s done, %d queries\n", name, sent.Load())
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}
