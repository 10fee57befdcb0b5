package minttl

import (
	"maps"
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

// report counts what one raised response's copier did.
func (w *ResponseWriter) report(c *copier) {
	z := countersFor(w.server, w.zone)
	z.responses.Inc()
	if c.zero > 0 {
		z.zero.Add(float64(c.zero))
	}
	for i := range c.kinds {
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
	responses, zero prometheus.Counter
	byType          atomic.Pointer[map[uint16]prometheus.Counter]
}

var (
	allCounters atomic.Pointer[map[serverZone]*zoneCounters]
	countersMu  sync.Mutex
)

func countersFor(server, zone string) *zoneCounters {
	key := serverZone{server, zone}
	if m := allCounters.Load(); m != nil {
		if z, ok := (*m)[key]; ok {
			return z
		}
	}
	countersMu.Lock()
	defer countersMu.Unlock()
	next := map[serverZone]*zoneCounters{}
	if old := allCounters.Load(); old != nil {
		if z, ok := (*old)[key]; ok {
			return z
		}
		maps.Copy(next, *old)
	}
	z := &zoneCounters{
		serverZone: key,
		responses:  raisedResponses.WithLabelValues(server, zone),
		zero:       zeroTTLRecords.WithLabelValues(server, zone),
	}
	next[key] = z
	allCounters.Store(&next)
	return z
}

func (z *zoneCounters) records(t uint16) prometheus.Counter {
	if m := z.byType.Load(); m != nil {
		if c, ok := (*m)[t]; ok {
			return c
		}
	}
	countersMu.Lock()
	defer countersMu.Unlock()
	next := map[uint16]prometheus.Counter{}
	if old := z.byType.Load(); old != nil {
		if c, ok := (*old)[t]; ok {
			return c
		}
		maps.Copy(next, *old)
	}
	next[t] = raisedRecords.WithLabelValues(z.server, z.zone, typeName(t))
	z.byType.Store(&next)
	return next[t]
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return dns.Type(t).String()
}
