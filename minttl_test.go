package minttl

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/cache"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const srvName = "linkerd-policy.linkerd.svc.cluster.local."

// pinned is the clock every handler test runs on.
var pinned = time.Unix(1_790_000_000, 0)

func newMinTTL(next plugin.Handler) *MinTTL {
	return &MinTTL{
		Next:   next,
		Zones:  []string{"linkerd.svc.cluster.local."},
		Floor:  30,
		Jitter: 6,
		now:    func() time.Time { return pinned },
	}
}

func newCache(next plugin.Handler) *cache.Cache {
	c := cache.New()
	c.Next = next
	return c
}

// fixed answers every query with a copy of its message, so tests can check it is never modified.
type fixed struct{ msg *dns.Msg }

func (f fixed) Name() string { return "fixed" }
func (f fixed) ServeDNS(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	m := f.msg.Copy()
	m.Id = r.Id
	m.Question = r.Question
	return m.Rcode, w.WriteMsg(m)
}

// held answers with one message it keeps, as cache keeps what it writes.
type held struct{ msg *dns.Msg }

func (h held) Name() string { return "held" }
func (h held) ServeDNS(_ context.Context, w dns.ResponseWriter, _ *dns.Msg) (int, error) {
	return h.msg.Rcode, w.WriteMsg(h.msg)
}

func srvResponse(ttl uint32) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(srvName, dns.TypeSRV)
	m.Response, m.Authoritative = true, true
	for i := 1; i <= 3; i++ {
		target := fmt.Sprintf("10-244-0-%d.linkerd-policy.linkerd.svc.cluster.local.", i)
		m.Answer = append(m.Answer, test.SRV(fmt.Sprintf("%s %d IN SRV 0 33 8090 %s", srvName, ttl, target)))
		m.Extra = append(m.Extra, test.A(fmt.Sprintf("%s %d IN A 10.244.0.%d", target, ttl, i)))
	}
	m.Extra = append(m.Extra, test.OPT(1232, true))
	return m
}

func serve(t *testing.T, m *MinTTL, w dns.ResponseWriter, qname string, qtype uint16) *dns.Msg {
	t.Helper()
	rec := dnstest.NewRecorder(w)
	req := new(dns.Msg)
	req.SetQuestion(qname, qtype)
	if _, err := m.ServeDNS(context.Background(), rec, req); err != nil {
		t.Fatalf("ServeDNS: %v", err)
	}
	if rec.Msg == nil {
		t.Fatal("no response written")
	}
	return rec.Msg
}

func client(ip string) dns.ResponseWriter {
	if ip == "" {
		return &test.ResponseWriter6{}
	}
	return &test.ResponseWriter{RemoteIP: ip}
}

func ttls(rrs []dns.RR) []uint32 {
	var out []uint32
	for _, rr := range rrs {
		out = append(out, rr.Header().Ttl)
	}
	return out
}

func TestRaisesDecayedTTLs(t *testing.T) {
	original := srvResponse(3)
	h := held{msg: original}
	before := original.Copy()
	rrs := append(append([]dns.RR{}, original.Answer...), original.Extra...)

	for _, ip := range []string{"10.244.0.7", "10.244.0.8", "192.0.2.200", ""} {
		got := serve(t, newMinTTL(h), client(ip), srvName, dns.TypeSRV)
		j := got.Answer[0].Header().Ttl - 30
		if j > 6 {
			t.Errorf("client %q: TTL %d outside floor..floor+jitter (30..36)", ip, 30+j)
		}
		for _, rr := range append(append([]dns.RR{}, got.Answer...), got.Extra...) {
			if rr.Header().Rrtype == dns.TypeOPT {
				if rr.Header().Ttl != before.IsEdns0().Hdr.Ttl || !rr.(*dns.OPT).Do() {
					t.Errorf("client %q: OPT TTL field changed to %#x", ip, rr.Header().Ttl)
				}
				continue
			}
			if rr.Header().Ttl != 30+j {
				t.Errorf("client %q: %s has TTL %d, want %d for the whole response", ip, rr.Header().Name, rr.Header().Ttl, 30+j)
			}
		}
	}
	if original.String() != before.String() {
		t.Errorf("the message given to WriteMsg was modified:\n%s\nwas\n%s", original, before)
	}
	for i, rr := range append(append([]dns.RR{}, original.Answer...), original.Extra...) {
		if rr != rrs[i] {
			t.Errorf("record %d of the held message was replaced", i)
		}
	}
}

func TestOnlyWhatChangesIsCopied(t *testing.T) {
	original := srvResponse(3)
	original.Extra[0].Header().Ttl = 300 // one target's A RRset above the floor
	got := serve(t, newMinTTL(held{msg: original}), client("10.0.0.1"), srvName, dns.TypeSRV)
	if got.Extra[0] != original.Extra[0] {
		t.Error("a record above the floor was copied")
	}
	if got.Extra[3] != original.Extra[3] {
		t.Error("the OPT record was copied")
	}
	if got.Answer[0] == original.Answer[0] || got.Extra[1] == original.Extra[1] {
		t.Error("a raised record was not copied")
	}
	if got.Extra[0].Header().Ttl != 300 {
		t.Errorf("a TTL above the floor changed to %d", got.Extra[0].Header().Ttl)
	}
}

func TestNoChangeNoCopy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		qname string
		msg   *dns.Msg
	}{
		{"at the floor", srvName, srvResponse(30)},
		{"above the floor", srvName, srvResponse(3600)},
		{"out of zone", "web.default.svc.cluster.local.", srvResponse(1)},
		{"label-aware zone match", "linkerd-policy.badlinkerd.svc.cluster.local.", srvResponse(1)},
		{"SERVFAIL", srvName, withRcode(srvResponse(1), dns.RcodeServerFailure)},
		{"REFUSED", srvName, withRcode(srvResponse(1), dns.RcodeRefused)},
		{"NXDOMAIN without negative", srvName, negativeResponse(dns.RcodeNameError, 2)},
		{"NODATA without negative", srvName, negativeResponse(dns.RcodeSuccess, 2)},
		{"TSIG signed", srvName, signed(srvResponse(1), &dns.TSIG{Hdr: dns.RR_Header{Name: "key.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY}, Algorithm: dns.HmacSHA256})},
		{"SIG(0) signed", srvName, signed(srvResponse(1), &dns.SIG{RRSIG: dns.RRSIG{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSIG, Class: dns.ClassANY}}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMinTTL(held{msg: tc.msg})
			before := tc.msg.String()
			if got := serve(t, m, client("10.0.0.1"), tc.qname, dns.TypeSRV); got != tc.msg {
				t.Errorf("response was copied, want it passed through:\n%s", got)
			}
			if tc.msg.String() != before {
				t.Error("response was modified")
			}
		})
	}
}

func TestZoneTransfersPassThrough(t *testing.T) {
	for _, qtype := range []uint16{dns.TypeAXFR, dns.TypeIXFR} {
		msg := srvResponse(1)
		got := serve(t, newMinTTL(held{msg: msg}), client("10.0.0.1"), "linkerd.svc.cluster.local.", qtype)
		if got != msg {
			t.Errorf("%s response was rewritten", dns.TypeToString[qtype])
		}
	}
}

func withRcode(m *dns.Msg, rcode int) *dns.Msg { m.Rcode = rcode; return m }

func signed(m *dns.Msg, sig dns.RR) *dns.Msg { m.Extra = append(m.Extra, sig); return m }

func negativeResponse(rcode int, ttl uint32) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(srvName, dns.TypeSRV)
	m.Response, m.Rcode = true, rcode
	m.Ns = []dns.RR{
		test.SOA(fmt.Sprintf("cluster.local. %d IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5", ttl)),
		test.RRSIG(fmt.Sprintf("cluster.local. %d IN RRSIG SOA 8 2 5 20300101000000 20200101000000 12345 cluster.local. c2ln", ttl)),
		&dns.NSEC{Hdr: dns.RR_Header{Name: "cluster.local.", Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: ttl}, NextDomain: "a.cluster.local.", TypeBitMap: []uint16{dns.TypeSOA}},
	}
	return m
}

func TestNegativeOptIn(t *testing.T) {
	for _, rcode := range []int{dns.RcodeNameError, dns.RcodeSuccess} {
		m := newMinTTL(fixed{msg: negativeResponse(rcode, 2)})
		m.Negative = 60
		got := serve(t, m, client("10.0.0.1"), srvName, dns.TypeSRV)
		soa, sig, nsec := got.Ns[0].Header().Ttl, got.Ns[1].Header().Ttl, got.Ns[2].Header().Ttl
		if soa < 60 || soa > 66 {
			t.Errorf("%s: SOA TTL %d, want 60..66", dns.RcodeToString[rcode], soa)
		}
		if sig != soa {
			t.Errorf("%s: RRSIG(SOA) TTL %d, want it to move with the SOA (%d)", dns.RcodeToString[rcode], sig, soa)
		}
		if nsec != 2 {
			t.Errorf("%s: NSEC TTL %d changed", dns.RcodeToString[rcode], nsec)
		}
		if got.Ns[1].(*dns.RRSIG).OrigTtl != 5 {
			t.Errorf("RRSIG Original TTL changed to %d", got.Ns[1].(*dns.RRSIG).OrigTtl)
		}
	}
}

func TestReferralLeftAloneWithNegative(t *testing.T) {
	msg := new(dns.Msg)
	msg.SetQuestion(srvName, dns.TypeSRV)
	msg.Response = true
	msg.Ns = []dns.RR{test.NS("linkerd.svc.cluster.local. 2 IN NS ns.example.org.")}
	m := newMinTTL(held{msg: msg})
	m.Negative = 60
	if got := serve(t, m, client("10.0.0.1"), srvName, dns.TypeSRV); got != msg {
		t.Errorf("referral was rewritten:\n%s", got)
	}
}

func TestTypesFilter(t *testing.T) {
	m := newMinTTL(fixed{msg: srvResponse(2)})
	m.Types = []uint16{dns.TypeA}
	got := serve(t, m, client("10.0.0.1"), srvName, dns.TypeSRV)
	if ttl := got.Answer[0].Header().Ttl; ttl != 2 {
		t.Errorf("SRV raised to %d with types A", ttl)
	}
	if ttl := got.Extra[0].Header().Ttl; ttl < 30 {
		t.Errorf("A left at %d with types A", ttl)
	}
}

func TestRRSIGMovesWithItsRRset(t *testing.T) {
	msg := srvResponse(4)
	msg.Answer = append(msg.Answer, test.RRSIG(srvName+" 4 IN RRSIG SRV 8 6 5 20300101000000 20200101000000 12345 cluster.local. c2ln"))
	got := serve(t, newMinTTL(fixed{msg: msg}), client("10.0.0.1"), srvName, dns.TypeSRV)
	sig := got.Answer[3].(*dns.RRSIG)
	if sig.Hdr.Ttl != got.Answer[0].Header().Ttl {
		t.Errorf("RRSIG TTL %d, SRV TTL %d: want equal", sig.Hdr.Ttl, got.Answer[0].Header().Ttl)
	}
	if sig.OrigTtl != 5 {
		t.Errorf("Original TTL changed to %d", sig.OrigTtl)
	}
}

func TestMixedRRsetLeavesWithOneTTL(t *testing.T) {
	for _, tc := range []struct {
		ttls   []uint32
		lowest uint32 // the one TTL must be at least this
		exact  uint32 // and exactly this, when not 0
	}{
		{[]uint32{5, 40, 2}, 40, 40}, // the highest wins: nothing is lowered
		{[]uint32{5, 31, 2}, 31, 0},  // floor+j (30..36), but never below 31
	} {
		msg := srvResponse(1)
		for i, ttl := range tc.ttls {
			msg.Answer[i].Header().Ttl = ttl
		}
		got := serve(t, newMinTTL(fixed{msg: msg}), client("10.0.0.1"), srvName, dns.TypeSRV)
		one := got.Answer[0].Header().Ttl
		for _, ttl := range ttls(got.Answer) {
			if ttl != one {
				t.Errorf("%v: RRset left with TTLs %v", tc.ttls, ttls(got.Answer))
				break
			}
		}
		if one < tc.lowest || (tc.exact != 0 && one != tc.exact) {
			t.Errorf("%v: RRset TTL %d", tc.ttls, one)
		}
		if ttl := got.Extra[0].Header().Ttl; ttl < 30 {
			t.Errorf("%v: additional A left at %d", tc.ttls, ttl)
		}
	}

	// A TTL above 2^31-1 (read as 0, RFC 2181 §8) is not spread over its RRset.
	msg := srvResponse(1)
	msg.Answer[1].Header().Ttl = 1 << 31
	got := serve(t, newMinTTL(fixed{msg: msg}), client("10.0.0.1"), srvName, dns.TypeSRV)
	if ttls := ttls(got.Answer); ttls[0] != 1 || ttls[1] != 1<<31 || ttls[2] != 1 {
		t.Errorf("RRset with a TTL above 2^31-1 changed to %v", ttls)
	}
}

func TestJitterDeterministicAndSpread(t *testing.T) {
	m := newMinTTL(fixed{msg: srvResponse(1)})
	seen := map[uint32]bool{}
	for i := 1; i <= 60; i++ {
		ip := fmt.Sprintf("10.244.%d.%d", i/250, i%250)
		first := serve(t, m, client(ip), srvName, dns.TypeSRV).Answer[0].Header().Ttl
		again := serve(t, m, client(ip), srvName, dns.TypeSRV).Answer[0].Header().Ttl
		if first != again {
			t.Errorf("client %s: TTL %d then %d at the same instant", ip, first, again)
		}
		seen[first] = true
	}
	for ttl := uint32(30); ttl <= 36; ttl++ {
		if !seen[ttl] {
			t.Errorf("no client got TTL %d; spread %v", ttl, seen)
		}
	}
	v6 := serve(t, m, client(""), srvName, dns.TypeSRV).Answer[0].Header().Ttl
	if v6 < 30 || v6 > 36 {
		t.Errorf("IPv6 client got TTL %d", v6)
	}
	m.Jitter = 0
	if ttl := serve(t, m, client("10.0.0.9"), srvName, dns.TypeSRV).Answer[0].Header().Ttl; ttl != 30 {
		t.Errorf("jitter 0: TTL %d, want the floor", ttl)
	}
}

// TestLockstepClientsFanOut replays herds of 200 and 2,000 clients × 2 names
// that start in the same instant, with the TTLs minttl hands out at its
// defaults, and checks that they spread instead of marching in lockstep: no
// second above twice the steady rate after the fifth refresh cycle (median of
// 8 starts), and no second above 1.5× in the steady state, with no TTL below
// the floor and a mean TTL of floor + jitter/2.
func TestLockstepClientsFanOut(t *testing.T) {
	const floor, jitter = 30, 6
	for _, clients := range []int{200, 2000} {
		s := summarizeHerds(herd{clients: clients, floor: floor, jitter: jitter, seconds: 600, rule: jitterFor}, 8)
		t.Logf("%d clients: %s", clients, s)
		if s.calm > 5*(floor+jitter/2) || s.steady > 1.5 {
			t.Errorf("%d clients: not spread: %s", clients, s)
		}
		if s.minTTL < floor || s.meanTTL > floor+jitter/2.0+0.05 {
			t.Errorf("%d clients: TTLs out of line: %s", clients, s)
		}
	}
}

func TestJitterRange(t *testing.T) {
	for _, tc := range []struct{ base, jitter uint32 }{{30, 6}, {30, 1}, {30, 7}, {1, 1}, {86400, 86400}, {5, 0}, {86400, maxTTL - 86400}, {1, maxTTL - 1}} {
		for key := uint64(0); key < 500; key++ {
			for now := int64(1_790_000_000); now < 1_790_000_040; now++ {
				if j := jitterFor(key*7919, now, tc.base, tc.jitter); j > tc.jitter {
					t.Fatalf("base %d jitter %d: j = %d", tc.base, tc.jitter, j)
				}
			}
		}
	}
}

// TestInFrontOfCache puts minttl in front of a real cache, as plugin.cfg.example
// orders them, and checks what cache hands out is raised while what cache holds
// is not touched.
func TestInFrontOfCache(t *testing.T) {
	c := newCache(fixed{msg: srvResponse(5)})
	m := newMinTTL(c)
	m.now = time.Now

	for i := 0; i < 3; i++ {
		got := serve(t, m, client(fmt.Sprintf("10.0.0.%d", i+1)), srvName, dns.TypeSRV)
		for _, ttl := range append(ttls(got.Answer), ttls(got.Extra[:3])...) {
			if ttl < 30 || ttl > 36 {
				t.Errorf("query %d through minttl: TTL %d, want 30..36", i, ttl)
			}
		}
	}
	time.Sleep(1100 * time.Millisecond) // let the cached item decay
	direct := serve(t, &MinTTL{Next: c, Zones: []string{"other."}}, client("10.0.0.1"), srvName, dns.TypeSRV)
	for _, ttl := range ttls(direct.Answer) {
		if ttl >= 5 {
			t.Errorf("cache hands out TTL %d after a second, want it decayed below 5 (and its item untouched by minttl)", ttl)
		}
	}
	raised := serve(t, m, client("10.0.0.1"), srvName, dns.TypeSRV)
	if ttl := raised.Answer[0].Header().Ttl; ttl < 30 {
		t.Errorf("decayed cache hit left at %d", ttl)
	}
}

func TestMetrics(t *testing.T) {
	m := newMinTTL(fixed{msg: srvResponse(0)})
	m.Zones = []string{"metrics.test."}
	req := new(dns.Msg)
	req.SetQuestion("linkerd-policy.metrics.test.", dns.TypeSRV)
	rec := dnstest.NewRecorder(client("10.0.0.1"))
	if _, err := m.ServeDNS(context.Background(), rec, req); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"raised SRV", testutil.ToFloat64(raisedRecords.WithLabelValues("", "metrics.test.", "SRV")), 3},
		{"raised A", testutil.ToFloat64(raisedRecords.WithLabelValues("", "metrics.test.", "A")), 3},
		{"raised responses", testutil.ToFloat64(raisedResponses.WithLabelValues("", "metrics.test.")), 1},
		{"zero TTL", testutil.ToFloat64(zeroTTLRecords.WithLabelValues("", "metrics.test.")), 6},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestPluginCfgExample keeps plugin.cfg.example true to this module's path and
// to CoreDNS's directive list: the builds take minttl's place from it.
func TestPluginCfgExample(t *testing.T) {
	text, err := os.ReadFile("plugin.cfg.example")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(text), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if want := []string{"minttl:github.com/minttl/minttl", "cache:cache"}; !slices.Equal(lines, want) {
		t.Fatalf("plugin.cfg.example lists %q, want %q", lines, want)
	}
	if !slices.Contains(dnsserver.Directives, "cache") {
		t.Errorf("CoreDNS has no cache directive to place minttl above: %v", dnsserver.Directives)
	}
}

func TestMatchZoneAgreesWithPluginZones(t *testing.T) {
	zones := []string{"example.org.", "sub.example.org.", "linkerd.svc.cluster.local."}
	for _, qname := range []string{
		"example.org.", "EXAMPLE.org.", "a.example.org.", "badexample.org.", "a.sub.example.org.",
		"sub.example.org.", "org.", ".", "a\\.example.org.", "a\\\\.example.org.", "xlinkerd.svc.cluster.local.",
		srvName, "LINKERD-POLICY.Linkerd.SVC.cluster.local.", "local.",
	} {
		if got, want := matchZone(zones, qname), plugin.Zones(zones).Matches(qname); got != want {
			t.Errorf("%q: matchZone %q, plugin.Zones.Matches %q", qname, got, want)
		}
	}
	if got := matchZone([]string{"."}, "anything.example."); got != "." {
		t.Errorf("root zone: %q", got)
	}
}
