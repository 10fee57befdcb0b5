package minttl

// Benchmarks: minttl's writer on realistic responses, and minttl beside the
// in-tree rewrite plugin's `ttl ... 30-` rule on the same responses, so one
// run compares them on one machine:
//
//	go test -run '^$' -bench . -benchmem -count 6 > bench.txt
//	benchstat -filter '.name:Handler' -col /plugin bench.txt

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	_ "github.com/coredns/coredns/plugin/rewrite"
	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
)

// sink is a dns.ResponseWriter that keeps nothing and allocates nothing, so
// benchmarks measure only the plugin in front of it.
type sink struct {
	test.ResponseWriter
	addr net.Addr
}

func (s *sink) RemoteAddr() net.Addr    { return s.addr }
func (s *sink) WriteMsg(*dns.Msg) error { return nil }

func newSink(ip string) *sink { return &sink{addr: &net.UDPAddr{IP: net.ParseIP(ip), Port: 40212}} }

func aResponse(ttl uint32) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion("web.linkerd.svc.cluster.local.", dns.TypeA)
	m.Response = true
	m.Answer = []dns.RR{test.A(fmt.Sprintf("web.linkerd.svc.cluster.local. %d IN A 10.96.1.80", ttl))}
	m.Extra = []dns.RR{test.OPT(1232, false)}
	return m
}

func largeResponse(ttl uint32) *dns.Msg { return addresses(50, ttl) }

// addresses is an answer of n A records.
func addresses(n int, ttl uint32) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion("big.linkerd.svc.cluster.local.", dns.TypeA)
	m.Response = true
	for i := 0; i < n; i++ {
		m.Answer = append(m.Answer, test.A(fmt.Sprintf("big.linkerd.svc.cluster.local. %d IN A 10.1.%d.%d", ttl, i/250, i%250)))
	}
	m.Extra = []dns.RR{test.OPT(1232, false)}
	return m
}

var benchResponses = []struct {
	name string
	msg  *dns.Msg
}{
	{"SRV+3A+OPT", srvResponse(3)},
	{"A", aResponse(3)},
	{"no-change", srvResponse(300)},
	{"NXDOMAIN", negativeResponse(dns.RcodeNameError, 3)},
	{"50A", largeResponse(3)},
}

// BenchmarkWriter measures minttl's ResponseWriter alone.
func BenchmarkWriter(b *testing.B) {
	for _, r := range benchResponses {
		b.Run(r.name, func(b *testing.B) {
			w := &ResponseWriter{ResponseWriter: newSink("10.244.0.7"), MinTTL: newMinTTL(nil), counters: countersOf("linkerd.svc.cluster.local."), qname: r.msg.Question[0].Name}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w.WriteMsg(r.msg)
			}
		})
	}
}

// BenchmarkMixedRRset raises one RRset of n A records with alternating TTLs
// (a zone that is not cached, minttl not right above cache): the time per
// record must stay flat as n grows (it grew with n, 1.75 ms for 500 records
// to 109 ms for 4,000, when each record scanned the whole section).
func BenchmarkMixedRRset(b *testing.B) {
	for _, n := range []int{500, 1000, 2000, 4000} {
		msg := mixedARRset(n)
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			w := &ResponseWriter{ResponseWriter: newSink("10.244.0.7"), MinTTL: newMinTTL(nil), counters: countersOf("linkerd.svc.cluster.local."), qname: srvName}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w.WriteMsg(msg)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		})
	}
}

// handlerFor builds a plugin from a Corefile line the way CoreDNS does, in front of next.
func handlerFor(b testing.TB, directive, input string, next plugin.Handler) plugin.Handler {
	b.Helper()
	setup, err := caddy.DirectiveAction("dns", directive)
	if err != nil {
		b.Fatal(err)
	}
	c := caddy.NewTestController("dns", input)
	c.ServerBlockKeys = []string{"cluster.local.:53"}
	if err := setup(c); err != nil {
		b.Fatal(err)
	}
	cfg := dnsserver.GetConfig(c)
	return cfg.Plugin[len(cfg.Plugin)-1](next)
}

// BenchmarkHandler puts minttl and rewrite side by side, each configured from
// a Corefile line, in front of a backend that writes the response.
func BenchmarkHandler(b *testing.B) {
	plugins := []struct{ directive, input string }{
		{"minttl", "minttl linkerd.svc.cluster.local"},
		{"rewrite", "rewrite continue ttl suffix .linkerd.svc.cluster.local. 30-"},
	}
	for _, r := range benchResponses {
		for _, p := range plugins {
			b.Run("resp="+r.name+"/plugin="+p.directive, func(b *testing.B) {
				h := handlerFor(b, p.directive, p.input, held{msg: r.msg})
				req := new(dns.Msg)
				req.SetQuestion(r.msg.Question[0].Name, r.msg.Question[0].Qtype)
				w := newSink("10.244.0.7")
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					h.ServeDNS(ctx, w, req)
				}
			})
		}
	}
}

// BenchmarkParallelHandler sends queries through one minttl from every
// GOMAXPROCS at once (-cpu 1,2,...): they all count into one window, the
// one place where queries meet.
func BenchmarkParallelHandler(b *testing.B) {
	for _, r := range benchResponses {
		b.Run("resp="+r.name, func(b *testing.B) {
			h := handlerFor(b, "minttl", "minttl linkerd.svc.cluster.local", held{msg: r.msg})
			req := new(dns.Msg)
			req.SetQuestion(r.msg.Question[0].Name, r.msg.Question[0].Qtype)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := newSink("10.244.0.7")
				for pb.Next() {
					h.ServeDNS(context.Background(), w, req)
				}
			})
		})
	}
}

// TestAllocations pins the writer's allocations, which are exact: none when
// nothing changes, and only the copies copy-on-write needs when something does.
func TestAllocations(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  *dns.Msg
		want float64
	}{
		// The copy (message, section slots, first A record), the SRV copies, the other A copies.
		{"SRV+3A+OPT", srvResponse(3), 3},
		// The copy, which holds the A record's.
		{"A", aResponse(3), 1},
		{"no-change", srvResponse(300), 0},
		{"NXDOMAIN without negative", negativeResponse(dns.RcodeNameError, 3), 0},
		// The copy, a slice for 50 records (more than the copy's slots), the other A copies.
		{"50A", largeResponse(3), 3},
		// The copy, whose slots hold the 8 records exactly, the other A copies.
		{"8A", addresses(8, 3), 2},
		{"9A", addresses(9, 3), 3},
	} {
		w := &ResponseWriter{ResponseWriter: newSink("10.244.0.7"), MinTTL: newMinTTL(nil), counters: countersOf("allocs.test."), qname: tc.msg.Question[0].Name}
		w.WriteMsg(tc.msg) // create the metric children first
		if got := testing.AllocsPerRun(100, func() { w.WriteMsg(tc.msg) }); got != tc.want {
			t.Errorf("%s: %v allocations per response, want %v", tc.name, got, tc.want)
		}
	}
	key := func() { clientKey(newSinkAddr, srvName) }
	if got := testing.AllocsPerRun(100, key); got != 0 {
		t.Errorf("client key: %v allocations", got)
	}
	zones := []string{"linkerd.svc.cluster.local."}
	if got := testing.AllocsPerRun(100, func() { matchZone(zones, srvName) }); got != 0 {
		t.Errorf("zone match: %v allocations", got)
	}
}

var newSinkAddr = &net.UDPAddr{IP: net.ParseIP("10.244.0.7"), Port: 40212}
