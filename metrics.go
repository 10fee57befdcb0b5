package minttl

import (
	"sync"
	"sync/atomic"

	"github.com/coredns/coredns/plugin"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	raisedRecords = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "minttl",
		Name:      "raised_records_total",
		Help:      "Counter of records whose TTL minttl raised.",
	}, []string{"server", "zone", "type"})

	raisedResponses = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "minttl",
		Name:      "raised_responses_total",
		Help:      "Counter of responses in which minttl raised at least one TTL.",
	}, []string{"server", "zone"})

	zeroTTLRecords = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "minttl",
		Name:      "zero_ttl_records_total",
		Help:      "Counter of records that reached minttl with TTL 0.",
	}, []string{"server", "zone"})
)

// counts tallies what one response's rewrite did, so metrics are touched once
// per response and type rather than once per record.
type counts struct {
	zero   int
	types  [4]uint16
	raised [4]int
	used   int
	other  map[uint16]int // more than len(types) distinct types: rare
}

func (n *counts) add(t uint16) {
	for i := range n.used {
		if n.types[i] == t {
			n.raised[i]++
			return
		}
	}
	if n.used < len(n.types) {
		n.types[n.used], n.raised[n.used] = t, 1
		n.used++
		return
	}
	if n.other == nil {
		n.other = make(map[uint16]int)
	}
	n.other[t]++
}

func (w *ResponseWriter) report(n *counts) {
	counter(raisedResponses, w.server, w.zone, 0).Inc()
	if n.zero > 0 {
		counter(zeroTTLRecords, w.server, w.zone, 0).Add(float64(n.zero))
	}
	for i := range n.used {
		counter(raisedRecords, w.server, w.zone, n.types[i]).Add(float64(n.raised[i]))
	}
	for t, c := range n.other {
		counter(raisedRecords, w.server, w.zone, t).Add(float64(c))
	}
}

// Looking a counter up in a CounterVec hashes the label values and takes a
// read lock on every call. The label values a server sees are few and fixed,
// so counters are resolved once and kept in a map that is replaced, never
// changed: the hot path reads it without a lock.
type counterKey struct {
	vec          *prometheus.CounterVec
	server, zone string
	rrtype       uint16 // raisedRecords only
}

var (
	counters   atomic.Pointer[map[counterKey]prometheus.Counter]
	countersMu sync.Mutex // serializes the slow path, when a new counter is resolved
)

func counter(vec *prometheus.CounterVec, server, zone string, rrtype uint16) prometheus.Counter {
	key := counterKey{vec, server, zone, rrtype}
	if m := counters.Load(); m != nil {
		if c, ok := (*m)[key]; ok {
			return c
		}
	}
	countersMu.Lock()
	defer countersMu.Unlock()
	old := counters.Load()
	next := make(map[counterKey]prometheus.Counter)
	if old != nil {
		if c, ok := (*old)[key]; ok {
			return c
		}
		for k, c := range *old {
			next[k] = c
		}
	}
	labels := []string{server, zone}
	if vec == raisedRecords {
		labels = append(labels, typeName(rrtype))
	}
	next[key] = vec.WithLabelValues(labels...)
	counters.Store(&next)
	return next[key]
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return dns.Type(t).String()
}
