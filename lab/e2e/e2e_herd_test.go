package e2e

// The per-second load metric and observe_only, end to end: switched on and
// off through reload, with every query counted once and every second observed
// once across the reloads.

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/minttl/minttl/lab/internal/lab"
)

func TestE2EObserveOnlyThroughReload(t *testing.T) {
	path, ports, mode := liveCorefile(t, "observe.Corefile", "MODE", "PORT", "METRICS")
	mode("observe_only")
	s := launch(t, path, ports)
	addr := "127.0.0.1:" + s.ports["PORT"]
	c := &dns.Client{Timeout: 2 * time.Second}
	inZone := 0
	ask := func(name string, qtype uint16) uint32 {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		resp, _, err := c.Exchange(q, addr)
		if err != nil || len(resp.Answer) == 0 {
			t.Fatalf("%s: %v %v", name, resp, err)
		}
		if strings.HasSuffix(name, ".linkerd.svc.cluster.local.") {
			inZone++
		}
		return resp.Answer[0].Header().Ttl
	}
	// until asks every 100 ms until the TTL says the mode took effect.
	until := func(want string, ok func(uint32) bool) {
		t.Helper()
		for i := 0; i < 300; i++ {
			if ttl := ask(lab.SRVName, dns.TypeSRV); ok(ttl) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s did not take effect within 300 queries", want)
	}
	observing := func(ttl uint32) bool { return ttl <= 5 }
	raising := func(ttl uint32) bool { return ttl == 30 }

	until("observe_only", observing)
	first, firstAt := scrape(t, s.ports["METRICS"]), time.Now().Unix()
	goroutines := 0.0
	for round := 0; round < 3; round++ {
		mode("")
		until("raising", raising)
		mode("observe_only")
		until("observe_only", observing)
		ask("ns.dns.cluster.local.", dns.TypeA) // outside minttl's zone: not counted
		if round == 0 {
			goroutines = scrape(t, s.ports["METRICS"])["go_goroutines"]
		}
	}
	if g := scrape(t, s.ports["METRICS"])["go_goroutines"]; g > goroutines+2 {
		t.Errorf("goroutines grew from %v to %v over two more rounds of reloads: a ticker left running?", goroutines, g)
	}

	// Every query in the zone is counted once, once its second has closed.
	var sum, count float64
	var at int64
	for i := 0; i < 50; i++ {
		last := scrape(t, s.ports["METRICS"])
		at = time.Now().Unix()
		sum, count = series(last, "_sum")-series(first, "_sum"), series(last, "_count")-series(first, "_count")
		if int(sum) >= inZone {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if int(sum) != inZone {
		t.Errorf("queries_per_second counted %v queries, %d were asked in the zone", sum, inZone)
	}
	// And every second once: as many observations as seconds went by, but
	// for the second being counted at either end.
	if seconds := float64(at - firstAt); count < seconds-2 || count > seconds+2 {
		t.Errorf("queries_per_second observed %v seconds over %v s", count, seconds)
	}
	t.Logf("%d queries in the zone over %d s and 6 reloads: %v counted, %v seconds observed", inZone, at-firstAt, sum, count)
}

// series is the value of the zone's queries_per_second series with suffix (_sum, _count).
func series(scraped map[string]float64, suffix string) float64 {
	for k, v := range scraped {
		if strings.HasPrefix(k, "coredns_minttl_queries_per_second"+suffix+"{") && strings.Contains(k, `zone="linkerd.svc.cluster.local."`) {
			return v
		}
	}
	return 0
}
