// Package minttl is a CoreDNS plugin that raises decayed TTLs in outgoing answers
// to a floor plus a per-client jitter, so that clients which re-resolve when a
// TTL runs out stop doing so in synchronized storms.
package minttl

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"

	"github.com/miekg/dns"
)

// MinTTL is the plugin handler. Its fields are set by setup and never change
// while serving, so the hot path reads them without locks.
type MinTTL struct {
	Next  plugin.Handler
	Zones []string

	// Floor is the TTL, in seconds, below which a record in a positive answer is raised.
	Floor uint32
	// Jitter is the largest number of seconds added on top of the floor.
	Jitter uint32
	// Types limits raising to these RR types; empty means every type.
	Types []uint16
	// Negative is the floor for the SOA of NXDOMAIN and NODATA answers (also
	// behind a CNAME); 0 leaves them alone.
	Negative uint32
	// NegativeJitter is the largest number of seconds added on top of Negative.
	NegativeJitter uint32
	// ObserveOnly counts queries and changes no answer.
	ObserveOnly bool

	// now is the clock; tests pin it.
	now func() time.Time
	// counters are the counters this handler used last.
	counters atomic.Pointer[zoneCounters]
	// registry holds the counters this handler counts into: the process's
	// (nil) or, in tests, one of their own.
	registry *registry
}

// ServeDNS implements the plugin.Handler interface.
func (m *MinTTL) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if zone := m.zoneOf(r); zone != "" {
		z := m.count(metrics.WithServer(ctx), zone)
		if !m.ObserveOnly && mayRaise(r) {
			w = &ResponseWriter{ResponseWriter: w, MinTTL: m, counters: z, qname: r.Question[0].Name}
		}
	}
	return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
}

// zoneOf returns the minttl zone of a query, or "".
func (m *MinTTL) zoneOf(r *dns.Msg) string {
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		return ""
	}
	return matchZone(m.Zones, r.Question[0].Name)
}

// mayRaise reports whether the answer to r may be raised: not a zone transfer's.
func mayRaise(r *dns.Msg) bool {
	t := r.Question[0].Qtype
	return t != dns.TypeAXFR && t != dns.TypeIXFR
}

// clock is now, or the wall clock for a MinTTL built without setup.
func (m *MinTTL) clock() time.Time {
	if m.now == nil {
		return time.Now()
	}
	return m.now()
}

// Name implements the plugin.Handler interface.
func (m *MinTTL) Name() string { return "minttl" }

// matchZone returns the longest of zones that holds qname, or "". It is
// plugin.Zones.Matches without the allocations of dns.IsSubDomain: zones are
// fully qualified by setup, so a case-insensitive suffix match on a label
// boundary decides.
func matchZone(zones []string, qname string) string {
	zone := ""
	for _, z := range zones {
		if len(z) > len(zone) && inZone(qname, z) {
			zone = z
		}
	}
	return zone
}

func inZone(qname, zone string) bool {
	if zone == "." {
		return true
	}
	cut := len(qname) - len(zone)
	if cut < 0 || !sameName(qname[cut:], zone) {
		return false
	}
	if cut == 0 {
		return true
	}
	if qname[cut-1] != '.' {
		return false
	}
	// The dot ends a label only if it is not escaped (an odd run of backslashes).
	backslashes := 0
	for i := cut - 2; i >= 0 && qname[i] == '\\'; i-- {
		backslashes++
	}
	return backslashes%2 == 0
}
