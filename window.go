package minttl

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// window counts the queries of one server and zone in the second that is
// open. A query adds one to the count; when the second ends, the ticker takes
// the count, leaving 0, and observes it. Each query is added once and each
// count taken once, so every query is observed once, in the second that was
// open when it came, and no query ever waits on another or on the ticker.
type window struct {
	count   atomic.Uint64
	observe prometheus.Observer
}

// close observes the count of the second that ended and, when seconds is
// more than 1 (a ticker that woke late), 0 for each second after it: the
// queries of a stall all count into its first second.
func (w *window) close(seconds int64) {
	w.observe.Observe(float64(w.count.Swap(0)))
	for ; seconds > 1; seconds-- {
		w.observe.Observe(0)
	}
}

// registry holds the counters of every server and zone counted into, and
// with them the windows one ticker closes. Windows outlive handlers, like
// the Prometheus series they observe into: a reload builds new handlers that
// count into the same windows, and a zone a reload removed keeps its window,
// which the ticker goes on closing as quiet seconds.
type registry struct {
	counters atomic.Pointer[map[serverZone]*zoneCounters]
	// ticking: the first window starts the ticker, which runs until stop is
	// closed (the process's never is). Tests tick theirs by hand.
	ticking bool
	stop    chan struct{}
	started sync.Once
}

// process is the registry of the process. Its ticker starts with the first
// query in a minttl zone and is never stopped: a ticker started and stopped
// with a server instance leaked when a reload failed (caddy runs the new
// instance's OnStartup, then drops it without OnShutdown when its servers do
// not start) and left windows unclosed between reloads. One goroutine that
// wakes once a second costs nothing, and CoreDNS ends with its process.
var process = &registry{ticking: true}

// countersFor returns the counters of server and zone, creating them (and,
// for the first, starting the ticker) the first time.
func (r *registry) countersFor(server, zone string) *zoneCounters {
	return loadOrStore(&r.counters, serverZone{server, zone}, func() *zoneCounters {
		if r.ticking {
			r.started.Do(func() { go r.run() })
		}
		return &zoneCounters{
			serverZone:    serverZone{server, zone},
			responses:     raisedResponses.WithLabelValues(server, zone),
			zero:          zeroTTLRecords.WithLabelValues(server, zone),
			zeroResponses: zeroTTLResponses.WithLabelValues(server, zone),
			window:        &window{observe: queriesPerSecond.WithLabelValues(server, zone)},
		}
	})
}

// tick closes every window of the registry: seconds ended since the last
// tick, none for a ticker that woke before its second ended.
func (r *registry) tick(seconds int64) {
	if seconds < 1 {
		return
	}
	if all := r.counters.Load(); all != nil {
		for _, z := range *all {
			z.window.close(seconds)
		}
	}
}

// run ticks r once a second until r.stop is closed. Its first tick comes at
// the turn of a wall-clock second, so that replicas count the same seconds;
// every one after it k seconds later on the monotonic clock, which a wall
// clock stepped (NTP, a resumed VM) does not move.
func (r *registry) run() {
	first := time.Now()
	first = first.Add(untilNextSecond(first)) // keeps first's monotonic reading
	timer := time.NewTimer(time.Until(first))
	defer timer.Stop()
	ticked := int64(0)
	for {
		select {
		case <-r.stop:
			return
		case <-timer.C:
		}
		seconds, wait := schedule(ticked, time.Since(first))
		r.tick(seconds)
		ticked += seconds
		timer.Reset(wait)
	}
}

// schedule returns, for a ticker that has closed ticked seconds and woke
// elapsed after its first tick was due, how many seconds have ended since it
// last ticked (more than 1 when it woke late) and how long to sleep until the
// next tick is due. Tick k (from 0) is due k seconds after the first.
func schedule(ticked int64, elapsed time.Duration) (seconds int64, wait time.Duration) {
	if elapsed < 0 {
		return 0, -elapsed
	}
	due := int64(elapsed/time.Second) + 1
	return due - ticked, time.Duration(due)*time.Second - elapsed
}

// untilNextSecond is how long from now until the next wall-clock second
// begins, a millisecond into it.
func untilNextSecond(now time.Time) time.Duration {
	return now.Truncate(time.Second).Add(time.Second + time.Millisecond).Sub(now)
}
