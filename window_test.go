package minttl

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
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

// TestWindowObservesEachSecondOnce: a second is observed when a query of a
// later second comes or a tick passes it, quiet seconds as 0, never twice.
func TestWindowObservesEachSecondOnce(t *testing.T) {
	obs := &seen{}
	w := newWindow(obs, 100)
	w.add(100)
	w.add(100)
	w.add(100)
	w.tick(100) // the second is not over
	w.add(101)  // closes 100
	w.tick(101)
	w.tick(104) // closes 101, then 102 and 103 were quiet
	w.tick(104)
	w.add(104)
	w.add(103) // a query racing past the second's turn counts into the later one
	w.add(106) // closes 104 (2 queries), 105 was quiet
	if got, want := obs.got(), []float64{3, 1, 0, 0, 2, 0}; !slices.Equal(got, want) {
		t.Errorf("observed %v, want %v", got, want)
	}
}

// TestWindowAfterStalls: a long quiet stretch fills in at most maxQuiet
// seconds; a clock stepped back by more drops the second it left.
func TestWindowAfterStalls(t *testing.T) {
	obs := &seen{}
	w := newWindow(obs, 1000)
	w.add(1000)
	w.tick(1000 + 10*maxQuiet)
	if got := obs.got(); len(got) != 1+maxQuiet || got[0] != 1 || slices.Max(got[1:]) != 0 {
		t.Errorf("after a long stall: %d observations %v, want 1 then %d zeros", len(got), got, maxQuiet)
	}
	obs = &seen{}
	w = newWindow(obs, 5000)
	w.add(5000)
	w.add(5000 - maxQuiet) // stepped back by maxQuiet: still counted into 5000
	w.add(5001)
	if got, want := obs.got(), []float64{2}; !slices.Equal(got, want) {
		t.Errorf("after the clock stepped back by %d s: observed %v, want %v", maxQuiet, got, want)
	}
	obs = &seen{}
	w = newWindow(obs, 5000)
	w.add(5000)
	w.add(5000 - maxQuiet - 1) // stepped back by more: 5000 is gone, unobserved
	w.add(5000 - maxQuiet)     // the second after it
	if got, want := obs.got(), []float64{1}; !slices.Equal(got, want) {
		t.Errorf("after the clock stepped back: observed %v, want %v", got, want)
	}
}

// TestWindowUnderRace: goroutines counting over seconds while two tickers
// close them, as the old and the new handler do during a reload: every
// query is observed once, every second once.
func TestWindowUnderRace(t *testing.T) {
	obs := &seen{}
	const start, seconds, workers, each = 2000, 50, 8, 500
	w := newWindow(obs, start)
	var clock atomic.Int64
	clock.Store(start)
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				w.add(clock.Load())
			}
		}()
	}
	for tickers := 0; tickers < 2; tickers++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				w.tick(clock.Load())
				runtime.Gosched()
			}
		}()
	}
	for s := int64(start); s < start+seconds; s++ {
		clock.Store(s)
		runtime.Gosched()
	}
	wg.Wait()
	w.tick(start + seconds + 1)
	got := obs.got()
	total := 0.0
	for _, v := range got {
		total += v
	}
	if len(got) != seconds+1 || total != workers*each {
		t.Errorf("%d observations summing to %v, want %d seconds and %d queries", len(got), total, seconds+1, workers*each)
	}
}

// TestTickerClosesQuietSeconds: a handler's ticker observes the seconds of
// the windows it owns while no query comes, and stops when halted.
func TestTickerClosesQuietSeconds(t *testing.T) {
	before := runtime.NumGoroutine()
	obs := &seen{}
	var now atomic.Int64
	now.Store(3000)
	var tk ticker
	tk.own(newWindow(obs, 3000), 3000)
	tk.start(func() time.Time { return time.Unix(now.Add(1), 0) })
	for i := 0; i < 100 && len(obs.got()) < 2; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	tk.halt()
	n := len(obs.got())
	if n < 2 {
		t.Fatalf("the ticker observed %v", obs.got())
	}
	time.Sleep(1100 * time.Millisecond)
	if len(obs.got()) != n {
		t.Errorf("observations went on after halt: %d, then %d", n, len(obs.got()))
	}
	for i := 0; i < 50 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines after halt, %d before", g, before)
	}
	tk.halt() // a second halt, as after a restart that failed, is harmless
}

// TestTickerAdoptsOnce: a window is owned once, and one that no ticker
// closed for longer than maxQuiet starts afresh.
func TestTickerAdoptsOnce(t *testing.T) {
	obs := &seen{}
	w := newWindow(obs, 100)
	w.add(100)
	var tk ticker
	tk.own(w, 100+maxQuiet+5)
	tk.own(w, 100+maxQuiet+5)
	if ws := tk.windows.Load(); ws == nil || len(*ws) != 1 {
		t.Fatalf("owned %v, want the window once", ws)
	}
	tk.tick(100 + maxQuiet + 6)
	if got, want := obs.got(), []float64{0}; !slices.Equal(got, want) {
		t.Errorf("observed %v, want only the second after adoption: the unowned stretch is not filled in", got)
	}

	// Unowned for maxQuiet seconds exactly: the stretch is filled in.
	obs = &seen{}
	w = newWindow(obs, 100)
	w.add(100)
	tk = ticker{}
	tk.own(w, 100+maxQuiet)
	tk.tick(100 + maxQuiet + 1)
	if got := obs.got(); len(got) != 1+maxQuiet || got[0] != 1 {
		t.Errorf("adopted after %d s: observed %d values %v, want 1 then %d zeros", maxQuiet, len(got), got, maxQuiet)
	}
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
	obs := &seen{}
	z := countersFor("", zone, pinned.Unix())
	z.window.observe = obs
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"a." + zone, dns.TypeSRV}, {"b." + zone, dns.TypeA}, {zone, dns.TypeAXFR}, {"other.example.", dns.TypeA}, {"c." + zone, dns.TypeTXT}} {
		serve(t, m, client("10.0.0.1"), q.name, q.qtype)
	}
	z.window.tick(pinned.Unix() + 1)
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
	obs := &seen{}
	z := countersFor("", zone, pinned.Unix())
	z.window.observe = obs
	rec := serve(t, m, client("10.0.0.1"), "linkerd-policy."+zone, dns.TypeSRV)
	if rec != msg || rec.Answer[0].Header().Ttl != 1 {
		t.Errorf("observe_only changed the answer: %v", rec)
	}
	z.window.tick(pinned.Unix() + 1)
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
