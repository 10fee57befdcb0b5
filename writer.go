package minttl

import (
	"strings"

	"github.com/miekg/dns"
)

// ResponseWriter raises the TTLs of the response written through it.
type ResponseWriter struct {
	dns.ResponseWriter
	*MinTTL

	server string
	zone   string
	qname  string
}

// WriteMsg implements the dns.ResponseWriter interface. res is never modified:
// cache and other plugins may still hold it or its records.
func (w *ResponseWriter) WriteMsg(res *dns.Msg) error {
	if raised := w.raise(res); raised != nil {
		res = raised
	}
	return w.ResponseWriter.WriteMsg(res)
}

// scope says which records of a response may be raised, and to what floor.
type scope struct {
	floor uint32
	types []uint16 // empty: every type
	soa   bool     // negative answer: only the SOA (and its RRSIGs)
}

// raise returns a copy of res with raised TTLs, or nil when nothing needs to change.
func (w *ResponseWriter) raise(res *dns.Msg) *dns.Msg {
	sc, ok := w.scopeOf(res)
	if !ok || !(needsRaise(res.Answer, sc) || needsRaise(res.Ns, sc) || needsRaise(res.Extra, sc)) {
		return nil
	}
	key := clientKey(w.RemoteAddr(), w.qname)
	target := sc.floor + jitterFor(key, w.clock().Unix(), sc.floor, w.Jitter)

	c := &copier{msg: *res}
	c.msg.Answer = c.raiseSection(res.Answer, sc, target)
	c.msg.Ns = c.raiseSection(res.Ns, sc, target)
	c.msg.Extra = c.raiseSection(res.Extra, sc, target)
	w.report(c)
	return &c.msg
}

// scopeOf classifies res. Signed responses are left alone: the TSIG MAC or
// SIG(0) signature covers the TTLs.
func (w *ResponseWriter) scopeOf(res *dns.Msg) (scope, bool) {
	if isSigned(res) {
		return scope{}, false
	}
	switch {
	case res.Rcode == dns.RcodeSuccess && len(res.Answer) > 0:
		return scope{floor: w.Floor, types: w.Types}, true
	case w.Negative > 0 && (res.Rcode == dns.RcodeNameError || res.Rcode == dns.RcodeSuccess):
		return scope{floor: w.Negative, soa: true}, true
	}
	return scope{}, false
}

func isSigned(res *dns.Msg) bool {
	if len(res.Extra) == 0 {
		return false
	}
	t := res.Extra[len(res.Extra)-1].Header().Rrtype
	return t == dns.TypeTSIG || t == dns.TypeSIG
}

// eligible reports whether rr may be raised in scope sc, and the type of the
// RRset it belongs to (an RRSIG belongs to the RRset it covers).
func eligible(rr dns.RR, sc scope) (uint16, bool) {
	t := rr.Header().Rrtype
	switch t {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeSIG:
		return t, false
	case dns.TypeRRSIG:
		t = rr.(*dns.RRSIG).TypeCovered
	}
	if sc.soa {
		return t, t == dns.TypeSOA
	}
	if len(sc.types) == 0 {
		return t, true
	}
	for _, allowed := range sc.types {
		if t == allowed {
			return t, true
		}
	}
	return t, false
}

func needsRaise(rrs []dns.RR, sc scope) bool {
	for _, rr := range rrs {
		if _, ok := eligible(rr, sc); ok && rr.Header().Ttl < sc.floor {
			return true
		}
	}
	return false
}

// raiseSection returns rrs, or a copy of it in which every eligible RRset
// holding a TTL below the floor carries one TTL: the larger of target and the
// RRset's highest TTL, so no record is lowered (RFC 2181 §5.2). Only the
// records whose TTL changes are copied.
func (c *copier) raiseSection(rrs []dns.RR, sc scope, target uint32) []dns.RR {
	out, copied := rrs, false
	uniform := sameTTL(rrs, sc)
	for i, rr := range rrs {
		t, ok := eligible(rr, sc)
		if !ok {
			continue
		}
		ttl := rr.Header().Ttl
		if ttl == 0 {
			c.zero++
		}
		next := ttl
		switch {
		case uniform:
			if ttl < sc.floor {
				next = target
			}
		default:
			next = rrsetTTL(rrs, i, t, sc, target)
		}
		if next == ttl {
			continue
		}
		if !copied {
			out, copied = c.section(rrs), true
		}
		out[i] = c.withTTL(rr, next, len(rrs)-i)
		c.count(rr.Header().Rrtype)
	}
	return out
}

// sameTTL reports whether every eligible record of rrs has the same TTL, the
// usual case (cache hands out one TTL for a whole message), in which RRsets
// need not be told apart.
func sameTTL(rrs []dns.RR, sc scope) bool {
	first, seen := uint32(0), false
	for _, rr := range rrs {
		if _, ok := eligible(rr, sc); !ok {
			continue
		}
		ttl := rr.Header().Ttl
		if seen && ttl != first {
			return false
		}
		first, seen = ttl, true
	}
	return true
}

// rrsetTTL returns the TTL the RRset of rrs[i] (of type t) leaves with.
func rrsetTTL(rrs []dns.RR, i int, t uint16, sc scope, target uint32) uint32 {
	h := rrs[i].Header()
	lowest, highest := h.Ttl, h.Ttl
	for _, rr := range rrs {
		o := rr.Header()
		if o.Class != h.Class {
			continue
		}
		if ot, ok := eligible(rr, sc); !ok || ot != t || !sameName(o.Name, h.Name) {
			continue
		}
		lowest, highest = min(lowest, o.Ttl), max(highest, o.Ttl)
	}
	// An RRset holding a TTL above 2^31-1 is left as it came (RFC 2181 §8
	// reads such a TTL as 0): raising the others to it would spread the error.
	if lowest >= sc.floor || highest > maxTTL {
		return h.Ttl
	}
	return max(target, highest)
}

func sameName(a, b string) bool { return a == b || strings.EqualFold(a, b) }
