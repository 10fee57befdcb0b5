package minttl

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/cache"
	"github.com/coredns/coredns/plugin/metrics/vars"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const srvName = "linkerd-policy.linkerd.svc.cluster.local."

// pinned is the clock every handler test runs on.
var pinned = time.Unix(1_790_000_000, 0)

// newMinTTL is a handler with a registry of its own, which no ticker closes:
// a test ticks it by hand.
func newMinTTL(next plugin.Handler) *MinTTL {
	return &MinTTL{
		Next:     next,
		Zones:    []string{"linkerd.svc.cluster.local."},
		Floor:    30,
		Jitter:   6,
		now:      func() time.Time { return pinned },
		registry: &registry{},
	}
}

// countersOf returns counters of zone from a registry of their own.
func countersOf(zone string) *zoneCounters { return new(registry).countersFor("", zone) }

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
		name string
		ttls []uint32
		// want is the RRset's one TTL given target, the TTL the additional
		// section's A records (an RRset of their own, all at TTL 1) got.
		want func(target uint32) uint32
	}{
		{"the highest wins: nothing is lowered", []uint32{5, 40, 2}, func(uint32) uint32 { return 40 }},
		{"floor+j, but never below the highest", []uint32{5, 31, 2}, func(target uint32) uint32 { return max(target, 31) }},
		{"the largest TTL", []uint32{1, maxTTL, 1}, func(uint32) uint32 { return maxTTL }},
	} {
		for _, upper := range []bool{false, true} {
			msg := srvResponse(1)
			for i, ttl := range tc.ttls {
				msg.Answer[i].Header().Ttl = ttl
			}
			if upper { // one record's name in another case: still one RRset (names compare case-insensitively)
				msg.Answer[0].Header().Name = strings.ToUpper(srvName)
			}
			got := serve(t, newMinTTL(fixed{msg: msg}), client("10.0.0.1"), srvName, dns.TypeSRV)
			target := got.Extra[0].Header().Ttl
			if target < 30 || target > 36 {
				t.Fatalf("%s: additional A raised to %d, want 30..36", tc.name, target)
			}
			if want := tc.want(target); !slices.Equal(ttls(got.Answer), []uint32{want, want, want}) {
				t.Errorf("%s (upper-case name %v): RRset left with TTLs %v, want %d", tc.name, upper, ttls(got.Answer), want)
			}
		}
	}
}

// TestTTLAbove2To31 checks that an RRset holding a TTL above 2^31-1 (read as
// 0, RFC 2181 §8) is left as it came, and that a response in which nothing
// else is low passes through: not copied, not counted.
func TestTTLAbove2To31(t *testing.T) {
	msg := srvResponse(300)
	msg.Answer[0].Header().Ttl, msg.Answer[1].Header().Ttl = 1, 1<<31
	m := newMinTTL(held{msg: msg})
	m.Zones = []string{"above.test."}
	responses := raisedResponses.WithLabelValues("", "above.test.")
	before := testutil.ToFloat64(responses)
	if got := serve(t, m, client("10.0.0.1"), "linkerd-policy.above.test.", dns.TypeSRV); got != msg {
		t.Errorf("response copied, want it passed through: %v", ttls(got.Answer))
	}
	if n := testutil.ToFloat64(responses) - before; n != 0 {
		t.Errorf("raised_responses_total went up by %v for a response left as it came", n)
	}

	// 2^31-1 itself is a TTL like any other: its RRset is raised to it, even
	// when nothing else in the response is low.
	msg = srvResponse(300)
	msg.Answer[0].Header().Ttl, msg.Answer[1].Header().Ttl, msg.Answer[2].Header().Ttl = 1, maxTTL, 1
	got := serve(t, newMinTTL(fixed{msg: msg}), client("10.0.0.1"), srvName, dns.TypeSRV)
	if ttls := ttls(got.Answer); !slices.Equal(ttls, []uint32{maxTTL, maxTTL, maxTTL}) {
		t.Errorf("RRset with TTLs 1 and 2^31-1 left with %v", ttls)
	}

	msg = srvResponse(1)
	msg.Answer[1].Header().Ttl = 1 << 31
	got = serve(t, newMinTTL(fixed{msg: msg}), client("10.0.0.1"), srvName, dns.TypeSRV)
	if ttls := ttls(got.Answer); ttls[0] != 1 || ttls[1] != 1<<31 || ttls[2] != 1 {
		t.Errorf("RRset with a TTL above 2^31-1 changed to %v", ttls)
	}
	if ttl := got.Extra[0].Header().Ttl; ttl < 30 {
		t.Errorf("the other RRsets were not raised: %d", ttl)
	}
}

func TestJitterDeterministicAndSpread(t *testing.T) {
	m := newMinTTL(fixed{msg: srvResponse(1)})
	for _, family := range []string{"10.244.%d.%d", "2001:db8::%x:%x"} {
		seen := map[uint32]bool{}
		for i := 1; i <= 60; i++ {
			ip := fmt.Sprintf(family, i/250, i%250)
			first := serve(t, m, client(ip), srvName, dns.TypeSRV).Answer[0].Header().Ttl
			again := serve(t, m, client(ip), srvName, dns.TypeSRV).Answer[0].Header().Ttl
			if first != again {
				t.Errorf("client %s: TTL %d then %d at the same instant", ip, first, again)
			}
			seen[first] = true
		}
		for ttl := uint32(30); ttl <= 36; ttl++ {
			if !seen[ttl] {
				t.Errorf("%s: no client got TTL %d; spread %v", family, ttl, seen)
			}
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
// defaults, and checks that they spread instead of marching in lockstep: calm
// (no second above twice the steady rate) within 100 s (median of 8 starts),
// no second above 1.5× the mean from 150 s on (the storm lab's late window)
// nor in the steady state, no TTL below the floor, and the mean TTL the docs
// promise, floor + jitter/2 (in whole seconds).
func TestLockstepClientsFanOut(t *testing.T) {
	const floor, jitter = defaultFloor, defaultFloor * defaultJitter / 100
	for _, clients := range []int{200, 2000} {
		s := summarizeHerds(herd{clients: clients, floor: floor, jitter: jitter, seconds: 600, rule: jitterFor}, 8)
		t.Logf("%d clients: %s", clients, s)
		if s.calm > 100 || s.settling > 1.5 || s.steady > 1.5 {
			t.Errorf("%d clients: not spread: %s", clients, s)
		}
		if s.minTTL < floor || s.meanTTL < floor+jitter/2-0.05 || s.meanTTL > floor+jitter/2+0.05 {
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
	msg := srvResponse(0)
	msg.Extra[3] = test.OPT(1232, false) // its TTL field is 0 too, and no record
	m := newMinTTL(fixed{msg: msg})
	// The longest matching zone is the zone label.
	m.Zones = []string{"metrics.test.", "linkerd.metrics.test."}
	m.Types = []uint16{dns.TypeSRV} // the A records are out of scope
	counters := func(zone string) []prometheus.Counter {
		return []prometheus.Counter{
			raisedRecords.WithLabelValues("", zone, "SRV"),
			raisedRecords.WithLabelValues("", zone, "A"),
			raisedResponses.WithLabelValues("", zone),
			zeroTTLRecords.WithLabelValues("", zone),
			zeroTTLResponses.WithLabelValues("", zone),
		}
	}
	inner, outer := counters("linkerd.metrics.test."), counters("metrics.test.")
	values := func() []float64 {
		var v []float64
		for _, c := range append(append([]prometheus.Counter{}, inner...), outer...) {
			v = append(v, testutil.ToFloat64(c))
		}
		return v
	}
	// Counters are global and other tests (and -count=2) add to them: compare differences.
	before := values()
	req := new(dns.Msg)
	req.SetQuestion("linkerd-policy.linkerd.metrics.test.", dns.TypeSRV)
	rec := dnstest.NewRecorder(client("10.0.0.1"))
	if _, err := m.ServeDNS(context.Background(), rec, req); err != nil {
		t.Fatal(err)
	}
	after := values()
	for i, tc := range []struct {
		name string
		want float64
	}{
		{"raised SRV", 3},
		{"raised A (not in types)", 0},
		{"raised responses", 1},
		{"zero TTL (only SRV records are in scope)", 3},
		{"responses with a zero TTL", 1},
		{"raised SRV in the shorter zone", 0},
		{"raised A in the shorter zone", 0},
		{"raised responses in the shorter zone", 0},
		{"zero TTL in the shorter zone", 0},
		{"responses with a zero TTL in the shorter zone", 0},
	} {
		if got := after[i] - before[i]; got != tc.want {
			t.Errorf("%s: went up by %v, want %v", tc.name, got, tc.want)
		}
	}
	// A decayed answer is raised, but it was not stale.
	m.Next = fixed{msg: srvResponse(4)}
	stale := testutil.ToFloat64(zeroTTLResponses.WithLabelValues("", "linkerd.metrics.test."))
	if _, err := m.ServeDNS(context.Background(), dnstest.NewRecorder(client("10.0.0.1")), req); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(zeroTTLResponses.WithLabelValues("", "linkerd.metrics.test.")) - stale; got != 0 {
		t.Errorf("responses with a zero TTL went up by %v for an answer with TTL 4", got)
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
		"sub.example.org.", "org.", ".", "a\\.example.org.", "a\\\\.example.org.", "\\.example.org.", "\\\\.example.org.", "xlinkerd.svc.cluster.local.",
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

// TestBuiltWithoutSetup: a MinTTL built by hand (no clock set) raises on
// the wall clock.
func TestBuiltWithoutSetup(t *testing.T) {
	m := &MinTTL{Next: fixed{msg: srvResponse(1)}, Zones: []string{"linkerd.svc.cluster.local."}, Floor: 30, Jitter: 6}
	if ttl := serve(t, m, client("10.0.0.1"), srvName, dns.TypeSRV).Answer[0].Header().Ttl; ttl < 30 || ttl > 36 {
		t.Errorf("TTL %d, want 30..36", ttl)
	}
}

// TestOPTNeverTouched puts an OPT record whose TTL field is below the floor
// (EDNS version 0, no DO bit, extended rcode 0: a TTL field of 0) through a
// response that is raised: it must come out as it went in.
func TestOPTNeverTouched(t *testing.T) {
	msg := aResponse(3)
	opt := msg.Extra[0]
	if opt.Header().Rrtype != dns.TypeOPT || opt.Header().Ttl != 0 {
		t.Fatalf("the test needs an OPT record with TTL field 0: %v", opt)
	}
	got := serve(t, newMinTTL(held{msg: msg}), client("10.0.0.1"), msg.Question[0].Name, dns.TypeA)
	if ttl := got.Answer[0].Header().Ttl; ttl < 30 {
		t.Fatalf("answer not raised: %d", ttl)
	}
	if got.Extra[0] != opt || opt.Header().Ttl != 0 {
		t.Errorf("OPT record replaced or changed: %v", got.Extra[0])
	}
}

// TestAtTheFloorLeftAlone: TTLs at the floor are left alone, also beside
// records below it that are raised, in the same response (the answer section
// at the floor, the additional below it) and in the same section (one
// additional A RRset at the floor, the others below it).
func TestAtTheFloorLeftAlone(t *testing.T) {
	aboveFloor := false
	for i := 1; i <= 20; i++ {
		msg := srvResponse(30)
		msg.Extra[1].Header().Ttl, msg.Extra[2].Header().Ttl = 3, 3
		got := serve(t, newMinTTL(fixed{msg: msg}), client(fmt.Sprintf("10.0.1.%d", i)), srvName, dns.TypeSRV)
		if !slices.Equal(ttls(got.Answer), []uint32{30, 30, 30}) || got.Extra[0].Header().Ttl != 30 {
			t.Errorf("client %d: TTLs at the floor changed: answer %v, additional %v", i, ttls(got.Answer), ttls(got.Extra))
		}
		raised := got.Extra[1].Header().Ttl
		if raised < 30 || raised > 36 || got.Extra[2].Header().Ttl != raised {
			t.Errorf("client %d: additional %v, want the low A records raised to one TTL in 30..36", i, ttls(got.Extra))
		}
		aboveFloor = aboveFloor || raised > 30
	}
	if !aboveFloor {
		t.Fatal("every client got jitter 0: raising the records at the floor would not show")
	}
}

func TestNonQueryOpcodesPassThrough(t *testing.T) {
	for _, opcode := range []int{dns.OpcodeIQuery, dns.OpcodeStatus, dns.OpcodeNotify, dns.OpcodeUpdate} {
		msg := srvResponse(1)
		m := newMinTTL(held{msg: msg})
		req := new(dns.Msg)
		req.SetQuestion(srvName, dns.TypeSRV)
		req.Opcode = opcode
		rec := dnstest.NewRecorder(client("10.0.0.1"))
		if _, err := m.ServeDNS(context.Background(), rec, req); err != nil {
			t.Fatal(err)
		}
		if rec.Msg != msg {
			t.Errorf("opcode %s: response rewritten: %v", dns.OpcodeToString[opcode], ttls(rec.Msg.Answer))
		}
	}
}

// TestOtherRcodesUntouchedWithNegative: negative acts on NXDOMAIN and NODATA
// answers only, never on an error.
func TestOtherRcodesUntouchedWithNegative(t *testing.T) {
	for _, rcode := range []int{dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeFormatError, dns.RcodeNotImplemented, dns.RcodeYXDomain} {
		for _, msg := range []*dns.Msg{negativeResponse(rcode, 2), withRcode(srvResponse(1), rcode)} {
			m := newMinTTL(held{msg: msg})
			m.Negative, m.NegativeJitter = 60, 12
			if got := serve(t, m, client("10.0.0.1"), srvName, dns.TypeSRV); got != msg {
				t.Errorf("%s with negative: rewritten to %v %v", dns.RcodeToString[rcode], ttls(got.Answer), ttls(got.Ns))
			}
		}
	}
}

// TestTypesKeepRRSIGWithItsType: an RRSIG is raised with the RRset it covers
// when types names that RRset's type, and left with it when types does not.
func TestTypesKeepRRSIGWithItsType(t *testing.T) {
	msg := srvResponse(2)
	msg.Answer = append(msg.Answer, test.RRSIG(srvName+" 2 IN RRSIG SRV 8 6 5 20300101000000 20200101000000 12345 cluster.local. c2ln"))
	msg.Extra = append(msg.Extra, test.RRSIG("10-244-0-1.linkerd-policy.linkerd.svc.cluster.local. 2 IN RRSIG A 8 6 5 20300101000000 20200101000000 12345 cluster.local. c2ln"))
	for _, tc := range []struct {
		types  []uint16
		srv, a bool // raised
	}{
		{[]uint16{dns.TypeSRV}, true, false},
		{[]uint16{dns.TypeA}, false, true},
		{[]uint16{dns.TypeSRV, dns.TypeA}, true, true},
	} {
		m := newMinTTL(fixed{msg: msg})
		m.Types = tc.types
		got := serve(t, m, client("10.0.0.1"), srvName, dns.TypeSRV)
		for _, c := range []struct {
			name       string
			rrset, sig uint32
			raised     bool
		}{
			{"SRV", got.Answer[0].Header().Ttl, got.Answer[3].Header().Ttl, tc.srv},
			{"A", got.Extra[0].Header().Ttl, got.Extra[4].Header().Ttl, tc.a},
		} {
			if (c.rrset >= 30) != c.raised || c.sig != c.rrset {
				t.Errorf("types %v: %s at %d, its RRSIG at %d; want raised %v, the RRSIG with it", tc.types, c.name, c.rrset, c.sig, c.raised)
			}
		}
	}
}

// TestIPv6NodesKeepTheirOwnKeys: pods of different nodes' /64s whose node and
// pod numbers fold alike (N ^ P) get keys of their own, neighbours in a prefix
// are consecutive pods of one node, the next node's prefix (/24, /64, /80) is
// the next node, and an IPv4-mapped address is the IPv4 address.
func TestIPv6NodesKeepTheirOwnKeys(t *testing.T) {
	keys := map[uint64]string{}
	for _, ip := range []string{"fd00:10:244:1::2", "fd00:10:244:2::1", "fd00:10:244:3::", "fd00:10:244::3", "fd00:10:244:1::3"} {
		k := clientKey(&net.UDPAddr{IP: net.ParseIP(ip)}, srvName)
		if other, seen := keys[k]; seen {
			t.Errorf("%s and %s share key %#x", ip, other, k)
		}
		keys[k] = ip
	}
	for _, pair := range [][2]string{
		{"fd00:10:244:7::a", "fd00:10:244:7::b"}, {"10.244.7.10", "10.244.7.11"},
		{"fd00:10:244:7::a", "fd00:10:244:8::a"}, {"2600:1f14:abc:1200:8c07::a", "2600:1f14:abc:1200:8c08::a"}, {"10.244.7.10", "10.244.8.10"},
		{"10.244.255.10", "10.245.0.10"}, {"fd00:10:244:ff::a", "fd00:10:244:100::a"},
	} {
		n1, p1 := nodeAndPod(net.ParseIP(pair[0]))
		n2, p2 := nodeAndPod(net.ParseIP(pair[1]))
		if pods := p1 != p2; pods && (n1 != n2 || p2-p1 != 1) || !pods && n2-n1 != 1 {
			t.Errorf("%s: node %d pod %d; %s: node %d pod %d", pair[0], n1, p1, pair[1], n2, p2)
		}
	}
	n1, p1 := nodeAndPod(net.ParseIP("::ffff:10.244.0.7"))
	n2, p2 := nodeAndPod(net.ParseIP("10.244.0.7"))
	if n1 != n2 || p1 != p2 {
		t.Errorf("IPv4-mapped node %d pod %d, IPv4 node %d pod %d", n1, p1, n2, p2)
	}
}

// TestNameKeyIgnoresCase: 0x20-randomized queries (RFC draft-vixie-dnsext-dns0x20)
// of one client get the slot of the lower-case name.
func TestNameKeyIgnoresCase(t *testing.T) {
	addr := &net.UDPAddr{IP: net.ParseIP("10.244.0.7"), Port: 53}
	for _, name := range []string{"LINKERD-POLICY.LINKERD.SVC.CLUSTER.LOCAL.", "LiNkErD-pOlIcY.linkerd.SVC.cluster.LOCAL.", "Az.Za.@[.`{."} {
		if clientKey(addr, name) != clientKey(addr, strings.ToLower(name)) {
			t.Errorf("%s: key differs from the lower-case name's", name)
		}
	}
	if clientKey(addr, "a@.") == clientKey(addr, "a`.") || clientKey(addr, "a[.") == clientKey(addr, "a{.") {
		t.Error("characters next to the letters folded")
	}
	m := newMinTTL(fixed{msg: srvResponse(1)})
	for i := 1; i <= 60; i++ {
		w := client(fmt.Sprintf("10.244.9.%d", i))
		lower := serve(t, m, w, srvName, dns.TypeSRV).Answer[0].Header().Ttl
		mixed := serve(t, m, w, "LinKerd-Policy.linkerd.svc.cluster.local.", dns.TypeSRV).Answer[0].Header().Ttl
		if lower != mixed {
			t.Errorf("client %d: TTL %d for the name, %d for it 0x20-randomized", i, lower, mixed)
		}
	}
}

// proxied is an address as CoreDNS's proxyproto plugin (v1.15) hands it out:
// the address of the load balancer the packet came from, wrapping the
// client's address from the PROXY header.
type proxied struct{ balancer, client net.Addr }

func (p *proxied) Network() string  { return p.balancer.Network() }
func (p *proxied) String() string   { return p.client.String() }
func (p *proxied) Unwrap() net.Addr { return p.client }

// TestProxiedClientsSpread: 40 clients behind one PROXY-protocol load
// balancer get the TTLs they would get talking to CoreDNS directly, spread.
func TestProxiedClientsSpread(t *testing.T) {
	m := newMinTTL(fixed{msg: srvResponse(1)})
	balancer := &net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: 5353}
	seen := map[uint32]bool{}
	for i := 1; i <= 40; i++ {
		for _, direct := range []net.Addr{
			&net.UDPAddr{IP: net.IPv4(10, 244, 3, byte(i)), Port: 40000 + i},
			&net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("2001:db8::%x", i)), Port: 40000 + i},
		} {
			want := serve(t, m, &sink{addr: direct}, srvName, dns.TypeSRV).Answer[0].Header().Ttl
			got := serve(t, m, &sink{addr: &proxied{balancer: balancer, client: direct}}, srvName, dns.TypeSRV).Answer[0].Header().Ttl
			if got != want {
				t.Errorf("client %v behind the balancer: TTL %d, directly %d", direct, got, want)
			}
			seen[got] = true
		}
	}
	if len(seen) < 5 {
		t.Errorf("80 clients behind one balancer got only the TTLs %v", seen)
	}
}

// TestProxiedClientKeyAllocatesNothing: unwrapping is on the hot path of
// every raised response.
func TestProxiedClientKeyAllocatesNothing(t *testing.T) {
	addr := &proxied{balancer: &net.UDPAddr{IP: net.ParseIP("192.0.2.1")}, client: &net.UDPAddr{IP: net.ParseIP("10.244.0.8")}}
	if got := testing.AllocsPerRun(100, func() { clientKey(addr, srvName) }); got != 0 {
		t.Errorf("client key of a proxied client: %v allocations", got)
	}
}

// TestClientIPAgreesWithRequest feeds clientIP and CoreDNS's own
// request.Request.IP the same remote addresses.
func TestClientIPAgreesWithRequest(t *testing.T) {
	balancer := &net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: 5353}
	addrs := []net.Addr{
		&net.UDPAddr{IP: net.ParseIP("10.244.0.7"), Port: 53},
		&net.TCPAddr{IP: net.ParseIP("10.244.0.7"), Port: 53},
		&net.UDPAddr{IP: net.IPv4(10, 244, 0, 7).To4(), Port: 53},
		&net.UDPAddr{IP: net.ParseIP("2001:db8::7"), Port: 53},
		&net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 53},
		&net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 53, Zone: "eth0"},
		&net.UDPAddr{},
		&net.TCPAddr{IP: net.IP{1, 2, 3}},
		&proxied{balancer: balancer, client: &net.UDPAddr{IP: net.ParseIP("10.244.0.8"), Port: 1}},
		&proxied{balancer: balancer, client: &net.TCPAddr{IP: net.ParseIP("2001:db8::8"), Port: 1}},
		&net.UnixAddr{Name: "/run/coredns.sock", Net: "unix"},
	}
	for _, addr := range addrs {
		theirs := (&request.Request{W: &sink{addr: addr}}).IP()
		if host, _, zoned := strings.Cut(theirs, "%"); zoned {
			theirs = host // clientIP has no zone, and the key needs none
		}
		if got, want := canonicalIP(clientIP(addr)), canonicalIP(net.ParseIP(theirs)); got != want {
			t.Errorf("%T %v: clientIP %q, request.IP %q", addr, addr, got, want)
		}
	}

	// Where they differ, by design: request.IP parses the String of an
	// address of a type CoreDNS's servers never hand out (neither UDP nor TCP,
	// nor wrapping one); clientIP parses no strings on the hot path and gives
	// such a client the key of "no address".
	odd := &net.IPAddr{IP: net.ParseIP("10.244.0.9")}
	if got, theirs := clientIP(odd), (&request.Request{W: &sink{addr: odd}}).IP(); got != nil || theirs != "10.244.0.9" {
		t.Errorf("%T: clientIP %v, request.IP %q; want nil and the address", odd, got, theirs)
	}
}

// canonicalIP is ip in text, or "" if it is no valid address.
func canonicalIP(ip net.IP) string {
	if ip.To16() == nil {
		return ""
	}
	return ip.String()
}

// TestNODATABehindCNAME: in a positive answer the SOA, NSEC and NSEC3
// records of the authority section (and their RRSIGs) are negative data. A
// NOERROR answer whose CNAME chain ends in no data is a NODATA answer (RFC
// 2308 §2.2): its CNAME is raised, its SOA only with negative, to the
// negative floor; NSEC records stay as they are.
func TestNODATABehindCNAME(t *testing.T) {
	msg := new(dns.Msg)
	msg.SetQuestion("www.linkerd.svc.cluster.local.", dns.TypeAAAA)
	msg.Response = true
	msg.Answer = []dns.RR{test.CNAME("www.linkerd.svc.cluster.local. 2 IN CNAME web.linkerd.svc.cluster.local.")}
	msg.Ns = negativeResponse(dns.RcodeSuccess, 5).Ns // SOA, RRSIG(SOA), NSEC
	msg.Ns = append(msg.Ns,
		test.RRSIG("cluster.local. 5 IN RRSIG NSEC 8 2 5 20300101000000 20200101000000 12345 cluster.local. c2ln"),
		&dns.NSEC3{Hdr: dns.RR_Header{Name: "abc.cluster.local.", Rrtype: dns.TypeNSEC3, Class: dns.ClassINET, Ttl: 5}, Hash: 1, HashLength: 1, NextDomain: "b", TypeBitMap: []uint16{dns.TypeA}},
		test.NS("cluster.local. 5 IN NS ns.dns.cluster.local."))

	for _, tc := range []struct {
		name             string
		floor            uint32
		negative, negJit uint32
		soaLow, soaHigh  uint32
	}{
		{"without negative", 3600, 0, 0, 5, 5},
		{"with negative", 3600, 10, 2, 10, 12},
	} {
		m := newMinTTL(fixed{msg: msg})
		m.Floor, m.Jitter, m.Negative, m.NegativeJitter = tc.floor, 720, tc.negative, tc.negJit
		got := serve(t, m, client("10.0.0.1"), msg.Question[0].Name, dns.TypeAAAA)
		if ttl := got.Answer[0].Header().Ttl; ttl < 3600 || ttl > 4320 {
			t.Errorf("%s: CNAME at %d, want 3600..4320", tc.name, ttl)
		}
		soa, sig := got.Ns[0].Header().Ttl, got.Ns[1].Header().Ttl
		if soa < tc.soaLow || soa > tc.soaHigh || sig != soa {
			t.Errorf("%s: SOA at %d, its RRSIG at %d; want one TTL in %d..%d", tc.name, soa, sig, tc.soaLow, tc.soaHigh)
		}
		if proofs := ttls(got.Ns[2:5]); !slices.Equal(proofs, []uint32{5, 5, 5}) {
			t.Errorf("%s: NSEC, its RRSIG and NSEC3 changed to %v", tc.name, proofs)
		}
		if ns := got.Ns[5].Header().Ttl; ns < 3600 {
			t.Errorf("%s: NS record of the authority section (positive data) left at %d", tc.name, ns)
		}
	}

	// And the SOA is what makes such an answer worth raising, with negative.
	nodata := msg.Copy()
	nodata.Answer[0].Header().Ttl = 300
	nodata.Ns = nodata.Ns[:1]
	m := newMinTTL(held{msg: nodata})
	if got := serve(t, m, client("10.0.0.1"), msg.Question[0].Name, dns.TypeAAAA); got != nodata {
		t.Errorf("without negative: %v %v, want it passed through", ttls(got.Answer), ttls(got.Ns))
	}
	m.Negative, m.NegativeJitter = 10, 2
	got := serve(t, m, client("10.0.0.1"), msg.Question[0].Name, dns.TypeAAAA)
	if cname, soa := got.Answer[0].Header().Ttl, got.Ns[0].Header().Ttl; cname != 300 || soa < 10 || soa > 12 {
		t.Errorf("with negative 10: CNAME %d, SOA %d; want 300 and 10..12", cname, soa)
	}
}

// TestSOAAnswerIsPositive: an SOA asked for is a positive answer's record.
func TestSOAAnswerIsPositive(t *testing.T) {
	msg := new(dns.Msg)
	msg.SetQuestion("linkerd.svc.cluster.local.", dns.TypeSOA)
	msg.Response = true
	msg.Answer = []dns.RR{test.SOA("linkerd.svc.cluster.local. 3 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5")}
	msg.Ns = []dns.RR{&dns.NSEC{Hdr: dns.RR_Header{Name: "x.linkerd.svc.cluster.local.", Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: 3}, NextDomain: "y.linkerd.svc.cluster.local.", TypeBitMap: []uint16{dns.TypeA}}}
	got := serve(t, newMinTTL(fixed{msg: msg}), client("10.0.0.1"), "linkerd.svc.cluster.local.", dns.TypeSOA)
	if soa, nsec := got.Answer[0].Header().Ttl, got.Ns[0].Header().Ttl; soa < 30 || soa > 36 || nsec != 3 {
		t.Errorf("SOA answer at %d, want 30..36; authority NSEC at %d, want 3", soa, nsec)
	}
}

// TestNegativeJitterRidesOnNegativeFloor: the SOA of a negative answer gets
// the jitter of the negative floor, not the positive floor's.
func TestNegativeJitterRidesOnNegativeFloor(t *testing.T) {
	c := caddy.NewTestController("dns", "minttl {\n floor 1h\n negative 10s\n}")
	c.ServerBlockKeys = []string{"cluster.local.:53"}
	m, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	m.Next, m.now = fixed{msg: negativeResponse(dns.RcodeNameError, 2)}, func() time.Time { return pinned }
	m.Zones = []string{"linkerd.svc.cluster.local."}
	seen := map[uint32]bool{}
	for i := 1; i <= 30; i++ {
		soa := serve(t, m, client(fmt.Sprintf("10.0.2.%d", i)), srvName, dns.TypeSRV).Ns[0].Header().Ttl
		if soa < 10 || soa > 13 { // 30 % of 10 s
			t.Errorf("client %d: NXDOMAIN SOA at %d, want 10..13", i, soa)
		}
		seen[soa] = true
	}
	if len(seen) < 2 {
		t.Errorf("30 clients got one SOA TTL %v: no jitter", seen)
	}
}

// TestRFC3597RRSIGDoesNotPanic: a record of type RRSIG that is not a
// *dns.RRSIG (a plugin can build one) is an RRset of its own.
func TestRFC3597RRSIGDoesNotPanic(t *testing.T) {
	msg := srvResponse(2)
	msg.Answer = append(msg.Answer, &dns.RFC3597{Hdr: dns.RR_Header{Name: srvName, Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: 2}, Rdata: "0021"})
	got := serve(t, newMinTTL(fixed{msg: msg}), client("10.0.0.1"), srvName, dns.TypeSRV)
	if srv, sig := got.Answer[0].Header().Ttl, got.Answer[3].Header().Ttl; srv < 30 || sig != srv {
		t.Errorf("SRV at %d, RRSIG (RFC 3597) at %d: want both raised to one TTL", srv, sig)
	}
}

// TestTypeLabelsBounded: 100 unknown types raised in one zone make one series,
// type="other", and one entry in the counter map.
func TestTypeLabelsBounded(t *testing.T) {
	zone := fresh("types.test.")
	m := newMinTTL(nil)
	m.Zones = []string{zone}
	series := testutil.CollectAndCount(raisedRecords)
	for i := 0; i < 100; i++ {
		typ := uint16(65280 + i)
		msg := new(dns.Msg)
		msg.SetQuestion("u."+zone, typ)
		msg.Response = true
		msg.Answer = []dns.RR{&dns.RFC3597{Hdr: dns.RR_Header{Name: "u." + zone, Rrtype: typ, Class: dns.ClassINET, Ttl: 1}, Rdata: "00"}}
		m.Next = held{msg: msg}
		serve(t, m, client("10.0.0.1"), "u."+zone, typ)
	}
	if n := testutil.CollectAndCount(raisedRecords) - series; n != 1 {
		t.Errorf("100 unknown types made %d new series, want 1", n)
	}
	if n := testutil.ToFloat64(raisedRecords.WithLabelValues("", zone, "other")); n != 100 {
		t.Errorf(`type="other" counts %v, want 100`, n)
	}
	if byType := m.registry.countersFor("", zone).byType.Load(); byType == nil || len(*byType) != 1 {
		t.Errorf("the counter map holds %v, want one type", byType)
	}
}

// TestTypeLabelAgreesWithCoreDNS feeds typeLabel and CoreDNS's own metrics
// (the type label of coredns_dns_requests_total) the same types.
func TestTypeLabelAgreesWithCoreDNS(t *testing.T) {
	types := map[uint16]bool{0: true, 127: true, 128: true, 256: true, 32767: true, 65280: true, 65535: true}
	for typ := range dns.TypeToString {
		types[typ] = true
	}
	server := fresh("typelabel")
	for typ := range types {
		zone := fmt.Sprintf("t%d.typelabel.test.", typ)
		req := new(dns.Msg)
		req.SetQuestion("x."+zone, typ)
		vars.Report(server, request.Request{W: &test.ResponseWriter{}, Req: req}, zone, "", "NOERROR", "minttl", 0, time.Now())
		ours := typeLabel(typ)
		theirs := "other"
		if testutil.ToFloat64(vars.RequestCount.WithLabelValues(server, zone, "", "udp", "1", "other")) == 0 {
			theirs = dns.Type(typ).String()
		}
		if testutil.ToFloat64(vars.RequestCount.WithLabelValues(server, zone, "", "udp", "1", theirs)) != 1 {
			t.Fatalf("type %d: CoreDNS counted the request under neither %q nor other", typ, theirs)
		}
		if ours == theirs {
			continue
		}
		// CoreDNS names SVCB since v1.14.3; minttl does, whatever CoreDNS it is built with.
		if typ == dns.TypeSVCB && ours == "SVCB" {
			t.Logf("this CoreDNS files SVCB under %q; minttl names it", theirs)
			continue
		}
		t.Errorf("type %d: minttl's label %q, CoreDNS's %q", typ, ours, theirs)
	}
}

var runs int

// fresh returns name prefixed with a label new to this test binary, for
// metric labels that -count=2 must not find already counted.
func fresh(name string) string {
	runs++
	return fmt.Sprintf("run%d.%s", runs, name)
}

// TestMetricsCountEveryType: a response raising more record types than the
// copier tracks inline still counts each type.
func TestMetricsCountEveryType(t *testing.T) {
	zone := fresh("many.test.")
	name := "x." + zone
	msg := new(dns.Msg)
	msg.SetQuestion(name, dns.TypeA)
	msg.Response = true
	for _, rr := range []string{"A 10.0.0.1", "A 10.0.0.2", "AAAA ::1", "SRV 0 0 53 y." + zone, `TXT "t"`, "MX 10 y." + zone, "PTR y." + zone, "A 10.0.0.3"} {
		r, err := dns.NewRR(name + " 1 IN " + rr)
		if err != nil {
			t.Fatal(err)
		}
		msg.Answer = append(msg.Answer, r)
	}
	m := newMinTTL(held{msg: msg})
	m.Zones = []string{zone}
	serve(t, m, client("10.0.0.1"), name, dns.TypeA)
	for typ, want := range map[string]float64{"A": 3, "AAAA": 1, "SRV": 1, "TXT": 1, "MX": 1, "PTR": 1} {
		if got := testutil.ToFloat64(raisedRecords.WithLabelValues("", zone, typ)); got != want {
			t.Errorf("%s: %v raised, want %v", typ, got, want)
		}
	}
}

// soaResponse is a negative answer whose SOA has ttl and minimum, unsigned.
func soaResponse(rcode int, ttl, minimum uint32) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(srvName, dns.TypeSRV)
	m.Response, m.Rcode = true, rcode
	m.Ns = []dns.RR{test.SOA(fmt.Sprintf("cluster.local. %d IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 %d", ttl, minimum))}
	return m
}

// TestNegativeRaisesMinimum: RFC 2308 §5 resolvers cache a negative answer
// for min(SOA TTL, SOA MINIMUM), so negative raises MINIMUM with the TTL
// (never lowering it), and leaves it alone where an RRSIG covers the SOA or
// where the SOA is the answer itself.
func TestNegativeRaisesMinimum(t *testing.T) {
	for _, tc := range []struct {
		name             string
		msg              *dns.Msg
		wantTTL, wantMin func(target uint32) uint32
	}{
		{"decayed TTL, MINIMUM of the kubernetes plugin", soaResponse(dns.RcodeNameError, 2, 5),
			func(t uint32) uint32 { return t }, func(t uint32) uint32 { return t }},
		{"NODATA", soaResponse(dns.RcodeSuccess, 3, 5),
			func(t uint32) uint32 { return t }, func(t uint32) uint32 { return t }},
		{"a TTL of an hour, MINIMUM 5: only MINIMUM is low", soaResponse(dns.RcodeNameError, 3600, 5),
			func(uint32) uint32 { return 3600 }, func(t uint32) uint32 { return t }},
		{"MINIMUM above the floor stays", soaResponse(dns.RcodeNameError, 2, 45),
			func(t uint32) uint32 { return t }, func(uint32) uint32 { return 45 }},
		{"MINIMUM above the target is never lowered", soaResponse(dns.RcodeNameError, 2, 900),
			func(t uint32) uint32 { return t }, func(uint32) uint32 { return 900 }},
		{"signed: the RRSIG covers MINIMUM", signedSOA(soaResponse(dns.RcodeNameError, 2, 5)),
			func(t uint32) uint32 { return t }, func(uint32) uint32 { return 5 }},
	} {
		m := newMinTTL(fixed{msg: tc.msg})
		m.Negative, m.NegativeJitter = 30, 6
		got := serve(t, m, client("10.0.0.1"), srvName, dns.TypeSRV)
		soa := got.Ns[0].(*dns.SOA)
		target := soa.Hdr.Ttl
		if soa.Hdr.Ttl == 3600 {
			target = soa.Minttl
		}
		if target < 30 || target > 36 || soa.Hdr.Ttl != tc.wantTTL(target) || soa.Minttl != tc.wantMin(target) {
			t.Errorf("%s: SOA left with TTL %d, MINIMUM %d", tc.name, soa.Hdr.Ttl, soa.Minttl)
		}
	}

	// Without negative, and for an SOA answer (positive data), MINIMUM stays.
	m := newMinTTL(fixed{msg: soaResponse(dns.RcodeNameError, 2, 5)})
	if got := serve(t, m, client("10.0.0.1"), srvName, dns.TypeSRV).Ns[0].(*dns.SOA); got.Hdr.Ttl != 2 || got.Minttl != 5 {
		t.Errorf("without negative: SOA left with TTL %d, MINIMUM %d", got.Hdr.Ttl, got.Minttl)
	}
	answer := soaResponse(dns.RcodeSuccess, 2, 5)
	answer.Answer, answer.Ns = answer.Ns, nil
	m = newMinTTL(fixed{msg: answer})
	m.Zones, m.Negative = []string{"cluster.local."}, 30
	if got := serve(t, m, client("10.0.0.1"), "cluster.local.", dns.TypeSOA).Answer[0].(*dns.SOA); got.Hdr.Ttl < 30 || got.Minttl != 5 {
		t.Errorf("SOA answer left with TTL %d, MINIMUM %d: want the TTL raised, MINIMUM as it came", got.Hdr.Ttl, got.Minttl)
	}
}

func signedSOA(m *dns.Msg) *dns.Msg {
	m.Ns = append(m.Ns, test.RRSIG("cluster.local. 2 IN RRSIG SOA 8 2 5 20300101000000 20200101000000 12345 cluster.local. c2ln"))
	return m
}

// TestWriteNilMsg: as CoreDNS's own writers (cache, loadbalance, rewrite), an error, not a panic.
func TestWriteNilMsg(t *testing.T) {
	w := &ResponseWriter{ResponseWriter: dnstest.NewRecorder(&test.ResponseWriter{}), MinTTL: newMinTTL(nil)}
	if err := w.WriteMsg(nil); err == nil {
		t.Error("WriteMsg(nil): no error")
	}
}

// mixedSection is n records in RRsets of a few names in mixed case, with
// TTLs all over the place, one above 2^31-1 now and then.
func mixedSection(rng *rand.Rand, n int) []dns.RR {
	names := []string{"a.linkerd.svc.cluster.local.", "A.Linkerd.svc.cluster.local.", "b.linkerd.svc.cluster.local."}
	rrs := make([]dns.RR, n)
	for i := range rrs {
		ttl := uint32(rng.Intn(60))
		if rng.Intn(50) == 0 {
			ttl = 1 << 31
		}
		name := names[rng.Intn(len(names))]
		switch rng.Intn(3) {
		case 0:
			rrs[i] = test.A(fmt.Sprintf("%s %d IN A 10.0.0.%d", name, ttl, i%250))
		case 1:
			rrs[i] = test.SOA(fmt.Sprintf("%s %d IN SOA ns. host. 1 2 3 4 %d", name, ttl, rng.Intn(60)))
		default:
			rrs[i] = test.RRSIG(fmt.Sprintf("%s %d IN RRSIG A 8 2 5 20300101000000 20200101000000 1 x. c2ln", name, ttl))
		}
	}
	return rrs
}

// TestGroupedRRsetsAgreeWithPairs feeds mixed sections too large to compare
// pair by pair to both ways of finding an RRset's span.
func TestGroupedRRsetsAgreeWithPairs(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	sc := scope{positive: level{floor: 30}, negative: level{floor: 30, minimum: true}, authority: true}
	for k := 0; k < 200; k++ {
		rrs := mixedSection(rng, smallSection+1+rng.Intn(60))
		grouped := rrsetsOf(rrs, sc)
		if grouped.uniform || grouped.grouped == nil {
			t.Fatalf("a mixed section of %d records was not grouped", len(rrs))
		}
		pairs := rrsets{rrs: rrs}
		for i, rr := range rrs {
			lv := sc.levelOf(rrsetType(rr))
			if g, p := grouped.spanOf(i, lv, rr.Header().Ttl), pairs.spanOf(i, lv, rr.Header().Ttl); g != p {
				t.Fatalf("%s: grouped %+v, pair by pair %+v", rr, g, p)
			}
		}
	}
}

// TestLargeMixedRRsetLeavesWithOneTTL: an RRset of 4,000 A records with
// alternating TTLs, as a 64 KB TCP answer holds, leaves with one TTL.
func TestLargeMixedRRsetLeavesWithOneTTL(t *testing.T) {
	msg := mixedARRset(4000)
	got := serve(t, newMinTTL(fixed{msg: msg}), client("10.0.0.1"), srvName, dns.TypeA)
	for _, rr := range got.Answer {
		if rr.Header().Ttl != 40 {
			t.Fatalf("%s: want the RRset's highest TTL, 40", rr)
		}
	}
}

func mixedARRset(n int) *dns.Msg {
	msg := new(dns.Msg)
	msg.SetQuestion(srvName, dns.TypeA)
	msg.Response = true
	for i := 0; i < n; i++ {
		msg.Answer = append(msg.Answer, &dns.A{Hdr: dns.RR_Header{Name: srvName, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: uint32(1 + 39*(i%2))}, A: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))})
	}
	return msg
}

// TestSoundRRsetBesideOneAbove2To31: in a section that holds an RRset with a
// TTL above 2^31-1 (left as it came), another RRset is raised exactly when a
// client would cache one of its records for less than the floor.
func TestSoundRRsetBesideOneAbove2To31(t *testing.T) {
	const target = "10-244-0-1.linkerd-policy.linkerd.svc.cluster.local."
	above := func(msg *dns.Msg) *dns.Msg {
		msg.Answer[0].Header().Ttl, msg.Answer[1].Header().Ttl, msg.Answer[2].Header().Ttl = 1, 1<<31, 1
		return msg
	}

	// An RRset at the floor beside one above 2^31-1: neither is raised, nothing copied.
	msg := above(srvResponse(300))
	msg.Answer = append(msg.Answer, test.A(target+" 30 IN A 10.244.0.1"))
	if got := serve(t, newMinTTL(held{msg: msg}), client("10.0.0.1"), srvName, dns.TypeSRV); got != msg {
		t.Errorf("an RRset at the floor beside one above 2^31-1: copied to %v", ttls(got.Answer))
	}

	// An RRset whose highest TTL is 2^31-1 itself is sound: raised to it.
	msg = above(srvResponse(300))
	msg.Answer = append(msg.Answer, test.A(target+" 1 IN A 10.244.0.1"), test.A(fmt.Sprintf("%s %d IN A 10.244.0.2", target, maxTTL)))
	got := serve(t, newMinTTL(fixed{msg: msg}), client("10.0.0.1"), srvName, dns.TypeSRV)
	if got, want := ttls(got.Answer), []uint32{1, 1 << 31, 1, maxTTL, maxTTL}; !slices.Equal(got, want) {
		t.Errorf("answer left with %v, want %v", got, want)
	}
}

// TestCountersFollowZoneAndServer: a handler keeps the counters it used last,
// and counts into others when the zone or the server changes.
func TestCountersFollowZoneAndServer(t *testing.T) {
	m := newMinTTL(fixed{msg: srvResponse(3)})
	m.Zones = []string{"one.counters.test.", "two.counters.test."}
	servers := []context.Context{
		context.WithValue(context.Background(), dnsserver.Key{}, &dnsserver.Server{Addr: "dns://:1053"}),
		context.WithValue(context.Background(), dnsserver.Key{}, &dnsserver.Server{Addr: "dns://:1054"}),
	}
	counter := func(server, zone string) prometheus.Counter { return raisedResponses.WithLabelValues(server, zone) }
	type count struct {
		server, zone string
		want         float64
	}
	counts := []count{{"dns://:1053", "one.counters.test.", 2}, {"dns://:1053", "two.counters.test.", 1}, {"dns://:1054", "one.counters.test.", 1}}
	before := map[count]float64{}
	for _, c := range counts {
		before[c] = testutil.ToFloat64(counter(c.server, c.zone))
	}
	for _, q := range []struct {
		server int
		name   string
	}{{0, "a.one.counters.test."}, {0, "a.two.counters.test."}, {0, "a.one.counters.test."}, {1, "a.one.counters.test."}} {
		req := new(dns.Msg)
		req.SetQuestion(q.name, dns.TypeSRV)
		if _, err := m.ServeDNS(servers[q.server], dnstest.NewRecorder(client("10.0.0.1")), req); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range counts {
		if got := testutil.ToFloat64(counter(c.server, c.zone)) - before[c]; got != c.want {
			t.Errorf("raised responses of %s in %s went up by %v, want %v", c.server, c.zone, got, c.want)
		}
	}
}

// TestMinimumFollowsTheTarget: negative raises a MINIMUM below the target,
// not only below the floor. The kubernetes plugin's MINIMUM is its ttl, which
// the negative floor often repeats (ttl 30, negative 30s): kept at 30, it
// would have every RFC 2308 resolver cache the answer for 30 s, in step,
// whatever the jitter. A MINIMUM at or above the target stays.
func TestMinimumFollowsTheTarget(t *testing.T) {
	for _, minimum := range []uint32{30, 35} {
		above := false
		for i := 1; i <= 40; i++ {
			m := newMinTTL(fixed{msg: soaResponse(dns.RcodeNameError, 25, minimum)})
			m.Negative, m.NegativeJitter = 30, 9
			soa := serve(t, m, client(fmt.Sprintf("10.0.0.%d", i)), srvName, dns.TypeSRV).Ns[0].(*dns.SOA)
			target := soa.Hdr.Ttl
			if target < 30 || target > 39 || soa.Minttl != max(minimum, target) {
				t.Errorf("MINIMUM %d, client %d: SOA left with TTL %d, MINIMUM %d; want the TTL at 30..39, MINIMUM the larger of it and %d", minimum, i, target, soa.Minttl, minimum)
			}
			above = above || target > minimum
		}
		if !above {
			t.Errorf("MINIMUM %d: no client's target above it: the test cannot tell it kept from raised", minimum)
		}
	}
}

// kelvin is the Kelvin sign, U+212A, which Unicode folds to "k" and DNS,
// which folds ASCII only (RFC 4343), does not.
const kelvin = "\u212a"

// TestASCIIOnlyCaseFolding: "k" and the Kelvin sign are two names, so two
// RRsets, in a small section (compared pairwise) and in a large one (grouped);
// so are "s" and the long s, ſ. ASCII letters fold, on both paths.
func TestASCIIOnlyCaseFolding(t *testing.T) {
	zone := "k8s.test."
	for _, tc := range []struct {
		low, high string
		one       bool // one RRset
	}{
		{"k." + zone, kelvin + "." + zone, false},
		{"s." + zone, "\u017f." + zone, false},
		{"k." + zone, "K." + zone, true},
	} {
		one := tc.one
		for _, padding := range []int{0, smallSection} {
			msg := new(dns.Msg)
			msg.SetQuestion(tc.low, dns.TypeA)
			msg.Response = true
			msg.Answer = []dns.RR{test.A(tc.low + " 3 IN A 10.0.0.1"), test.A(tc.high + " 300 IN A 10.0.0.2")}
			for i := 0; i < padding; i++ {
				msg.Answer = append(msg.Answer, test.A(fmt.Sprintf("pad%d.%s %d IN A 10.0.1.%d", i, zone, 3+i%2, i)))
			}
			m := newMinTTL(fixed{msg: msg})
			m.Zones = []string{zone}
			got := ttls(serve(t, m, client("10.0.0.1"), tc.low, dns.TypeA).Answer)
			if one && (got[0] != 300 || got[1] != 300) || !one && (got[0] < 30 || got[0] > 36 || got[1] != 300) {
				t.Errorf("%q and %q (%d more records): TTLs %v, want %s", tc.low, tc.high, padding, got[:2],
					map[bool]string{true: "one RRset, 300", false: "two RRsets: 30..36, and 300 as it came"}[one])
			}
		}
	}
	// Zones too: σ and Σ (two bytes each) are two names, k8s and K8S one.
	if got := matchZone([]string{"\u03c3.test."}, "x.\u03a3.test."); got != "" {
		t.Errorf("x.\u03a3.test. matched the zone %q", got)
	}
	if got := matchZone([]string{zone}, "x.K8S.TEST."); got != zone {
		t.Errorf("x.K8S.TEST. matched %q, want %q", got, zone)
	}
}

// TestFoldingAgreesWithMiekg: on ASCII names, sameName and lowerASCII agree
// with miekg/dns's CanonicalName (which CoreDNS's cache and rrutil use), and
// matchZone with plugin.Zones.Matches (dns.IsSubDomain). Beyond ASCII,
// IsSubDomain folds ASCII bytes only, as minttl does; CanonicalName maps
// runes with strings.Map, which folds ASCII only too but turns each byte
// that is not UTF-8 into U+FFFD, so names differing there canonicalize alike.
func TestFoldingAgreesWithMiekg(t *testing.T) {
	rng := rand.New(rand.NewSource(4343))
	const letters = "aAbBkKsSzZ09-_.@[`{\\"
	name := func() string {
		b := make([]byte, 1+rng.Intn(6))
		for i := range b {
			b[i] = letters[rng.Intn(len(letters))]
		}
		return strings.Trim(string(b), ".\\") + "x." // no empty label, no escaped last dot
	}
	for i := 0; i < 20000; i++ {
		a, b := name(), name()
		if rng.Intn(2) == 0 { // b a case variant of a
			b = strings.Map(func(r rune) rune {
				if rng.Intn(2) == 0 {
					return unicode.ToUpper(r)
				}
				return r
			}, a)
		}
		if got, want := sameName(a, b), dns.CanonicalName(a) == dns.CanonicalName(b); got != want {
			t.Fatalf("%q, %q: sameName %v, CanonicalName says %v", a, b, got, want)
		}
		if got, want := lowerASCII(a), dns.CanonicalName(a); got != want {
			t.Fatalf("%q: lowerASCII %q, CanonicalName %q", a, got, want)
		}
		zones := []string{strings.SplitN(b, ".", 2)[1], b}
		if zones[0] == "" {
			zones[0] = "."
		}
		if got, want := matchZone(zones, a), plugin.Zones(zones).Matches(a); got != want {
			t.Fatalf("%q in %q: matchZone %q, plugin.Zones.Matches %q", a, zones, got, want)
		}
	}
	// Beyond ASCII: IsSubDomain agrees, CanonicalName differs on bytes that are not UTF-8.
	for _, qname := range []string{"x.\u03a3.test.", "x.\u03c3.test.", kelvin + "8s.test."} {
		zones := []string{"\u03c3.test.", "k8s.test."}
		if got, want := matchZone(zones, qname), plugin.Zones(zones).Matches(qname); got != want {
			t.Errorf("%q: matchZone %q, plugin.Zones.Matches %q", qname, got, want)
		}
	}
	if sameName("\xff.test.", "\xfe.test.") || dns.CanonicalName("\xff.test.") != dns.CanonicalName("\xfe.test.") {
		t.Errorf("bytes 0xFF and 0xFE: sameName %v, CanonicalName %q and %q",
			sameName("\xff.test.", "\xfe.test."), dns.CanonicalName("\xff.test."), dns.CanonicalName("\xfe.test."))
	}
	if got := testing.AllocsPerRun(100, func() { lowerASCII(srvName) }); got != 0 {
		t.Errorf("lowerASCII of a lower-case name: %v allocations", got)
	}
}
