package minttl

import (
	"math/rand"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/metrics/vars"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// seen records what a window observes.
type seen struct {
	mu     sync.Mutex
	values []float64
}

func (s *seen) Observe(v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values = append(s.values, v)
}

func (s *seen) got() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.values)
}

// observed gives the window of zone in r an observer that records.
func observed(r *registry, zone string) *seen {
	obs := &seen{}
	r.countersFor("", zone).window.observe = obs
	return obs
}

func sum(values []float64) float64 {
	total := 0.0
	for _, v := range values {
		total += v
	}
	return total
}

// TestWindowObservesEachSecondOnce: a tick observes each window's count and
// starts it afresh; a tick late by k seconds observes the count for the first
// of them and 0 for the others; a tick of no second observes nothing.
func TestWindowObservesEachSecondOnce(t *testing.T) {
	r := &registry{}
	obs, other := observed(r, "one.test."), observed(r, "two.test.")
	m := newMinTTL(nil)
	m.registry = r
	for i := 0; i < 3; i++ {
		m.count("", "one.test.")
	}
	r.tick(1)
	r.tick(0) // a ticker that woke early
	r.tick(1)
	m.count("", "one.test.")
	m.count("", "two.test.")
	m.count("", "one.test.")
	r.tick(3)
	if got, want := obs.got(), []float64{3, 0, 2, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("observed %v, want %v", got, want)
	}
	if got, want := other.got(), []float64{0, 0, 1, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("the other zone observed %v, want %v", got, want)
	}
}

// TestCountingUnderRace: goroutines counting through one handler while the
// ticker closes seconds: every query observed once, every tick once.
func TestCountingUnderRace(t *testing.T) {
	r := &registry{}
	obs := observed(r, "race.test.")
	m := newMinTTL(nil)
	m.registry = r
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				m.count("", "race.test.")
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	ticks := 0
	for counting := true; counting; {
		select {
		case <-done:
			counting = false
		default:
			runtime.Gosched()
		}
		r.tick(1)
		ticks++
	}
	got := obs.got()
	if len(got) != ticks || sum(got) != workers*each {
		t.Errorf("%d observations summing to %v, want %d ticks and %d queries", len(got), sum(got), ticks, workers*each)
	}
}

// TestReloadThenQuietMinute: queries through a handler that a reload then
// drops (it has nothing to stop), 90 quiet seconds, and a query through the
// handler the reload built: every query is observed, every second. (Before
// the registry, the new handler started the window afresh at its first
// query: observed [1].)
func TestReloadThenQuietMinute(t *testing.T) {
	const zone = "linkerd.svc.cluster.local."
	r := &registry{}
	obs := observed(r, zone)
	before := newMinTTL(fixed{msg: srvResponse(3)})
	before.registry = r
	for i := 0; i < 3; i++ {
		serve(t, before, client("10.0.0.1"), srvName, dns.TypeSRV)
	}
	after := newMinTTL(fixed{msg: srvResponse(3)})
	after.registry = r
	for i := 0; i < 90; i++ {
		r.tick(1)
	}
	serve(t, after, client("10.0.0.1"), srvName, dns.TypeSRV)
	r.tick(1)
	if got := obs.got(); len(got) != 91 || sum(got) != 4 || got[0] != 3 || got[90] != 1 {
		t.Errorf("observed %d seconds %v, want 91 seconds holding the 4 queries", len(got), got)
	}
}

// TestClockStepCountsOnce: two handlers of one server and zone (two server
// blocks on one port) whose clocks disagree by more than a minute, as in
// the millisecond after a clock step: counting reads no clock, so every
// query is counted once and no second is made up. (Before, each query moved
// the shared window forward and back: 671 seconds holding 11 of 21 queries.)
func TestClockStepCountsOnce(t *testing.T) {
	const zone = "linkerd.svc.cluster.local."
	r := &registry{}
	obs := observed(r, zone)
	ahead, behind := newMinTTL(fixed{msg: srvResponse(3)}), newMinTTL(fixed{msg: srvResponse(3)})
	ahead.registry, behind.registry = r, r
	behind.now = func() time.Time { return pinned.Add(-90 * time.Second) }
	for i := 0; i < 10; i++ {
		serve(t, ahead, client("10.0.0.1"), srvName, dns.TypeSRV)
		serve(t, behind, client("10.0.0.1"), srvName, dns.TypeSRV)
	}
	r.tick(1)
	if got, want := obs.got(), []float64{20}; !slices.Equal(got, want) {
		t.Errorf("observed %v, want %v", got, want)
	}
}

// TestSchedule: tick k is due k seconds after the first, on the monotonic
// clock; a ticker that wakes on time closes one second, one that wakes early
// none, one that wakes late by k whole seconds k+1, and over any run of
// wake-ups every second that ended is closed once.
func TestSchedule(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		ticked  int64
		elapsed time.Duration
		seconds int64
		wait    time.Duration
	}{
		{0, 0, 1, time.Second},                   // the first tick, on time
		{0, 2 * ms, 1, 998 * ms},                 // a little late
		{1, 1000 * ms, 1, time.Second},           // the second tick
		{1, 999 * ms, 0, ms},                     // woke a millisecond early
		{0, -5 * ms, 0, 5 * ms},                  // woke before the first was due
		{5, 5*time.Second + 3*ms, 1, 997 * ms},   // tick 5, on time
		{5, 8*time.Second + 200*ms, 4, 800 * ms}, // late by 3 s: ticks 5 to 8 at once
	} {
		seconds, wait := schedule(tc.ticked, tc.elapsed)
		if seconds != tc.seconds || wait != tc.wait {
			t.Errorf("ticked %d, woke %v after the first was due: %d seconds, next in %v; want %d, %v", tc.ticked, tc.elapsed, seconds, wait, tc.seconds, tc.wait)
		}
	}
	rng := rand.New(rand.NewSource(1))
	elapsed, ticked := time.Duration(0), int64(0)
	for i := 0; i < 10_000; i++ {
		seconds, wait := schedule(ticked, elapsed)
		if seconds < 0 || wait <= 0 || wait > time.Second {
			t.Fatalf("at %v, %d ticked: %d seconds, next in %v", elapsed, ticked, seconds, wait)
		}
		ticked += seconds
		// The timer fires up to 2 ms early or late; one wake-up in 100 is a stall.
		late := time.Duration(rng.Intn(4000)-2000) * time.Microsecond
		if rng.Intn(100) == 0 {
			late = time.Duration(rng.Intn(5000)) * time.Millisecond
		}
		elapsed += max(wait+late, 0)
	}
	if due := int64(elapsed/time.Second) + 1; ticked != due-1 && ticked != due {
		t.Errorf("after %v, %d seconds closed, want %d (or the last one still due)", elapsed, ticked, due)
	}
}

// TestTickerRuns: a ticker on the real clock closes a registry's windows
// until it is stopped. (It asserts what was observed, never when.)
func TestTickerRuns(t *testing.T) {
	r := &registry{stop: make(chan struct{})}
	obs := observed(r, "ticker.test.")
	m := newMinTTL(nil)
	m.registry = r
	m.count("", "ticker.test.")
	done := make(chan struct{})
	go func() { defer close(done); r.run() }()
	for i := 0; i < 200 && len(obs.got()) < 2; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	close(r.stop)
	<-done
	if got := obs.got(); len(got) < 2 || sum(got) != 1 {
		t.Errorf("the ticker observed %v, want at least two seconds holding the query", got)
	}
}

// TestTickerStartsWithTheFirstWindow: a registry that ticks itself starts
// one ticker, with its first window; one that does not (a test's) none.
func TestTickerStartsWithTheFirstWindow(t *testing.T) {
	before := goroutines()
	quiet := &registry{}
	quiet.countersFor("", "quiet.test.")
	if g := goroutines(); g != before {
		t.Errorf("%d goroutines after a window of a registry ticked by hand, %d before", g, before)
	}
	r := &registry{ticking: true, stop: make(chan struct{})}
	r.countersFor("", "one.test.")
	r.countersFor("", "two.test.")
	r.countersFor("", "one.test.")
	if g := goroutines(); g != before+1 {
		t.Errorf("%d goroutines after three windows, %d before: want one ticker", g, before)
	}
	close(r.stop)
	if g := goroutines(); g != before {
		t.Errorf("%d goroutines after the ticker stopped, %d before", g, before)
	}
}

// goroutines is the number of goroutines once it has stopped changing
// (goroutines of earlier tests still ending).
func goroutines() int {
	n := runtime.NumGoroutine()
	for i := 0; i < 100; i++ {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			break
		}
		n = m
	}
	return n
}

// TestUntilNextSecond: the ticker wakes just inside the next second, so the
// second it publishes is the new one even if the timer fires a little early.
func TestUntilNextSecond(t *testing.T) {
	for _, now := range []time.Time{time.Unix(7000, 0), time.Unix(7000, 1), time.Unix(7000, 500_000_000), time.Unix(7000, 999_999_999)} {
		wake := now.Add(untilNextSecond(now))
		if wake.Unix() != 7001 || wake.Sub(time.Unix(7001, 0)) != time.Millisecond {
			t.Errorf("at %v: wakes at %v, want a millisecond into second 7001", now, wake)
		}
	}
}

// TestEveryQueryInTheZoneCounts: queries in the zone count into its window
// whatever minttl does with the answer (raised, left alone, a transfer, an
// error); queries outside it do not.
func TestEveryQueryInTheZoneCounts(t *testing.T) {
	zone := fresh("perseconds")
	m := newMinTTL(fixed{msg: srvResponse(300)})
	m.Zones = []string{zone}
	obs := observed(m.registry, zone)
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"a." + zone, dns.TypeSRV}, {"b." + zone, dns.TypeA}, {zone, dns.TypeAXFR}, {"other.example.", dns.TypeA}, {"c." + zone, dns.TypeTXT}} {
		serve(t, m, client("10.0.0.1"), q.name, q.qtype)
	}
	m.registry.tick(1)
	if got := obs.got(); !slices.Equal(got, []float64{4}) {
		t.Errorf("observed %v, want the 4 queries in %s in one second", got, zone)
	}
}

// TestObserveOnly: minttl counts the query and passes the answer through as
// it came, the same message, counting nothing as raised.
func TestObserveOnly(t *testing.T) {
	zone := fresh("observe")
	msg := srvResponse(1)
	m := newMinTTL(held{msg: msg})
	m.Zones, m.ObserveOnly = []string{zone}, true
	obs := observed(m.registry, zone)
	rec := serve(t, m, client("10.0.0.1"), "linkerd-policy."+zone, dns.TypeSRV)
	if rec != msg || rec.Answer[0].Header().Ttl != 1 {
		t.Errorf("observe_only changed the answer: %v", rec)
	}
	m.registry.tick(1)
	if got := obs.got(); !slices.Equal(got, []float64{1}) {
		t.Errorf("observed %v, want the query", got)
	}
	if n := testutil.ToFloat64(raisedResponses.WithLabelValues("", zone)); n != 0 {
		t.Errorf("raised_responses_total %v in observe_only", n)
	}
}

// TestQueriesPerSecondExposed: the histogram as Prometheus gathers it, with
// buckets from 1 to at least 100,000 queries a second and the native-histogram
// resolution of CoreDNS's own request duration histogram.
func TestQueriesPerSecondExposed(t *testing.T) {
	zone := fresh("exposed")
	queriesPerSecond.WithLabelValues("", zone).Observe(0)
	queriesPerSecond.WithLabelValues("", zone).Observe(100_000)
	vars.RequestDuration.WithLabelValues("", zone, "").Observe(0.001)
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	schema := map[string]int32{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			inZone := false
			for _, l := range m.GetLabel() {
				inZone = inZone || l.GetName() == "zone" && l.GetValue() == zone
			}
			if !inZone {
				continue
			}
			h := m.GetHistogram()
			schema[f.GetName()] = h.GetSchema()
			if f.GetName() != "coredns_minttl_queries_per_second" {
				continue
			}
			buckets := h.GetBucket()
			if len(buckets) == 0 || buckets[0].GetUpperBound() != 1 || buckets[len(buckets)-1].GetUpperBound() < 100_000 {
				t.Errorf("buckets %v, want 1 to at least 100,000", buckets)
			}
			for i := 1; i < len(buckets); i++ {
				if r := buckets[i].GetUpperBound() / buckets[i-1].GetUpperBound(); r > 1.42 {
					t.Errorf("buckets %v and %v are %.2f apart: the herd factor's percentile would be off by as much", buckets[i-1].GetUpperBound(), buckets[i].GetUpperBound(), r)
				}
			}
			if h.GetSampleCount() != 2 || h.GetSampleSum() != 100_000 {
				t.Errorf("%d seconds, %v queries, want 2 and 100,000", h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
	if mine, theirs := schema["coredns_minttl_queries_per_second"], schema["coredns_dns_request_duration_seconds"]; mine != theirs || mine == 0 {
		t.Errorf("native histogram schema %d, CoreDNS's request duration %d", mine, theirs)
	}
}
