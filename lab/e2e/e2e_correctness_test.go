package e2e

// Correctness visible from outside: clients behind a PROXY-protocol load
// balancer, a NODATA answer behind a CNAME, and the metric labels a zone's
// data can create.

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/minttl/minttl/lab/internal/lab"
)

// proxyV2 is a PROXY protocol v2 header (PROXY command) saying that src sent
// the message to dst; stream picks TCP, else UDP. An IPv6 src makes it an
// AF_INET6 header, with dst as an IPv4-mapped address. tlvs follow the
// addresses.
func proxyV2(src, dst *net.UDPAddr, stream bool, tlvs []byte) []byte {
	family := byte(0x12) // AF_INET, DGRAM
	body := append(append([]byte{}, src.IP.To4()...), dst.IP.To4()...)
	if src.IP.To4() == nil {
		family = 0x22 // AF_INET6, DGRAM
		body = append(append([]byte{}, src.IP.To16()...), dst.IP.To16()...)
	}
	if stream {
		family-- // STREAM
	}
	body = binary.BigEndian.AppendUint16(body, uint16(src.Port))
	body = binary.BigEndian.AppendUint16(body, uint16(dst.Port))
	body = append(body, tlvs...)
	h := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, family)
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)))
	return append(h, body...)
}

// askProxied sends an SRV query for lab.SRVName to server through a PROXY v2
// header naming client as the source, over UDP or TCP, and returns the TTL of
// the answer.
func askProxied(t *testing.T, server, client *net.UDPAddr, stream bool) uint32 {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(lab.SRVName, dns.TypeSRV)
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	network := "udp"
	var tlvs []byte
	if stream {
		network = "tcp"
		// A TLV (PP2_TYPE_AUTHORITY) makes proxyproto's tlv_metadata hand
		// plugins a wrapped address over TCP too.
		tlvs = append([]byte{0x02, 0, 10}, "lb.example"...)
	}
	conn, err := net.DialTimeout(network, server.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	packet := proxyV2(client, server, stream, tlvs)
	if stream {
		packet = binary.BigEndian.AppendUint16(packet, uint16(len(wire)))
	}
	if _, err := conn.Write(append(packet, wire...)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	var n int
	if stream {
		if _, err = io.ReadFull(conn, buf[:2]); err == nil {
			n = int(binary.BigEndian.Uint16(buf))
			_, err = io.ReadFull(conn, buf[:n])
		}
	} else {
		n, err = conn.Read(buf)
	}
	if err != nil {
		t.Fatalf("PROXY v2 %s query as %v: %v", network, client, err)
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	if p := lab.SRVProblem(resp, false); p != "" {
		t.Fatalf("PROXY v2 %s query as %v: %s", network, client, p)
	}
	return resp.Answer[0].Header().Ttl
}

// TestE2EProxyProtocol: clients behind a PROXY-protocol load balancer (all
// packets come from 127.0.0.1, the header names the client) get the TTL they
// get asking directly, so 40 of them spread as 40 direct clients do.
func TestE2EProxyProtocol(t *testing.T) {
	s := startCoreDNS(t, "proxyproto.Corefile", "PORT")
	port, _ := strconv.Atoi(s.ports["PORT"])
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	client := func(i int) *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4(127, 0, 1, byte(i)), Port: 40000 + i} }

	// 40 proxied clients in a burst (at least 20 of them in one second):
	// before minttl unwrapped the address they all got one TTL a second.
	spread := lab.Spread{}
	for i := 1; i <= 40; i++ {
		spread.Add(askProxied(t, server, client(i), false))
	}
	if spread.Most() < 4 {
		t.Errorf("40 proxied clients asking together got TTLs %v: no spread", spread)
	}

	// Each proxied client gets what it gets asking directly (dig from its
	// address), over UDP and, through tlv_metadata, over TCP.
	for _, transport := range []string{"+notcp", "+tcp"} {
		for i := 1; i <= 40; i += map[string]int{"+notcp": 1, "+tcp": 4}[transport] {
			for attempt := 0; ; attempt++ {
				second := time.Now().Unix()
				proxied := askProxied(t, server, client(i), transport == "+tcp")
				out := digFrom(t, "127.0.0.1", s.ports["PORT"], client(i).IP.String(), "+noall", "+answer", transport, "SRV", lab.SRVName)
				direct := parseRRs(t, out)[0].Header().Ttl
				if time.Now().Unix() != second && attempt < 5 {
					continue // the clock ticked between the two queries: the jitter may differ by design
				}
				if proxied != direct {
					t.Errorf("%s client %v: TTL %d through the balancer, %d directly", transport, client(i).IP, proxied, direct)
				}
				break
			}
		}
	}
}

// TestE2EIPv6Pods: pods of 20 nodes × 20 pods, a /64 per node as kubeadm
// hands out (fd00:10:244:N::P), behind a PROXY v2 load balancer (loopback has
// only ::1; the header carries any address). Pods whose node and pod numbers
// fold alike (N ^ P: fd00:10:244:1::2, :2::1, :3::0 ...) shared one key, and
// so one TTL at every instant; each such group must now hold several TTLs,
// and the 400 pods together every TTL from the floor to floor + jitter.
func TestE2EIPv6Pods(t *testing.T) {
	s := startCoreDNS(t, "proxyproto.Corefile", "PORT")
	port, _ := strconv.Atoi(s.ports["PORT"])
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	pod := func(n, p int) *net.UDPAddr {
		ip := net.ParseIP(fmt.Sprintf("fd00:10:244:%x::%x", n, p))
		return &net.UDPAddr{IP: ip, Port: 40000 + p}
	}
	all := map[uint32]int{}
	for fold := 0; fold < 32; fold++ {
		for attempt := 0; ; attempt++ {
			second := time.Now().Unix()
			group, pods := map[uint32]int{}, 0
			for n := 0; n < 20; n++ {
				if p := n ^ fold; p < 20 {
					group[askProxied(t, server, pod(n, p), false)]++
					pods++
				}
			}
			if time.Now().Unix() != second && attempt < 5 {
				continue // asked across a second: the jitter may move by design
			}
			if pods > 1 && len(group) < 2 {
				t.Errorf("the %d pods with N ^ P = %d all got the TTL %v in one second", pods, fold, group)
			}
			for ttl, n := range group {
				all[ttl] += n
			}
			break
		}
	}
	for ttl := uint32(lab.Floor); ttl <= lab.Top; ttl++ {
		if all[ttl] == 0 {
			t.Errorf("no IPv6 pod got TTL %d: %v", ttl, all)
		}
	}
}

// TestE2ENODATABehindCNAME: a NOERROR answer whose CNAME ends in no data
// (built by the template plugin) carries the SOA in its authority section.
// With floor 1h the CNAME is raised, the SOA is not; with negative 10s it is
// raised to 10 s plus its own jitter (30 % of 10 s), not the floor's, as the
// SOA of an NXDOMAIN answer is, and its MINIMUM (5) with it (RFC 2308 §5).
func TestE2ENODATABehindCNAME(t *testing.T) {
	s := startCoreDNS(t, "nodata.Corefile", "PORT")
	for _, tc := range []struct {
		zone            string
		soaLow, soaHigh uint32
	}{
		{"nodata.test.", 5, 5},
		{"negative.test.", 10, 13},
	} {
		for _, transport := range []string{"+notcp", "+tcp"} {
			for client := 20; client < 30; client++ {
				rrs := digRRs(t, s.ports["PORT"], client, transport, "AAAA", "www."+tc.zone)
				if len(rrs) != 2 {
					t.Fatalf("%s: want the CNAME and the SOA, got %v", tc.zone, rrs)
				}
				cname, ok1 := rrs[0].(*dns.CNAME)
				soa, ok2 := rrs[1].(*dns.SOA)
				if !ok1 || !ok2 {
					t.Fatalf("%s: want the CNAME and the SOA, got %v", tc.zone, rrs)
				}
				if ttl := cname.Hdr.Ttl; ttl < 3600 || ttl > 4680 {
					t.Errorf("%s %s client %d: CNAME TTL %d, want 3600..4680", tc.zone, transport, client, ttl)
				}
				if ttl := soa.Hdr.Ttl; ttl < tc.soaLow || ttl > tc.soaHigh || soa.Minttl != max(5, ttl) {
					t.Errorf("%s %s client %d: SOA TTL %d, MINIMUM %d; want %d..%d, MINIMUM with it", tc.zone, transport, client, ttl, soa.Minttl, tc.soaLow, tc.soaHigh)
				}
			}
		}
	}

	// The negative floor's own jitter in an NXDOMAIN answer too: 10..13, where
	// a jitter sized from the floor (30 % of 1h) would reach 1090.
	for client := 20; client < 50; client++ {
		rrs := digRRs(t, s.ports["PORT"], client, "A", "nope.negative.test.")
		if soa, ok := rrs[0].(*dns.SOA); !ok || soa.Hdr.Ttl < 10 || soa.Hdr.Ttl > 13 || soa.Minttl != soa.Hdr.Ttl {
			t.Errorf("NXDOMAIN client %d: authority %v, want the SOA at 10..13, MINIMUM with it", client, rrs[0])
		}
	}
}

// TestE2ENegativeMinimumFollowsTheJitter: kubeadm's ttl 30 as the negative
// floor, with a jitter of 9 s, over the kubernetes plugin's MINIMUM of 30: the
// SOA's TTL goes to 30..39 and MINIMUM with it, or every RFC 2308 resolver
// would cache the NXDOMAIN for exactly 30 s, in step.
func TestE2ENegativeMinimumFollowsTheJitter(t *testing.T) {
	s := startCoreDNS(t, "nodata.Corefile", "PORT")
	above := 0
	for client := 20; client < 50; client++ {
		soa := negativeSOA(t, digOutput(t, s.ports["PORT"], client, "+noall", "+authority", "A", "nope.kubeadm.test."))
		if soa.Hdr.Ttl < 30 || soa.Hdr.Ttl > 39 || soa.Minttl != soa.Hdr.Ttl {
			t.Errorf("client %d: SOA TTL %d, MINIMUM %d; want 30..39, MINIMUM with it", client, soa.Hdr.Ttl, soa.Minttl)
		}
		if soa.Hdr.Ttl > 30 {
			above++
		}
	}
	if above == 0 {
		t.Error("no client got a TTL above 30: the test cannot tell MINIMUM kept from raised")
	}
}

// TestE2EMetricValues: a zone holding 100 types without a metric label of
// their own makes one series, type="other"; the counters count what minttl
// raised and the TTL-0 records it may raise, nothing else.
func TestE2EMetricValues(t *testing.T) {
	const unknown = 100
	dir := t.TempDir()
	zone := []string{
		"$ORIGIN types.test.",
		"$TTL 5",
		"@ 0 IN SOA ns.example. hostmaster.example. 1 7200 1800 86400 0",
		"@ 3600 IN NS ns.example.",
		"zero 0 IN A 10.0.0.1",
		// Left as it came: a TTL above 2^31-1 in the RRset (RFC 2181 §8).
		"big 1 IN A 10.0.0.2",
		"big 2147483648 IN A 10.0.0.3",
	}
	var batch []string
	for i := 0; i < unknown; i++ {
		zone = append(zone, fmt.Sprintf("u 1 IN TYPE%d \\# 1 %02x", 65280+i, i))
		batch = append(batch, fmt.Sprintf("u.types.test. TYPE%d", 65280+i))
	}
	batch = append(batch, "zero.types.test. A", "nope.types.test. A")
	write := func(name string, lines []string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ports := map[string]string{}
	for _, p := range []string{"PORT", "METRICS"} {
		port, err := lab.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[p] = port
	}
	path, err := lab.WriteCorefile(filepath.Join(testdata, "e2e", "types.Corefile"), filepath.Join(testdata, "cluster.local.db"), dir,
		"PORT", ports["PORT"], "METRICS", ports["METRICS"], "TYPES", write("types.test.db", zone))
	if err != nil {
		t.Fatal(err)
	}
	s := launch(t, path, ports)

	out := digOutput(t, s.ports["PORT"], 31, "+noall", "+answer", "-f", write("batch", batch))
	raised := 0
	for _, rr := range parseRRs(t, out) {
		if ttl := rr.Header().Ttl; ttl < lab.Floor || ttl > lab.Top {
			t.Errorf("%s TTL %d, want %d..%d", dns.TypeToString[rr.Header().Rrtype], ttl, lab.Floor, lab.Top)
		}
		raised++
	}
	if raised != unknown+1 {
		t.Fatalf("dig printed %d answers, want %d:\n%s", raised, unknown+1, out)
	}
	if big := ttls(digRRs(t, s.ports["PORT"], 31, "A", "big.types.test.")); len(big) != 3 || big[0]+big[1] != 1+1<<31 || big[2] != 3600 {
		t.Errorf("big.types.test.: TTLs %v, want 1 and 2^31 as they came, and the NS's 3600", big)
	}

	metrics := scrape(t, s.ports["METRICS"])
	server := fmt.Sprintf(`server="dns://127.0.0.1:%s"`, s.ports["PORT"])
	for _, want := range []struct {
		series string
		value  float64
	}{
		{`coredns_minttl_raised_records_total{` + server + `,type="other",zone="types.test."}`, unknown},
		{`coredns_minttl_raised_records_total{` + server + `,type="A",zone="types.test."}`, 1},
		// Not big.types.test.'s answer, which came out as it went in.
		{`coredns_minttl_raised_responses_total{` + server + `,zone="types.test."}`, unknown + 1},
		// The A record; not the TTL-0 SOA of the NXDOMAIN answer, out of scope without negative.
		{`coredns_minttl_zero_ttl_records_total{` + server + `,zone="types.test."}`, 1},
	} {
		if got, ok := metrics[want.series]; !ok || got != want.value {
			t.Errorf("%s = %v (present %v), want %v", want.series, got, ok, want.value)
		}
	}
	named := regexp.MustCompile(`^coredns_minttl_raised_records_total\{.*type="([^"]*)"`)
	for series := range metrics {
		if m := named.FindStringSubmatch(series); m != nil && strings.HasPrefix(m[1], "TYPE") {
			t.Errorf("a series per unknown type: %s", series)
		}
	}
}

func ttls(rrs []dns.RR) []uint32 {
	var out []uint32
	for _, rr := range rrs {
		out = append(out, rr.Header().Ttl)
	}
	return out
}

// scrape reads the Prometheus text exposition at 127.0.0.1:port/metrics into
// series → value.
func scrape(t *testing.T, port string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	return series
}

// TestE2ENegativeThroughUnbound: a resolver caches an NXDOMAIN answer for
// min(SOA TTL, SOA MINIMUM) (RFC 2308 §5; Unbound's util/data/msgreply.c).
// With negative 30s in front of a zone whose MINIMUM is 5, Unbound must keep
// it for 30 s and more, as a client that takes the minimum reads it; without
// minttl (the control) for 5.
func TestE2ENegativeThroughUnbound(t *testing.T) {
	unbound, err := exec.LookPath("unbound")
	if err != nil {
		t.Fatalf("unbound is missing (make test installs it; apt-get install unbound): %v", err)
	}
	s := startCoreDNS(t, "negative.Corefile", "PORT", "PLAIN")
	const name = "nope.linkerd.svc.cluster.local."
	for _, tc := range []struct {
		upstream string
		minttl   bool
	}{{s.ports["PORT"], true}, {s.ports["PLAIN"], false}} {
		direct := negativeSOA(t, digFrom(t, "127.0.0.1", tc.upstream, "127.0.0.1", "+noall", "+authority", "A", name))
		cached := min(direct.Hdr.Ttl, direct.Minttl)
		if tc.minttl && (cached < 30 || cached > 39) || !tc.minttl && cached > 5 {
			t.Errorf("minttl %v: CoreDNS's SOA %v: a client caches the NXDOMAIN for %d s", tc.minttl, direct, cached)
		}
		front := startUnbound(t, unbound, tc.upstream)
		for i := 0; i < 2; i++ { // the miss, then the answer from Unbound's cache
			soa := negativeSOA(t, digFrom(t, "127.0.0.1", front, "127.0.0.1", "+noall", "+authority", "A", name))
			if tc.minttl && soa.Hdr.Ttl <= 5 || !tc.minttl && soa.Hdr.Ttl > 5 {
				t.Errorf("minttl %v, query %d through Unbound: SOA %v: Unbound keeps the NXDOMAIN for %d s", tc.minttl, i+1, soa, soa.Hdr.Ttl)
			}
		}
	}
}

func negativeSOA(t *testing.T, out string) *dns.SOA {
	t.Helper()
	rrs := parseRRs(t, out)
	if len(rrs) != 1 {
		t.Fatalf("want the SOA of an NXDOMAIN answer, got %v", rrs)
	}
	soa, ok := rrs[0].(*dns.SOA)
	if !ok {
		t.Fatalf("want the SOA of an NXDOMAIN answer, got %v", rrs)
	}
	return soa
}

// startUnbound starts Unbound forwarding cluster.local to 127.0.0.1:upstream
// and returns its port.
func startUnbound(t *testing.T, unbound, upstream string) string {
	t.Helper()
	port, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text, err := os.ReadFile(filepath.Join(testdata, "e2e", "negative.unbound.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "unbound.conf")
	filled := lab.Placeholders("PORT", port, "UPSTREAM", upstream, "DIR", dir).Replace(string(text))
	if err := os.WriteFile(conf, []byte(filled), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := lab.Start(context.Background(), filepath.Join(dir, "unbound.log"), nil, unbound, "-d", "-c", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if err := lab.WaitForDNS(context.Background(), "127.0.0.1:"+port, p.Exited); err != nil {
		out, _ := os.ReadFile(p.Log)
		t.Fatalf("unbound: %v:\n%s", err, out)
	}
	return port
}
