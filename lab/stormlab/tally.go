package main

import (
	"math"
	"math/bits"
	"net"
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
	// seconds are the queries per wall-clock second, from the one start is
	// in: the seconds the kube-dns replicas count in (and minttl's jitter
	// reads), which a lockstep herd's queries fill a few milliseconds apart.
	seconds []atomic.Int64
	// perReplica are the queries per wall-clock second each kube-dns replica
	// got, where the proxies ask the replicas themselves (nil otherwise).
	perReplica [][]atomic.Int64
	// expired counts per 100 ms the answers whose data was older than the
	// zone's TTL when asked for: a cache answered from an expired item.
	expired []atomic.Int64
	loops   []loopTally // per proxy and name (or per node)
	// keep keeps every answer of every loop (-answers), in loopTally.seq.
	keep bool
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
	// With tally.keep: the proxy's address, its name and every answer.
	src   net.IP
	qname string
	seq   []answer
}

// newTally counts loops client loops over duration from start, and the
// queries of each of replicas kube-dns replicas (0: the clients ask others).
func newTally(start time.Time, duration time.Duration, loops, replicas int) *tally {
	n := int(duration/bin) + 1
	s := int(duration/time.Second) + 2
	t := &tally{start: start, bins: make([]atomic.Int64, n), seconds: make([]atomic.Int64, s), expired: make([]atomic.Int64, n), loops: make([]loopTally, loops)}
	for range replicas {
		t.perReplica = append(t.perReplica, make([]atomic.Int64, s))
	}
	return t
}

func (t *tally) binOf(at time.Time) int {
	return min(max(int(at.Sub(t.start)/bin), 0), len(t.bins)-1)
}

// secondOf is the index in seconds of the wall-clock second at is in.
func (t *tally) secondOf(at time.Time) int {
	return min(max(int(at.Unix()-t.start.Unix()), 0), len(t.seconds)-1)
}

// toReplica counts a query sent to replica r at the instant at.
func (t *tally) toReplica(r int, at time.Time) {
	if r < len(t.perReplica) {
		t.perReplica[r][t.secondOf(at)].Add(1)
	}
}

// answer is what a client learned from one query.
type answer struct {
	at     time.Time     // when the query left
	ttl    uint32        // the lowest TTL in the answer section
	held   time.Duration // how long the client uses it
	stamp  time.Time     // when the zone made the data (zero: unknown)
	failed bool
	// Where the query went and how long its answer took (for -answers).
	replica int
	rtt     time.Duration
}

// record counts one query of loop; validity is how long the zone's data is
// valid after it was made (the zone's TTL).
func (t *tally) record(loop int, a answer, validity time.Duration) {
	at := a.at.Sub(t.start)
	t.bins[t.binOf(a.at)].Add(1)
	t.seconds[t.secondOf(a.at)].Add(1)
	if !a.failed && !a.stamp.IsZero() && a.at.Sub(a.stamp) >= validity {
		t.expired[t.binOf(a.at)].Add(1)
	}
	l := &t.loops[loop]
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.queries == 0 {
		l.first = at
	}
	l.queries++
	if t.keep {
		l.seq = append(l.seq, a)
	}
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

func binCounts(bins []atomic.Int64) []int {
	out := make([]int, len(bins))
	for i := range bins {
		out[i] = int(bins[i].Load())
	}
	return out
}
