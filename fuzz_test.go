package minttl

import (
	"context"
	"math"
	"math/rand"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/cache"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
)

// FuzzWriter feeds arbitrary wire-format responses, client addresses and
// configurations through minttl and checks the contract on every input. Seeds
// live in testdata/fuzz/FuzzWriter; make fuzz runs the fuzzer.
func FuzzWriter(f *testing.F) {
	for _, m := range seedResponses() {
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire, []byte{10, 244, 0, 7}, uint32(30), uint32(6), uint32(0), uint16(0), int64(1_790_000_000))
		f.Add(wire, []byte{10, 244, 0, 8}, uint32(30), uint32(6), uint32(10), uint16(0), int64(1_790_000_000))
	}
	f.Fuzz(func(t *testing.T, wire, ip []byte, floor, jitter, negative uint32, onlyType uint16, now int64) {
		res := new(dns.Msg)
		if res.Unpack(wire) != nil || len(res.Question) == 0 {
			return
		}
		m := &MinTTL{
			Zones:    []string{"."},
			Floor:    floor%maxFloor + 1,
			Jitter:   jitter % (maxFloor + 1),
			Negative: negative % (maxFloor + 1),
			now:      func() time.Time { return time.Unix(now, 0) },
		}
		m.NegativeJitter = uint32(uint64(m.Jitter) * uint64(m.Negative) / uint64(m.Floor))
		if onlyType != 0 {
			m.Types = []uint16{onlyType}
		}
		before := res.Copy()
		// Arbitrary bytes make arbitrary (also invalid) client addresses.
		rec := dnstest.NewRecorder(&sink{addr: &net.UDPAddr{IP: ip, Port: 53}})
		w := &ResponseWriter{ResponseWriter: rec, MinTTL: m, counters: countersOf("."), qname: res.Question[0].Name}
		if err := w.WriteMsg(res); err != nil {
			t.Fatal(err)
		}
		if !identical(res, before) {
			t.Fatalf("the message given to WriteMsg changed:\n%s\nwas\n%s", res, before)
		}
		checkContract(t, m, before, rec.Msg)
	})
}

// checkContract checks what minttl promises between what it got (in) and
// what it wrote (out): only TTLs change, and only these: every RRset in scope
// with a TTL below its floor leaves with one TTL, the larger of floor + j and
// its highest TTL, where j (0..jitter) is one for the whole response and
// floor; unless it holds a TTL above 2^31-1. Everything else leaves as it came.
func checkContract(t *testing.T, m *MinTTL, in, out *dns.Msg) {
	t.Helper()
	if in.MsgHdr != out.MsgHdr || len(in.Question) != len(out.Question) {
		t.Fatalf("header or question changed:\n%s\nto\n%s", in, out)
	}
	targets := map[uint32]uint32{} // floor: the target of the RRsets raised above their highest TTL
	kept := map[uint32][]uint32{}  // floor: the MINIMUMs kept in raised SOAs, which must be at or above the target
	for s, pair := range [][2][]dns.RR{{in.Answer, out.Answer}, {in.Ns, out.Ns}, {in.Extra, out.Extra}} {
		a, b := pair[0], pair[1]
		if len(a) != len(b) {
			t.Fatalf("section %d: %d records became %d", s, len(a), len(b))
		}
		rrsets := map[string][]int{}
		for i := range a {
			if !sameButTTL(a[i], b[i]) {
				t.Fatalf("section %d: more than the TTL (and an SOA's MINIMUM) changed:\n%s\nto\n%s", s, a[i], b[i])
			}
			k := rrsetName(a[i])
			rrsets[k] = append(rrsets[k], i)
		}
		for k, members := range rrsets {
			floor, jitter := inScope(m, in, s == 1, a[members[0]])
			// The SOA of negative data is cached for min(TTL, MINIMUM) (RFC
			// 2308 §5), and its MINIMUM is raised with its TTL unless an
			// RRSIG covers the SOA.
			withMinimum := s == 1 && floor > 0 && floor == m.Negative && !coveredSOA(in.Ns)
			lowest, highest := uint32(math.MaxUint32), uint32(0)
			for _, i := range members {
				lowest, highest = min(lowest, cachedFor(a[i], withMinimum)), max(highest, a[i].Header().Ttl)
			}
			if lowest >= floor || highest > maxTTL {
				for _, i := range members {
					if a[i].Header().Ttl != b[i].Header().Ttl || minimumOf(a[i]) != minimumOf(b[i]) {
						t.Fatalf("section %d: %s out of scope or not below its floor %d, changed:\n%s\nto\n%s", s, k, floor, a[i], b[i])
					}
				}
				continue
			}
			for _, i := range members {
				was, now := minimumOf(a[i]), minimumOf(b[i])
				switch {
				case !withMinimum && now != was:
					t.Fatalf("section %d: %s MINIMUM changed from %d to %d:\n%s", s, k, was, now, b[i])
				case !withMinimum:
				case now == was:
					kept[floor] = append(kept[floor], was)
				case now < was || now < floor || now > floor+jitter:
					t.Fatalf("section %d: %s MINIMUM %d raised to %d, want %d..%d", s, k, was, now, floor, floor+jitter)
				default:
					if target, ok := targets[floor]; ok && target != now {
						t.Fatalf("MINIMUM raised to %d, TTLs to %d: want one floor + j for the response", now, target)
					}
					targets[floor] = now
				}
			}
			ttl := b[members[0]].Header().Ttl
			for _, i := range members {
				if b[i].Header().Ttl != ttl {
					t.Fatalf("section %d: raised RRset %s left with TTLs %d and %d", s, k, ttl, b[i].Header().Ttl)
				}
			}
			if ttl < floor || ttl < highest || (ttl > highest && ttl > floor+jitter) {
				t.Fatalf("section %d: RRset %s with TTLs %d..%d raised to %d, want the larger of %d..%d and %d", s, k, lowest, highest, ttl, floor, floor+jitter, highest)
			}
			if ttl > highest {
				if target, ok := targets[floor]; ok && target != ttl {
					t.Fatalf("RRsets raised to %d and %d: want one floor + j for the response", target, ttl)
				}
				targets[floor] = ttl
			}
		}
	}
	for floor, minimums := range kept {
		for _, minimum := range minimums {
			if target, ok := targets[floor]; minimum < floor || ok && minimum < target {
				t.Fatalf("a raised SOA kept its MINIMUM %d, below the floor %d or the target %d:\n%s", minimum, floor, target, out)
			}
		}
	}
}

// inScope returns the floor and the jitter of rr in in (rr in the authority
// section if authority), or a zero floor if minttl must leave it alone.
func inScope(m *MinTTL, in *dns.Msg, authority bool, rr dns.RR) (floor, jitter uint32) {
	if n := len(in.Extra); n > 0 && (in.Extra[n-1].Header().Rrtype == dns.TypeTSIG || in.Extra[n-1].Header().Rrtype == dns.TypeSIG) {
		return 0, 0 // signed
	}
	positive := in.Rcode == dns.RcodeSuccess && len(in.Answer) > 0
	negative := !positive && m.Negative > 0 && (in.Rcode == dns.RcodeSuccess || in.Rcode == dns.RcodeNameError)
	t := rr.Header().Rrtype
	if sig, ok := rr.(*dns.RRSIG); ok {
		t = sig.TypeCovered
	}
	switch {
	case t == dns.TypeOPT || t == dns.TypeTSIG || t == dns.TypeSIG:
		return 0, 0
	case authority && t == dns.TypeSOA && (positive || negative):
		return m.Negative, m.NegativeJitter // negative data, also in a positive answer
	case authority && (t == dns.TypeSOA || t == dns.TypeNSEC || t == dns.TypeNSEC3):
		return 0, 0
	case positive && (len(m.Types) == 0 || m.Types[0] == t):
		return m.Floor, m.Jitter
	}
	return 0, 0
}

// cachedFor is how long a client caches rr: an SOA of negative data whose
// MINIMUM minttl raises, for the smaller of TTL and MINIMUM.
func cachedFor(rr dns.RR, withMinimum bool) uint32 {
	if soa, ok := rr.(*dns.SOA); ok && withMinimum {
		return min(soa.Hdr.Ttl, soa.Minttl)
	}
	return rr.Header().Ttl
}

func minimumOf(rr dns.RR) uint32 {
	if soa, ok := rr.(*dns.SOA); ok {
		return soa.Minttl
	}
	return 0
}

func coveredSOA(rrs []dns.RR) bool {
	for _, rr := range rrs {
		if sig, ok := rr.(*dns.RRSIG); ok && sig.TypeCovered == dns.TypeSOA {
			return true
		}
	}
	return false
}

// rrsetName names the RRset rr belongs to: an RRSIG goes with the type it covers.
func rrsetName(rr dns.RR) string {
	h := rr.Header()
	t := h.Rrtype
	if sig, ok := rr.(*dns.RRSIG); ok {
		t = sig.TypeCovered
	}
	return strings.ToLower(h.Name) + "/" + dns.Class(h.Class).String() + "/" + dns.Type(t).String()
}

// sameButTTL reports whether a and b differ in nothing but their TTLs and,
// for an SOA, MINIMUM.
func sameButTTL(a, b dns.RR) bool {
	a, b = dns.Copy(a), dns.Copy(b)
	a.Header().Ttl, b.Header().Ttl = 0, 0
	if sa, ok := a.(*dns.SOA); ok {
		if sb, ok := b.(*dns.SOA); ok {
			sa.Minttl, sb.Minttl = 0, 0
		}
	}
	return a.String() == b.String()
}

func identical(a, b *dns.Msg) bool {
	if a.String() != b.String() {
		return false
	}
	for _, pair := range [][2][]dns.RR{{a.Answer, b.Answer}, {a.Ns, b.Ns}, {a.Extra, b.Extra}} {
		for i := range pair[0] {
			if pair[0][i].Header().Ttl != pair[1][i].Header().Ttl {
				return false
			}
		}
	}
	return true
}

// seedResponses are the real responses the fuzzer starts from.
func seedResponses() []*dns.Msg {
	cname := new(dns.Msg)
	cname.SetQuestion("www.linkerd.svc.cluster.local.", dns.TypeA)
	cname.Response = true
	cname.Answer = []dns.RR{
		test.CNAME("www.linkerd.svc.cluster.local. 3 IN CNAME web.linkerd.svc.cluster.local."),
		test.CNAME("web.linkerd.svc.cluster.local. 60 IN CNAME lb.linkerd.svc.cluster.local."),
		test.A("lb.linkerd.svc.cluster.local. 1 IN A 10.0.0.1"),
		test.A("lb.linkerd.svc.cluster.local. 2 IN A 10.0.0.2"),
	}
	signed := srvResponse(4)
	signed.Answer = append(signed.Answer, test.RRSIG(srvName+" 4 IN RRSIG SRV 8 6 5 20300101000000 20200101000000 12345 cluster.local. c2ln"))
	edns := aResponse(0)
	opt := edns.IsEdns0()
	opt.SetDo()
	opt.Option = append(opt.Option, &dns.EDNS0_PADDING{Padding: make([]byte, 16)}, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
	tsig := srvResponse(1)
	tsig.SetTsig("key.", dns.HmacSHA256, 300, 1_790_000_000)
	truncated := largeResponse(2)
	truncated.Truncated = true
	// A CNAME to a name without the type asked for: NODATA behind a CNAME.
	nodata := new(dns.Msg)
	nodata.SetQuestion("www.linkerd.svc.cluster.local.", dns.TypeAAAA)
	nodata.Response = true
	nodata.Answer = cname.Answer[:1]
	nodata.Ns = negativeResponse(dns.RcodeSuccess, 3).Ns
	// A wildcard answer: its NSEC proves no closer name exists.
	wildcard := aResponse(2)
	wildcard.Answer = append(wildcard.Answer, test.RRSIG("web.linkerd.svc.cluster.local. 2 IN RRSIG A 8 4 5 20300101000000 20200101000000 12345 cluster.local. c2ln"))
	wildcard.Ns = []dns.RR{
		&dns.NSEC{Hdr: dns.RR_Header{Name: "*.linkerd.svc.cluster.local.", Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: 2}, NextDomain: "x.linkerd.svc.cluster.local.", TypeBitMap: []uint16{dns.TypeA}},
		test.RRSIG("*.linkerd.svc.cluster.local. 2 IN RRSIG NSEC 8 4 5 20300101000000 20200101000000 12345 cluster.local. c2ln"),
		test.NS("linkerd.svc.cluster.local. 2 IN NS ns.dns.cluster.local."),
	}
	mixedCase := srvResponse(1)
	mixedCase.Answer[0].Header().Name = strings.ToUpper(srvName)
	mixedCase.Answer[1].Header().Ttl = 40
	// The kubernetes plugin's NXDOMAIN: an unsigned SOA whose MINIMUM is its ttl.
	kubernetes := soaResponse(dns.RcodeNameError, 2, 5)
	// A zone file's: a TTL of an hour, a MINIMUM of 5 s.
	zoneFile := soaResponse(dns.RcodeSuccess, 3600, 5)
	// More records than are compared pair by pair, in mixed RRsets.
	mixedLarge := new(dns.Msg)
	mixedLarge.SetQuestion(srvName, dns.TypeA)
	mixedLarge.Response = true
	mixedLarge.Answer = mixedSection(rand.New(rand.NewSource(1)), 24)
	return []*dns.Msg{srvResponse(3), srvResponse(0), cname, negativeResponse(dns.RcodeNameError, 2),
		negativeResponse(dns.RcodeSuccess, 0), signed, edns, aResponse(0), tsig, truncated,
		withRcode(srvResponse(1), dns.RcodeServerFailure), nodata, wildcard, mixedCase, kubernetes, zoneFile, mixedLarge}
}

// TestConcurrentClients sends many goroutines through one minttl, under
// -race, and checks every answer. Half the queries are answered with one
// message that all goroutines share, as cache shares what it holds; the
// other half by a real cache, one per goroutine: CoreDNS's cache before v1.13
// writes the TTL into the records it holds on every hit, a race of its own
// between concurrent hits on one item.
func TestConcurrentClients(t *testing.T) {
	const workers, each = 16, 200
	shared := srvResponse(5)
	shared.Extra = shared.Extra[:3] // the queries carry no EDNS
	before := shared.String()
	caches := make([]*cache.Cache, workers)
	for g := range caches {
		caches[g] = newCache(fixed{msg: srvResponse(5)})
	}
	m := newMinTTL(handlerFunc(func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		host, _, _ := net.SplitHostPort(w.RemoteAddr().String())
		ip := net.ParseIP(host).To4()
		if ip[3]%2 == 1 {
			return held{msg: shared}.ServeDNS(ctx, w, r)
		}
		return caches[ip[2]].ServeDNS(ctx, w, r)
	}))
	m.now = time.Now
	errs := make(chan string, workers)
	for g := 0; g < workers; g++ {
		go func(g int) {
			var problem string
			for i := 0; i < each; i++ {
				w := &test.ResponseWriter{RemoteIP: net.IPv4(10, 244, byte(g), byte(i)).String(), TCP: i%4 < 2}
				rec := dnstest.NewRecorder(w)
				req := new(dns.Msg)
				req.SetQuestion(srvName, dns.TypeSRV)
				if _, err := m.ServeDNS(context.Background(), rec, req); err != nil || rec.Msg == nil {
					problem = "no answer"
					break
				}
				if p := contractProblem(rec.Msg, false); p != "" {
					problem = p
					break
				}
			}
			errs <- problem
		}(g)
	}
	for i := 0; i < workers; i++ {
		if p := <-errs; p != "" {
			t.Error(p)
		}
	}
	if shared.String() != before {
		t.Errorf("the shared message changed under the load:\n%s\nwas\n%s", shared, before)
	}
	for g, c := range caches {
		direct := new(dns.Msg)
		direct.SetQuestion(srvName, dns.TypeSRV)
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		c.ServeDNS(context.Background(), rec, direct)
		if ttl := rec.Msg.Answer[0].Header().Ttl; ttl > 5 {
			t.Errorf("cache %d hands out TTL %d after the load: minttl changed what cache holds", g, ttl)
		}
	}
}

type handlerFunc func(context.Context, dns.ResponseWriter, *dns.Msg) (int, error)

func (f handlerFunc) Name() string { return "func" }
func (f handlerFunc) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return f(ctx, w, r)
}

// contractProblem describes how an SRV answer to a query with the DO bit do
// breaks the defaults' contract, or is "".
func contractProblem(m *dns.Msg, do bool) string {
	additional := 0
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			additional++
		}
	}
	if len(m.Answer) != 3 || additional != 3 {
		return "records lost: " + m.String()
	}
	ttl := m.Answer[0].Header().Ttl
	if ttl < 30 || ttl > 36 {
		return "TTL out of 30..36: " + m.String()
	}
	for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Extra...) {
		if rr.Header().Rrtype == dns.TypeOPT {
			if rr.(*dns.OPT).Do() != do {
				return "DO bit changed"
			}
			continue
		}
		if rr.Header().Ttl != ttl {
			return "more than one TTL in one response: " + m.String()
		}
	}
	return ""
}
