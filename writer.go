package minttl

import (
	"errors"

	"github.com/miekg/dns"
)

// ResponseWriter raises the TTLs of the response written through it.
type ResponseWriter struct {
	dns.ResponseWriter
	*MinTTL

	counters *zoneCounters // of the query's server and zone
	qname    string
}

var errNilResponse = errors.New("minttl: response message is nil")

// WriteMsg implements the dns.ResponseWriter interface. res is never modified:
// cache and other plugins may still hold it or its records.
func (w *ResponseWriter) WriteMsg(res *dns.Msg) error {
	if res == nil {
		return errNilResponse
	}
	if raised := w.raise(res); raised != nil {
		res = raised
	}
	return w.ResponseWriter.WriteMsg(res)
}

// level is a floor and the TTL that records below it are raised to. A zero
// floor raises nothing.
type level struct {
	floor, target uint32
	// minimum: an SOA at this level is negative data whose MINIMUM field is
	// its negative-caching TTL (RFC 2308 §4); resolvers cache the negative
	// answer for the smaller of the two (§5), so MINIMUM is raised with the TTL.
	minimum bool
}

// aim sets the target: the floor plus the client's jitter for it.
func (l *level) aim(key uint64, now int64, jitter uint32) {
	if l.floor == 0 {
		return
	}
	l.target = l.floor + jitterFor(key, now, l.floor, jitter)
}

// clientTTL is how long a client caches rr, whose TTL is ttl: that, or for
// an SOA whose MINIMUM is raised at this level, the smaller of ttl and MINIMUM.
func (l level) clientTTL(rr dns.RR, ttl uint32) uint32 {
	if l.minimum {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(ttl, soa.Minttl)
		}
	}
	return ttl
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
	if !ok {
		return nil
	}
	ns := sc.inAuthority(res.Ns)
	if !needsRaise(res.Answer, sc) && !needsRaise(res.Ns, ns) && !needsRaise(res.Extra, sc) {
		return nil
	}
	key := clientKey(w.RemoteAddr(), w.qname)
	now := w.clock().Unix()
	sc.positive.aim(key, now, w.Jitter)
	ns.positive = sc.positive
	ns.negative.aim(key, now, w.NegativeJitter)

	var c copier
	c.start(res)
	c.out.msg.Answer = c.raiseSection(res.Answer, sc)
	c.out.msg.Ns = c.raiseSection(res.Ns, ns)
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

// inAuthority is the scope of the authority section ns. Its SOA gets its
// MINIMUM raised with its TTL, unless an RRSIG covers the SOA: the signature
// covers MINIMUM, and a changed one would make validators reject the answer.
// Then only the TTLs are raised, which RFC 2308 §5 resolvers cap at MINIMUM.
func (sc scope) inAuthority(ns []dns.RR) scope {
	sc.authority = true
	sc.negative.minimum = sc.negative.floor > 0 && !soaSigned(ns)
	return sc
}

func soaSigned(rrs []dns.RR) bool {
	for _, rr := range rrs {
		if sig, ok := rr.(*dns.RRSIG); ok && sig.TypeCovered == dns.TypeSOA {
			return true
		}
	}
	return false
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

// needsRaise reports whether raising changes a record of rrs: one a client
// caches for less than its floor, in an RRset without a TTL above 2^31-1.
// Only a section that holds both kinds needs its RRsets told apart.
func needsRaise(rrs []dns.RR, sc scope) bool {
	for _, rr := range rrs {
		lv := sc.levelOf(rrsetType(rr))
		if lv.clientTTL(rr, rr.Header().Ttl) < lv.floor {
			return !aboveMaxTTL(rrs) || lowInSoundRRset(rrs, sc)
		}
	}
	return false
}

func aboveMaxTTL(rrs []dns.RR) bool {
	for _, rr := range rrs {
		if rr.Header().Ttl > maxTTL {
			return true
		}
	}
	return false
}

// lowInSoundRRset reports whether a record of rrs that a client caches for
// less than its floor is in an RRset without a TTL above 2^31-1.
func lowInSoundRRset(rrs []dns.RR, sc scope) bool {
	sets := rrsetsOf(rrs, sc)
	for i, rr := range rrs {
		ttl := rr.Header().Ttl
		lv := sc.levelOf(rrsetType(rr))
		if lv.clientTTL(rr, ttl) < lv.floor && sets.spanOf(i, lv, ttl).highest <= maxTTL {
			return true
		}
	}
	return false
}

// raiseSection returns rrs, or a copy of it in which every eligible RRset
// that a client caches for less than its floor carries one TTL: the larger of
// target and the RRset's highest TTL, so no record is lowered (RFC 2181 §5.2).
// Only the records that change are copied.
func (c *copier) raiseSection(rrs []dns.RR, sc scope) []dns.RR {
	out, copied := rrs, false
	sets := rrsetsOf(rrs, sc)
	for i, rr := range rrs {
		lv := sc.levelOf(rrsetType(rr))
		if lv.floor == 0 {
			continue
		}
		ttl := rr.Header().Ttl
		if ttl == 0 {
			c.zero++
		}
		set := span{lv.clientTTL(rr, ttl), ttl} // in a uniform section, the record is its RRset's span
		if !sets.uniform {
			set = sets.spanOf(i, lv, ttl)
		}
		next, raise := lv.raised(set)
		if !raise {
			continue
		}
		minimum := lv.minimumRaised(rr)
		if next == ttl && minimum == 0 {
			continue
		}
		if !copied {
			out, copied = c.section(rrs), true
		}
		out[i] = c.withTTL(rr, next, minimum, len(rrs)-i)
		c.count(rr.Header().Rrtype)
	}
	return out
}

// span is what raising needs to know of an RRset: the lowest TTL a client
// caches one of its records for, and its highest TTL.
type span struct{ lowest, highest uint32 }

// raised returns the TTL the RRset spanning set leaves with, or false when
// it is left as it came: nothing in it below the floor, or a TTL above 2^31-1
// (RFC 2181 §8 reads such a TTL as 0: raising the others to it would spread
// the error).
func (l level) raised(set span) (uint32, bool) {
	if set.lowest >= l.floor || set.highest > maxTTL {
		return 0, false
	}
	return max(l.target, set.highest), true
}

// minimumRaised is the MINIMUM rr leaves with when its RRset is raised at
// this level: the target for an SOA whose MINIMUM is below it, or 0 when rr
// keeps its own. A MINIMUM kept between the floor and the target (the
// kubernetes plugin's ttl, given as the negative floor too) would cap every
// client's negative caching at it, in step, whatever its jitter.
func (l level) minimumRaised(rr dns.RR) uint32 {
	if l.minimum {
		if soa, ok := rr.(*dns.SOA); ok && soa.Minttl < l.target {
			return l.target
		}
	}
	return 0
}

// rrsets tells which RRset each record of a section belongs to. Most
// sections carry one TTL for every eligible record (cache hands out one TTL
// for a whole message), and then no RRsets need to be told apart. Small
// mixed sections are compared record by record; larger ones are grouped
// once, so that the work grows with the section, not with its square (a
// 64 KB TCP answer holds 4,000 A records).
type rrsets struct {
	rrs     []dns.RR
	uniform bool
	grouped map[rrsetKey]span
}

// smallSection is the most records compared pair by pair: 256 comparisons.
const smallSection = 16

func rrsetsOf(rrs []dns.RR, sc scope) rrsets {
	sets := rrsets{rrs: rrs, uniform: sameTTL(rrs, sc)}
	if !sets.uniform && len(rrs) > smallSection {
		sets.grouped = group(rrs, sc)
	}
	return sets
}

// spanOf is the span of the RRset of rrs[i], whose level is lv and TTL ttl.
func (s *rrsets) spanOf(i int, lv level, ttl uint32) span {
	rr := s.rrs[i]
	switch {
	case s.uniform:
		return span{lv.clientTTL(rr, ttl), ttl}
	case s.grouped != nil:
		return s.grouped[keyOf(rr)]
	}
	h, t := rr.Header(), rrsetType(rr)
	set := span{lowest: ^uint32(0)}
	for _, o := range s.rrs {
		if sameRRset(h, t, o) {
			ttl := o.Header().Ttl
			set = set.with(lv.clientTTL(o, ttl), ttl)
		}
	}
	return set
}

func (s span) with(clientTTL, ttl uint32) span {
	return span{min(s.lowest, clientTTL), max(s.highest, ttl)}
}

// rrsetKey names an RRset of a section: owner names compare without case.
type rrsetKey struct {
	name          string
	class, rrtype uint16
}

func keyOf(rr dns.RR) rrsetKey {
	h := rr.Header()
	return rrsetKey{lowerASCII(h.Name), h.Class, rrsetType(rr)}
}

// group returns the span of every eligible RRset of rrs.
func group(rrs []dns.RR, sc scope) map[rrsetKey]span {
	sets := map[rrsetKey]span{}
	for _, rr := range rrs {
		lv := sc.levelOf(rrsetType(rr))
		if lv.floor == 0 {
			continue
		}
		k, ttl := keyOf(rr), rr.Header().Ttl
		set, seen := sets[k]
		if !seen {
			set.lowest = ^uint32(0)
		}
		sets[k] = set.with(lv.clientTTL(rr, ttl), ttl)
	}
	return sets
}

// sameTTL reports whether every eligible record of rrs has the same TTL.
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

// sameRRset reports whether rr belongs to the RRset of type t that h heads.
// Records of one type have one level in a section, so rr is eligible when h is.
func sameRRset(h *dns.RR_Header, t uint16, rr dns.RR) bool {
	o := rr.Header()
	return o.Class == h.Class && rrsetType(rr) == t && sameName(o.Name, h.Name)
}

// sameName reports whether a and b are one name. DNS compares names without
// the case of ASCII letters, and of nothing else (RFC 4343): "k" and the
// Kelvin sign, which Unicode folds together, are two names. Names from the
// wire hold no byte above 0x7E (miekg/dns escapes them as \DDD), but records
// a plugin built may.
func sameName(a, b string) bool { return a == b || equalFoldASCII(a, b) }

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerByte(a[i]) != lowerByte(b[i]) {
			return false
		}
	}
	return true
}

// lowerASCII is name with its ASCII letters in lower case; name itself,
// without allocating, when it has none in upper case.
func lowerASCII(name string) string {
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			lower := []byte(name)
			for j := i; j < len(lower); j++ {
				lower[j] = lowerByte(lower[j])
			}
			return string(lower)
		}
	}
	return name
}

func lowerByte(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}
