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

// level is a floor and the TTL that records below it are raised to. A zero
// floor raises nothing.
type level struct{ floor, target uint32 }

// aim sets the target: the floor plus the client's jitter for it.
func (l *level) aim(key uint64, now int64, jitter uint32) {
	if l.floor == 0 {
		return
	}
	l.target = l.floor + jitterFor(key, now, l.floor, jitter)
}

// scope says which records of one section of a response may be raised, and to what.
type scope struct {
	positive level    // records of a positive answer
	types    []uint16 // positive records only of these types; empty: every type
	negative level    // the SOA in the authority section (negative data, RFC 2308)
	// authority is set for the authority section, where the SOA, NSEC and
	// NSEC3 records are negative data (proof that a name or type does not
	// exist, as in a NODATA answer behind a CNAME) even in a positive answer.
	authority bool
}

// raise returns a copy of res with raised TTLs, or nil when nothing needs to change.
func (w *ResponseWriter) raise(res *dns.Msg) *dns.Msg {
	sc, ok := w.scopeOf(res)
	if !ok || !(needsRaise(res.Answer, sc) || needsRaise(res.Ns, sc.inAuthority()) || needsRaise(res.Extra, sc)) {
		return nil
	}
	key := clientKey(w.RemoteAddr(), w.qname)
	now := w.clock().Unix()
	sc.positive.aim(key, now, w.Jitter)
	sc.negative.aim(key, now, w.NegativeJitter)

	var c copier
	c.start(res)
	c.out.msg.Answer = c.raiseSection(res.Answer, sc)
	c.out.msg.Ns = c.raiseSection(res.Ns, sc.inAuthority())
	c.out.msg.Extra = c.raiseSection(res.Extra, sc)
	w.report(&c)
	return &c.out.msg
}

// scopeOf classifies res: a positive answer (NOERROR with answer records), a
// negative one (NXDOMAIN, or NOERROR without answer records) when negative is
// set, or neither. Signed responses are left alone: the TSIG MAC or SIG(0)
// signature covers the TTLs.
func (w *ResponseWriter) scopeOf(res *dns.Msg) (scope, bool) {
	if isSigned(res) {
		return scope{}, false
	}
	negative := level{floor: w.Negative}
	if res.Rcode == dns.RcodeSuccess && len(res.Answer) > 0 {
		return scope{positive: level{floor: w.Floor}, types: w.Types, negative: negative}, true
	}
	if w.Negative != 0 && (res.Rcode == dns.RcodeNameError || res.Rcode == dns.RcodeSuccess) {
		return scope{negative: negative}, true
	}
	return scope{}, false
}

func (sc scope) inAuthority() scope {
	sc.authority = true
	return sc
}

func isSigned(res *dns.Msg) bool {
	if len(res.Extra) == 0 {
		return false
	}
	t := res.Extra[len(res.Extra)-1].Header().Rrtype
	return t == dns.TypeTSIG || t == dns.TypeSIG
}

// rrsetType is the type of the RRset rr belongs to: an RRSIG goes with the
// type it covers. (A record of type RRSIG that is not a *dns.RRSIG, such as a
// hand-built *dns.RFC3597, covers no type we can tell: it is its own RRset.)
func rrsetType(rr dns.RR) uint16 {
	if sig, ok := rr.(*dns.RRSIG); ok {
		return sig.TypeCovered
	}
	return rr.Header().Rrtype
}

// levelOf returns the level that the records of an RRset of type t are
// raised at in this scope.
func (sc scope) levelOf(t uint16) level {
	switch t {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeSIG:
		return level{}
	case dns.TypeSOA:
		if sc.authority {
			return sc.negative
		}
	case dns.TypeNSEC, dns.TypeNSEC3:
		if sc.authority {
			return level{} // negative data that negative never raises: see README
		}
	}
	if len(sc.types) > 0 && !typeIn(t, sc.types) {
		return level{}
	}
	return sc.positive
}

func typeIn(t uint16, types []uint16) bool {
	for _, allowed := range types {
		if t == allowed {
			return true
		}
	}
	return false
}

// needsRaise reports whether raising changes a record of rrs: one below its
// floor, in an RRset without a TTL above 2^31-1.
func needsRaise(rrs []dns.RR, sc scope) bool {
	for i, rr := range rrs {
		t := rrsetType(rr)
		if rr.Header().Ttl < sc.levelOf(t).floor && !spoiled(rrs, i, t) {
			return true
		}
	}
	return false
}

// raiseSection returns rrs, or a copy of it in which every eligible RRset
// holding a TTL below the floor carries one TTL: the larger of target and the
// RRset's highest TTL, so no record is lowered (RFC 2181 §5.2). Only the
// records whose TTL changes are copied.
func (c *copier) raiseSection(rrs []dns.RR, sc scope) []dns.RR {
	out, copied := rrs, false
	uniform := sameTTL(rrs, sc)
	for i, rr := range rrs {
		t := rrsetType(rr)
		lv := sc.levelOf(t)
		if lv.floor == 0 {
			continue
		}
		ttl := rr.Header().Ttl
		if ttl == 0 {
			c.zero++
		}
		next := ttl
		switch {
		case uniform:
			if ttl < lv.floor {
				next = lv.target
			}
		default:
			next = rrsetTTL(rrs, i, t, lv)
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
		if sc.levelOf(rrsetType(rr)).floor == 0 {
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
func rrsetTTL(rrs []dns.RR, i int, t uint16, lv level) uint32 {
	h := rrs[i].Header()
	lowest, highest := h.Ttl, h.Ttl
	for _, rr := range rrs {
		if sameRRset(h, t, rr) {
			lowest, highest = min(lowest, rr.Header().Ttl), max(highest, rr.Header().Ttl)
		}
	}
	// An RRset holding a TTL above 2^31-1 is left as it came (RFC 2181 §8
	// reads such a TTL as 0): raising the others to it would spread the error.
	if lowest >= lv.floor || highest > maxTTL {
		return h.Ttl
	}
	return max(lv.target, highest)
}

// spoiled reports whether the RRset of rrs[i] (of type t) holds a TTL above
// 2^31-1, which leaves it as it came.
func spoiled(rrs []dns.RR, i int, t uint16) bool {
	h := rrs[i].Header()
	for _, rr := range rrs {
		if rr.Header().Ttl > maxTTL && sameRRset(h, t, rr) {
			return true
		}
	}
	return false
}

// sameRRset reports whether rr belongs to the RRset of type t that h heads.
// Records of one type have one level in a section, so rr is eligible when h is.
func sameRRset(h *dns.RR_Header, t uint16, rr dns.RR) bool {
	o := rr.Header()
	return o.Class == h.Class && rrsetType(rr) == t && sameName(o.Name, h.Name)
}

func sameName(a, b string) bool { return a == b || strings.EqualFold(a, b) }
