package e2e

// The per-second load metric and observe_only, end to end: switched on and
// off through reload, with every query counted once and every second observed
// once across the reloads, failed ones and a reload followed by a quiet
// stretch among them.

import (
	"fmt"
	"net"
	"os"
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

// TestE2EFailedReloadsLeaveNothingRunning: five reloads whose new server
// block cannot start (the test holds its port) leave go_goroutines where it
// was. Caddy runs the new instance's OnStartup callbacks, then drops the
// instance without its OnShutdown: whatever minttl started there would run
// for good (before: a ticker each, 15 goroutines became 20).
func TestE2EFailedReloadsLeaveNothingRunning(t *testing.T) {
	t.Parallel() // it mostly waits for the reload plugin: beside the other tests
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	path, ports, block := liveCorefile(t, "failedreload.Corefile", "TAKEN", "PORT", "METRICS")
	block("")
	s := launch(t, path, ports)
	ask(t, s.ports["PORT"]) // whatever starts with the first query in the zone has started
	before := goroutines(t, s.ports["METRICS"])
	for i := 0; i < 5; i++ {
		// A floor of its own each time: the reload plugin tries a Corefile once.
		block(fmt.Sprintf("other.local:%d {\n    bind 127.0.0.1\n    minttl {\n        floor %d\n    }\n}", held.Addr().(*net.TCPAddr).Port, 31+i))
		waitForLog(t, s, "Corefile changed but reload failed", i+1)
	}
	waitForLog(t, s, "bind: address already in use", 5) // and for that reason
	ask(t, s.ports["PORT"])
	if after := goroutines(t, s.ports["METRICS"]); after > before {
		t.Errorf("go_goroutines %v before five failed reloads, %v after", before, after)
	} else {
		t.Logf("go_goroutines %v before five failed reloads, %v after", before, after)
	}
}

// ask asks for the Linkerd SRV name, in minttl's zone.
func ask(t *testing.T, port string) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(lab.SRVName, dns.TypeSRV)
	if resp, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, "127.0.0.1:"+port); err != nil || len(resp.Answer) == 0 {
		t.Fatalf("%s: %v %v", lab.SRVName, resp, err)
	}
}

// goroutines is go_goroutines once two scrapes a second apart agree.
func goroutines(t *testing.T, metrics string) float64 {
	t.Helper()
	n := scrape(t, metrics)["go_goroutines"]
	for i := 0; i < 10; i++ {
		time.Sleep(time.Second)
		m := scrape(t, metrics)["go_goroutines"]
		if m == n {
			break
		}
		n = m
	}
	return n
}

// waitForLog waits until CoreDNS's log holds text n times.
func waitForLog(t *testing.T, s *coreDNS, text string, n int) {
	t.Helper()
	for i := 0; i < 300; i++ {
		out, err := os.ReadFile(s.log)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(string(out), text) >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, _ := os.ReadFile(s.log)
	t.Fatalf("CoreDNS did not log %q %d times within 30 s:\n%s", text, n, out)
}
