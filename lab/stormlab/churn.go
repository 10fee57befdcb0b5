package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/minttl/minttl/lab/internal/kube"
)

// churnName is the name whose endpoints the rolling update replaces and whose
// staleness the proxies measure.
const churnName = "linkerd-dst-headless.linkerd.svc.cluster.local."

// churnEvent is one new pod of the rolling update: when the write that made it
// ready was sent, and the SRV target the kubernetes plugin names it by.
type churnEvent struct {
	ready  time.Time
	target string // 10-244-0-17.linkerd-dst-headless.linkerd.svc.cluster.local.
}

// churnLog is every event of the run so far. The rolling update appends;
// proxies read a snapshot without a lock, since a TTL-0 storm reads it
// millions of times and the update writes it once every few seconds.
type churnLog struct {
	mu     sync.Mutex
	events atomic.Pointer[[]churnEvent]
}

func (l *churnLog) add(s kube.Step) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var events []churnEvent
	if old := l.events.Load(); old != nil {
		events = slices.Clone(*old)
	}
	events = append(events, churnEvent{ready: s.Ready, target: strings.ReplaceAll(s.New.IP, ".", "-") + "." + churnName})
	l.events.Store(&events)
}

func (l *churnLog) snapshot() []churnEvent {
	if e := l.events.Load(); e != nil {
		return *e
	}
	return nil
}

// churnWatch measures, for one scenario, how long after each event every
// proxy first got an answer holding the new pod: one sample per proxy and
// event, not per answer.
type churnWatch struct {
	log           *churnLog
	from, until   time.Time // events written in this window count
	end           time.Time // the run's
	floor, jitter uint32    // minttl's in the scenario's Corefile; 0, 0 without
	zoneTTL       uint32
	// next is, per proxy loop, the first event it has not seen; only the
	// loop's own goroutine touches its entry.
	next   []int
	mu     sync.Mutex
	delays []time.Duration
	missed int // events a proxy never saw: a later pod showed up first
}

func newChurnWatch(log *churnLog, floor, jitter, zoneTTL uint32) *churnWatch {
	return &churnWatch{log: log, floor: floor, jitter: jitter, zoneTTL: zoneTTL}
}

// open readies the watch for loops proxy loops starting at start. Events
// count from then until tail before the end, so that every proxy has had time
// to see each of them (the longest TTL and cache time here is well below a
// minute).
func (w *churnWatch) open(start time.Time, duration time.Duration, loops int) *churnWatch {
	tail := min(time.Minute, duration/2)
	w.from, w.until, w.end, w.next = start, start.Add(duration-tail), start.Add(duration), make([]int, loops)
	return w
}

// saw takes an answer loop received at `at`. The common case, no event the
// loop has not seen yet, takes no lock.
func (w *churnWatch) saw(loop int, resp *dns.Msg, at time.Time) {
	events := w.log.snapshot()
	i := w.next[loop]
	for ; i < len(events) && events[i].ready.Before(at); i++ {
		e := events[i]
		switch {
		case e.ready.Before(w.from) || e.ready.After(w.until):
		case holds(resp, e.target):
			w.mu.Lock()
			w.delays = append(w.delays, at.Sub(e.ready))
			w.mu.Unlock()
		case slices.ContainsFunc(events[i+1:], func(later churnEvent) bool { return holds(resp, later.target) }):
			w.mu.Lock()
			w.missed++
			w.mu.Unlock()
		default:
			w.next[loop] = i // not in this answer yet
			return
		}
	}
	w.next[loop] = i
}

// holds says whether the answer names target among its SRV records.
func holds(resp *dns.Msg, target string) bool {
	for _, rr := range resp.Answer {
		if srv, ok := rr.(*dns.SRV); ok && strings.EqualFold(srv.Target, target) {
			return true
		}
	}
	return false
}

// churnResult is a scenario's staleness after endpoint changes.
type churnResult struct {
	Events   int     `json:"events"`
	Samples  int     `json:"samples"`
	Missed   int     `json:"missed"`
	P50      float64 `json:"p50_seconds"`
	P99      float64 `json:"p99_seconds"`
	Max      float64 `json:"max_seconds"`
	Floor    uint32  `json:"minttl_floor"`
	Jitter   uint32  `json:"minttl_jitter"`
	ZoneTTL  uint32  `json:"zone_ttl"`
	Interval float64 `json:"churn_interval_seconds"`
}

// result waits for the end of the run (proxies whose next query would fall
// after it are done early, but the rolling update goes on) and sums up.
func (w *churnWatch) result(ctx context.Context, interval time.Duration) *churnResult {
	sleepUntil(ctx, w.end)
	w.mu.Lock()
	defer w.mu.Unlock()
	r := &churnResult{Samples: len(w.delays), Missed: w.missed, Floor: w.floor, Jitter: w.jitter, ZoneTTL: w.zoneTTL, Interval: interval.Seconds()}
	for _, e := range w.log.snapshot() {
		if !e.ready.Before(w.from) && !e.ready.After(w.until) {
			r.Events++
		}
	}
	if len(w.delays) > 0 {
		d := slices.Clone(w.delays)
		slices.Sort(d)
		at := func(q float64) float64 { return d[min(int(q*float64(len(d))), len(d)-1)].Seconds() }
		r.P50, r.P99, r.Max = at(0.5), at(0.99), d[len(d)-1].Seconds()
	}
	return r
}

// churnTable is the staleness of every scenario that had endpoint churn.
func churnTable(results []result) string {
	var b strings.Builder
	for _, r := range results {
		c := r.Churn
		if c == nil {
			continue
		}
		if b.Len() == 0 {
			fmt.Fprintf(&b, "\nA linkerd-destination pod replaced every %.0f s (rolling update): from the write that made the new pod ready to the first answer each proxy got with it.\n\n", c.Interval)
			b.WriteString("| scenario | kube-dns | zone TTL | minttl floor + jitter | events | proxy samples | missed | p50 | p99 | max |\n")
			b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		}
		minttl := "–"
		if c.Floor > 0 {
			minttl = fmt.Sprintf("%d + %d s", c.Floor, c.Jitter)
		}
		fmt.Fprintf(&b, "| %s | %d | %d s | %s | %d | %d | %d | %.1f s | %.1f s | %.1f s |\n",
			r.describe, r.Replicas, c.ZoneTTL, minttl, c.Events, c.Samples, c.Missed, c.P50, c.P99, c.Max)
	}
	return b.String()
}
