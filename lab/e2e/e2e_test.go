package e2e

// End-to-end tests: a real CoreDNS built with minttl (lab.Main) with real Corefiles,
// queried with real dig over UDP and TCP from several loopback source addresses.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/minttl/minttl/lab/internal/lab"
)

// coreDNS is a running ./coredns; t.Cleanup stops it.
type coreDNS struct {
	ports map[string]string
	log   string // its output
	proc  *lab.Process
}

func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }

// testdata is the repository's testdata folder.
var testdata = filepath.Join("..", "..", "testdata")

// corefile fills in a Corefile from testdata/e2e: ZONE and a fresh port for every other placeholder.
func corefile(t *testing.T, name string, placeholders ...string) (string, map[string]string) {
	t.Helper()
	ports := map[string]string{}
	var pairs []string
	for _, p := range placeholders {
		port, err := lab.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[p] = port
		pairs = append(pairs, p, port)
	}
	path, err := lab.WriteCorefile(filepath.Join(testdata, "e2e", name), filepath.Join(testdata, "cluster.local.db"), t.TempDir(), pairs...)
	if err != nil {
		t.Fatal(err)
	}
	return path, ports
}

// liveCorefile fills in a Corefile of testdata/e2e as corefile does, but for
// one placeholder, which set fills in (again and again: the reload plugin
// picks each change up).
func liveCorefile(t *testing.T, name, live string, placeholders ...string) (path string, ports map[string]string, set func(string)) {
	t.Helper()
	path, ports = corefile(t, name, placeholders...)
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, ports, func(value string) {
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(text), live, value)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func startCoreDNS(t *testing.T, name string, placeholders ...string) *coreDNS {
	t.Helper()
	path, ports := corefile(t, name, placeholders...)
	return launch(t, path, ports)
}

// launch starts ./coredns on the Corefile at path and waits until every port
// but METRICS and CLOSED answers.
func launch(t *testing.T, path string, ports map[string]string) *coreDNS {
	t.Helper()
	p, err := lab.Start(context.Background(), filepath.Join(t.TempDir(), "coredns.log"), nil, lab.CoreDNS, "-conf", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	for name, port := range ports {
		if name == "METRICS" || name == "CLOSED" {
			continue
		}
		if err := lab.WaitForDNS(context.Background(), "127.0.0.1:"+port, p.Exited); err != nil {
			out, _ := os.ReadFile(p.Log)
			t.Fatalf("coredns: %v:\n%s", err, out)
		}
	}
	return &coreDNS{ports: ports, log: p.Log, proc: p}
}

// dig runs dig against port from source address 127.0.0.<client> and returns
// the records of the sections it printed.
func digRRs(t *testing.T, port string, client int, args ...string) []dns.RR {
	t.Helper()
	return parseRRs(t, digOutput(t, port, client, append([]string{"+noall", "+answer", "+authority", "+additional"}, args...)...))
}

// parseRRs reads the records dig printed.
func parseRRs(t *testing.T, out string) []dns.RR {
	t.Helper()
	rrs, err := lab.ParseRRs(out)
	if err != nil {
		t.Fatal(err)
	}
	return rrs
}

func digOutput(t *testing.T, port string, client int, args ...string) string {
	t.Helper()
	return digFrom(t, "127.0.0.1", port, fmt.Sprintf("127.0.0.%d", client), args...)
}

// digFrom runs dig against server:port from the source address src.
func digFrom(t *testing.T, server, port, src string, args ...string) string {
	t.Helper()
	out, err := lab.Dig(server, port, src, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// oneTTLPerRRset checks RFC 2181 §5.2 and returns the RRsets' TTLs by name and type.
func oneTTLPerRRset(t *testing.T, rrs []dns.RR) map[string]uint32 {
	t.Helper()
	sets := map[string]uint32{}
	for _, rr := range rrs {
		k := strings.ToLower(rr.Header().Name) + " " + dns.TypeToString[rr.Header().Rrtype]
		if ttl, ok := sets[k]; ok && ttl != rr.Header().Ttl {
			t.Errorf("RRset %s left with TTLs %d and %d", k, ttl, rr.Header().Ttl)
		}
		sets[k] = rr.Header().Ttl
	}
	return sets
}

func TestE2EContract(t *testing.T) {
	s := startCoreDNS(t, "Corefile", "PORT", "CONTROL", "DIRECT", "METRICS")
	port := s.ports["PORT"]

	// Clients asking in the same second get different TTLs only if minttl sees
	// cache's hits: below cache, all would share the cached item's TTL.
	spread := lab.Spread{}
	for client := 10; client < 30; client++ {
		for _, transport := range []string{"+notcp", "+tcp"} {
			rrs := digRRs(t, port, client, transport, "SRV", lab.SRVName)
			for set, ttl := range oneTTLPerRRset(t, rrs) {
				if ttl < lab.Floor || ttl > lab.Top {
					t.Errorf("client %d %s: %s has TTL %d, want %d..%d", client, transport, set, ttl, lab.Floor, lab.Top)
				}
				spread.Add(ttl)
			}
		}
	}
	if spread.Most() < 2 {
		t.Errorf("clients asking in the same second all got one TTL %v: no spread", spread)
	}

	t.Run("control without minttl decays", func(t *testing.T) {
		first := digRRs(t, s.ports["CONTROL"], 10, "SRV", lab.SRVName)[0].Header().Ttl
		time.Sleep(1200 * time.Millisecond)
		then := digRRs(t, s.ports["CONTROL"], 10, "SRV", lab.SRVName)[0].Header().Ttl
		if first > 5 || then >= 5 {
			t.Errorf("control TTLs %d then %d, want cache's decaying TTLs below 5", first, then)
		}
		raised := digRRs(t, port, 10, "SRV", lab.SRVName)[0].Header().Ttl
		if raised < 30 {
			t.Errorf("minttl server handed out %d while the control decays", raised)
		}
	})

	t.Run("out of scope untouched", func(t *testing.T) {
		for _, transport := range []string{"+notcp", "+tcp"} {
			if ttl := digRRs(t, port, 11, transport, "A", "web.default.svc.cluster.local.")[0].Header().Ttl; ttl > 5 {
				t.Errorf("%s: out-of-scope name got TTL %d, want the zone's decaying 5", transport, ttl)
			}
		}
	})

	t.Run("at or above the floor untouched", func(t *testing.T) {
		if ttl := digRRs(t, s.ports["DIRECT"], 12, "A", "stable.linkerd.svc.cluster.local.")[0].Header().Ttl; ttl != 300 {
			t.Errorf("TTL 300 came back as %d", ttl)
		}
	})

	t.Run("negative answers untouched by default", func(t *testing.T) {
		for _, name := range []string{"nope.linkerd.svc.cluster.local.", lab.SRVName} {
			qtype := map[bool]string{true: "A", false: "TXT"}[name != lab.SRVName]
			rrs := digRRs(t, s.ports["DIRECT"], 13, qtype, name)
			if soa, ok := rrs[0].(*dns.SOA); !ok || soa.Hdr.Ttl > 5 {
				t.Errorf("%s %s: authority %v, want the SOA with its TTL of 5", qtype, name, rrs[0])
			}
		}
	})

	t.Run("EDNS DO bit intact", func(t *testing.T) {
		out := digOutput(t, port, 14, "+dnssec", "SRV", lab.SRVName)
		if !strings.Contains(out, "; EDNS: version: 0, flags: do;") {
			t.Errorf("DO bit lost:\n%s", out)
		}
		rrs := parseRRs(t, out[strings.Index(out, ";; ANSWER SECTION:"):])
		for set, ttl := range oneTTLPerRRset(t, rrs) {
			if ttl < lab.Floor || ttl > lab.Top {
				t.Errorf("with +dnssec: %s TTL %d, want %d..%d", set, ttl, lab.Floor, lab.Top)
			}
		}
		if len(rrs) < 6 {
			t.Errorf("with +dnssec: want the 3 SRV and 3 A records:\n%s", out)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://127.0.0.1:" + s.ports["METRICS"] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		server := fmt.Sprintf(`server="dns://127.0.0.1:%s"`, port)
		for _, want := range []string{
			`coredns_minttl_raised_records_total{` + server + `,type="SRV",zone="linkerd.svc.cluster.local."}`,
			`coredns_minttl_raised_records_total{` + server + `,type="A",zone="linkerd.svc.cluster.local."}`,
			`coredns_minttl_raised_responses_total{` + server + `,zone="linkerd.svc.cluster.local."}`,
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

func TestE2EReplicasAgree(t *testing.T) {
	a := startCoreDNS(t, "replica.Corefile", "PORT")
	b := startCoreDNS(t, "replica.Corefile", "PORT")
	for client := 40; client < 45; client++ {
		for attempt := 0; ; attempt++ {
			second := time.Now().Unix()
			ta := digRRs(t, a.ports["PORT"], client, "SRV", lab.SRVName)[0].Header().Ttl
			tb := digRRs(t, b.ports["PORT"], client, "SRV", lab.SRVName)[0].Header().Ttl
			if time.Now().Unix() != second && attempt < 5 {
				continue // the clock ticked between the two queries: jitter may differ by design
			}
			if ta != tb || ta < 30 {
				t.Errorf("client 127.0.0.%d: replica TTLs %d and %d, want one raised TTL", client, ta, tb)
			}
			break
		}
	}
}

// TestE2EBadCorefileRefusesToStart: CoreDNS must not start with a bad minttl
// line, and must say so naming minttl, the Corefile line and the problem.
func TestE2EBadCorefileRefusesToStart(t *testing.T) {
	for _, tc := range []struct {
		minttl string // the Corefile's line 4 on
		line   int
		want   string
	}{
		{"minttl {\n        floor 0s\n    }", 5, `floor "0s" out of range`},
		{"minttl ..bad", 4, `invalid zone "..bad"`},
		{"minttl linkerd.svc.cluster.local ..bad", 4, `invalid zone "..bad"`},
		{"minttl 10.0.0.0/33", 4, `invalid zone "10.0.0.0/33"`},
		{"minttl 10.0.0.1", 4, `zone "10.0.0.1" is an address, not a zone: for its reverse zone give 10.0.0.1/32`},
		{"minttl linkerd.svc.cluster.local fd00::53", 4, `zone "fd00::53" is an address, not a zone: for its reverse zone give fd00::53/128`},
		{"minttl {\n        types SRV ANY\n    }", 5, `type "ANY" is a query or meta type`},
		{"minttl {\n        floor 1\n        jitter 2147483000\n        negative 24h\n    }", 6, "negative + jitter is"},
		{"minttl {\n        floor 5s\n        jitter 1s\n    }", 6, `jitter "1s" cannot spread clients`},
	} {
		path, _ := corefile(t, "bad.Corefile", "PORT")
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(text), "BAD", tc.minttl, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, lab.CoreDNS, "-conf", path).CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut {
			t.Errorf("%q: err %v, want a non-zero exit\n%s", tc.minttl, err, out)
			continue
		}
		for _, want := range []string{"plugin/minttl", fmt.Sprintf("%s:%d", path, tc.line), tc.want} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%q: output lacks %q:\n%s", tc.minttl, want, out)
			}
		}
	}
}

// TestE2ESmallFloorSpreads: a floor of 4 s with the default jitter, which
// rounds down to 1 s, gets 2 s instead: 20 clients asking in one second get
// more than one TTL, all within 4..6.
func TestE2ESmallFloorSpreads(t *testing.T) {
	s := startCoreDNS(t, "smallfloor.Corefile", "PORT")
	for attempt := 0; ; attempt++ {
		second := time.Now().Unix()
		seen := map[uint32]int{}
		for client := 20; client < 40; client++ {
			for _, rr := range digRRs(t, s.ports["PORT"], client, "A", "www.small.test.") {
				if ttl := rr.Header().Ttl; ttl < 4 || ttl > 6 {
					t.Fatalf("client %d: %s, want TTL 4..6", client, rr)
				}
				seen[rr.Header().Ttl]++
			}
		}
		if time.Now().Unix() != second && attempt < 5 {
			continue // asked across a second: the jitter may move by design
		}
		if len(seen) < 2 {
			t.Errorf("20 clients asking in one second got the TTLs %v: no spread", seen)
		}
		return
	}
}
