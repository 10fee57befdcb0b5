package main

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

const bin = 100 * time.Millisecond

// tally counts the answers one side of a tier received (the proxies, or the
// node caches behind the Service) without keeping each query: a TTL-0 storm
// sends millions.
type tally struct {
	start time.Time
	bins  []atomic.Int64 // queries per 100 ms since start
	loops []loopTally    // per proxy and name (or per node)
	// late counts sends by how late they left against their schedule, in
	// power-of-two buckets of microseconds; rtt counts answers the same way.
	late, rtt [40]atomic.Int64
}

// loopTally is one client loop's part; the loop's own goroutine writes it,
// except behind the Service, where several connections share a node's.
type loopTally struct {
	mu                   sync.Mutex
	first                time.Duration
	queries, failed      int
	answered, ttl0, ttl1 int
	ttlSum, heldSum      float64
	staleMax, staleSum   float64
	stamped              int
}

func newTally(start time.Time, duration time.Duration, loops int) *tally {
	return &tally{start: start, bins: make([]atomic.Int64, int(duration/bin)+1), loops: make([]loopTally, loops)}
}

// answer is what a client learned from one query.
type answer struct {
	at     time.Time     // when the query left
	ttl    uint32        // the lowest TTL in the answer section
	held   time.Duration // how long the client uses it
	stamp  time.Time     // when the zone made the data (zero: unknown)
	failed bool
}

// record counts one query of loop; validity is how long the zone's data is
// valid after it was made (the zone's TTL).
func (t *tally) record(loop int, a answer, validity time.Duration) {
	at := a.at.Sub(t.start)
	t.bins[min(max(int(at/bin), 0), len(t.bins)-1)].Add(1)
	l := &t.loops[loop]
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.queries == 0 {
		l.first = at
	}
	l.queries++
	if a.failed {
		l.failed++
		return
	}
	l.answered++
	l.ttlSum += float64(a.ttl)
	l.heldSum += math.Max(a.held.Seconds(), 1)
	if a.ttl == 0 {
		l.ttl0++
	}
	if a.ttl <= 1 {
		l.ttl1++
	}
	if !a.stamp.IsZero() {
		stale := max(a.at.Add(a.held).Sub(a.stamp.Add(validity)).Seconds(), 0)
		l.staleMax = max(l.staleMax, stale)
		l.staleSum += stale
		l.stamped++
	}
}

// timing counts how late a send left and how long its answer took.
func (t *tally) timing(late, rtt time.Duration) {
	t.late[bucket(late)].Add(1)
	t.rtt[bucket(rtt)].Add(1)
}

func bucket(d time.Duration) int {
	return min(bits.Len64(uint64(max(d.Microseconds(), 0))), 39)
}

// quantile is the upper bound of the bucket holding quantile q of h.
func quantile(h *[40]atomic.Int64, q float64) time.Duration {
	total := int64(0)
	for i := range h {
		total += h[i].Load()
	}
	seen := int64(0)
	for i := range h {
		seen += h[i].Load()
		if total > 0 && float64(seen) >= q*float64(total) {
			return time.Duration(1<<i) * time.Microsecond
		}
	}
	return 0
}

func (t *tally) counts() []int {
	out := make([]int, len(t.bins))
	for i := range t.bins {
		out[i] = int(t.bins[i].Load())
	}
	return out
}
