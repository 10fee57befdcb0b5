package minttl

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

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
		if onlyType != 0 {
			m.Types = []uint16{onlyType}
		}
		before := res.Copy()
		// Arbitrary bytes make arbitrary (also invalid) client addresses.
		rec := dnstest.NewRecorder(&sink{addr: &net.UDPAddr{IP: ip, Port: 53}})
		w := &ResponseWriter{ResponseWriter: rec, MinTTL: m, zone: ".", qname: res.Question[0].Name}
		if err := w.WriteMsg(res); err != nil {
			t.Fatal(err)
		}
		if !identical(res, before) {
			t.Fatalf("the message given to WriteMsg changed:\n%s\nwas\n%s", res, before)
		}
		checkContract(t, m, before, rec.Msg)
	})
}

// checkContract checks what minttl promises between what it got (in) and what it wrote (out).
func checkContract(t *testing.T, m *MinTTL, in, out *dns.Msg) {
	t.Helper()
	if in.MsgHdr != out.MsgHdr || len(in.Question) != len(out.Question) {
		t.Fatalf("header or question changed:\n%s\nto\n%s", in, out)
	}
	for s, pair := range [][2][]dns.RR{{in.Answer, out.Answer}, {in.Ns, out.Ns}, {in.Extra, out.Extra}} {
		a, b := pair[0], pair[1]
		if len(a) != len(b) {
			t.Fatalf("section %d: %d records became %d", s, len(a), len(b))
		}
		changed := map[string]bool{}
		for i := range a {
			ha, hb := a[i].Header(), b[i].Header()
			if hb.Ttl < ha.Ttl {
				t.Fatalf("section %d: TTL lowered from %d to %d: %s", s, ha.Ttl, hb.Ttl, a[i])
			}
			if !sameButTTL(a[i], b[i]) {
				t.Fatalf("section %d: more than the TTL changed:\n%s\nto\n%s", s, a[i], b[i])
			}
			switch ha.Rrtype {
			case dns.TypeOPT, dns.TypeTSIG, dns.TypeSIG:
				if ha.Ttl != hb.Ttl {
					t.Fatalf("section %d: %s TTL field changed", s, dns.TypeToString[ha.Rrtype])
				}
			}
			if ha.Ttl != hb.Ttl {
				changed[rrsetKey(b[i])] = true
				if hb.Ttl > uint32(maxTTL) {
					t.Fatalf("TTL %d above 2^31-1", hb.Ttl)
				}
			}
		}
		ttls := map[string]uint32{}
		for _, rr := range b {
			k := rrsetKey(rr)
			if !changed[k] {
				continue
			}
			if ttl, ok := ttls[k]; ok && ttl != rr.Header().Ttl {
				t.Fatalf("section %d: raised RRset %s left with TTLs %d and %d", s, k, ttl, rr.Header().Ttl)
			}
			ttls[k] = rr.Header().Ttl
		}
	}
}

// rrsetKey names the RRset rr belongs to: an RRSIG goes with the type it covers.
func rrsetKey(rr dns.RR) string {
	h := rr.Header()
	t := h.Rrtype
	if sig, ok := rr.(*dns.RRSIG); ok {
		t = sig.TypeCovered
	}
	return strings.ToLower(h.Name) + "/" + dns.Class(h.Class).String() + "/" + dns.Type(t).String()
}

func sameButTTL(a, b dns.RR) bool {
	a, b = dns.Copy(a), dns.Copy(b)
	a.Header().Ttl, b.Header().Ttl = 0, 0
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
	return []*dns.Msg{srvResponse(3), srvResponse(0), cname, negativeResponse(dns.RcodeNameError, 2),
		negativeResponse(dns.RcodeSuccess, 0), signed, edns, tsig, truncated, withRcode(srvResponse(1), dns.RcodeServerFailure)}
}

// TestConcurrentClients sends many goroutines through one minttl in front of a
// real cache, under -race, and checks every answer.
func TestConcurrentClients(t *testing.T) {
	c := newCache(fixed{msg: srvResponse(5)})
	m := newMinTTL(c)
	m.now = time.Now
	const workers, each = 16, 200
	errs := make(chan string, workers)
	for g := 0; g < workers; g++ {
		go func(g int) {
			var problem string
			for i := 0; i < each; i++ {
				w := &test.ResponseWriter{RemoteIP: net.IPv4(10, 244, byte(g), byte(i)).String(), TCP: i%2 == 0}
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
	direct := new(dns.Msg)
	direct.SetQuestion(srvName, dns.TypeSRV)
	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	c.ServeDNS(context.Background(), rec, direct)
	if ttl := rec.Msg.Answer[0].Header().Ttl; ttl > 5 {
		t.Errorf("cache hands out TTL %d after the load: minttl changed what cache holds", ttl)
	}
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
