package minttl

import (
	"maps"
	"math"
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

	// A stale answer's share of the zone's queries tells a failing backend
	// from a healthy serve_stale, which answers the first query after each
	// expiry stale; records per answer vary, answers do not.
	zeroTTLResponses = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "minttl",
		Name:      "zero_ttl_responses_total",
		Help:      "Counter of responses that reached minttl with a record of TTL 0.",
	}, []string{"server", "zone"})

	// A herd sends as many queries in five minutes as an even load: only
	// how they fall into seconds tells them apart. A histogram of the
	// per-second count, observed once a second, sums across replicas and
	// survives missed scrapes, where a peak gauge would not.
	queriesPerSecond = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace:                   plugin.Namespace,
		Subsystem:                   "minttl",
		Name:                        "queries_per_second",
		Help:                        "Histogram of the number of queries in the zone in each second, quiet seconds as 0.",
		Buckets:                     perSecondBuckets(),
		NativeHistogramBucketFactor: plugin.NativeHistogramBucketFactor,
	}, []string{"server", "zone"})
)

// perSecondBuckets are √2 apart from 1 to 131,072 (2, 2.828, 4, 5.657, ...):
// the herd factor's percentile is interpolated within a bucket, and doubling
// buckets read an even load at up to twice its busiest second.
func perSecondBuckets() []float64 {
	buckets := make([]float64, 35)
	for i := range buckets {
		b := math.Ldexp(1, i/2)
		if i%2 == 1 {
			b = math.Round(b*math.Sqrt2*1000) / 1000
		}
		buckets[i] = b
	}
	return buckets
}

// count counts a query of server and zone into the second that is open
// and returns the counters of server and zone.
func (m *MinTTL) count(server, zone string) *zoneCounters {
	z := m.countersFor(server, zone)
	z.window.count.Add(1)
	return z
}

// report counts what one raised response's copier did.
func (w *ResponseWriter) report(c *copier) {
	z := w.counters
	z.responses.Inc()
	if c.zero > 0 {
		z.zero.Add(float64(c.zero))
		z.zeroResponses.Inc()
	}
	for i := 0; i < c.kinds; i++ {
		z.records(c.types[i]).Add(float64(c.raised[i]))
	}
	for t, n := range c.other {
		z.records(t).Add(float64(n))
	}
}

// Looking a counter up in a CounterVec hashes its label values and takes a read
// lock, on every call. The label values a server sees are few and fixed, so
// counters are resolved once and kept in maps that are replaced, never
// changed: the hot path reads them without a lock. A mutex serializes only the
// first sight of a new label value.

type serverZone struct{ server, zone string }

// zoneCounters are the counters of one server and zone.
type zoneCounters struct {
	serverZone
	responses, zero, zeroResponses prometheus.Counter
	byType                         atomic.Pointer[map[uint16]prometheus.Counter]
	window                         *window
}

// countersMu serializes the first sight of a label value, in every registry.
var countersMu sync.Mutex

// countersFor returns the counters of server and zone. A handler serves one
// server and, mostly, one zone: it keeps the counters it used last and looks
// them up again only when they change.
func (m *MinTTL) countersFor(server, zone string) *zoneCounters {
	if z := m.counters.Load(); z != nil && z.server == server && z.zone == zone {
		return z
	}
	r := m.registry
	if r == nil {
		r = process
	}
	z := r.countersFor(server, zone)
	m.counters.Store(z)
	return z
}

func (z *zoneCounters) records(t uint16) prometheus.Counter {
	if !named(t) {
		t = dns.TypeNone // one counter, "other", for every type without a name of its own
	}
	return loadOrStore(&z.byType, t, func() prometheus.Counter {
		return raisedRecords.WithLabelValues(z.server, z.zone, typeLabel(t))
	})
}

// loadOrStore returns the value of key in the map *p, creating it with create
// and storing a new map holding it when key is new.
func loadOrStore[K comparable, V any](p *atomic.Pointer[map[K]V], key K, create func() V) V {
	if m := p.Load(); m != nil {
		if v, ok := (*m)[key]; ok {
			return v
		}
	}
	countersMu.Lock()
	defer countersMu.Unlock()
	next := map[K]V{}
	if old := p.Load(); old != nil {
		if v, ok := (*old)[key]; ok {
			return v
		}
		maps.Copy(next, *old)
	}
	next[key] = create()
	p.Store(&next)
	return next[key]
}

// typeLabel is the type label of records of type t. Like CoreDNS's own
// metrics (plugin/metrics/vars), it names a fixed set of types and calls every
// other one "other": whoever controls the data of a zone must not be able to
// create a series for each of the 65,536 type numbers.
func typeLabel(t uint16) string {
	if named(t) {
		return dns.TypeToString[t]
	}
	return "other"
}

// named reports whether t is one of the types CoreDNS's metrics name.
func named(t uint16) bool {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeDNSKEY, dns.TypeDS, dns.TypeMX, dns.TypeNS,
		dns.TypeNSEC, dns.TypeNSEC3, dns.TypePTR, dns.TypeRRSIG, dns.TypeSOA, dns.TypeSRV, dns.TypeTXT,
		dns.TypeHTTPS, dns.TypeSVCB, dns.TypeIXFR, dns.TypeAXFR, dns.TypeANY:
		return true
	}
	return false
}
