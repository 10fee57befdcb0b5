package minttl

import (
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
	raisedResponses.WithLabelValues(w.server, w.zone).Inc()
	if n.zero > 0 {
		zeroTTLRecords.WithLabelValues(w.server, w.zone).Add(float64(n.zero))
	}
	for i := range n.used {
		raisedRecords.WithLabelValues(w.server, w.zone, typeName(n.types[i])).Add(float64(n.raised[i]))
	}
	for t, c := range n.other {
		raisedRecords.WithLabelValues(w.server, w.zone, typeName(t)).Add(float64(c))
	}
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return dns.Type(t).String()
}
