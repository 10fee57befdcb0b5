package e2e

// Failure modes, hostile input and live reconfiguration, against the real
// CoreDNS: minttl must never crash it, never corrupt an answer and never lose
// a query.

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"

	"github.com/minttl/minttl/lab/internal/lab"
)

// failingUpstream answers every query under failing.test. with the rcode its
// first label names, carrying records with low TTLs that minttl must not raise.
func failingUpstream(t *testing.T, port string) {
	t.Helper()
	rcodes := map[string]int{"servfail": dns.RcodeServerFailure, "refused": dns.RcodeRefused}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		if rcode, ok := rcodes[strings.SplitN(r.Question[0].Name, ".", 2)[0]]; ok {
			m.Rcode = rcode
			m.Answer = []dns.RR{test.A(r.Question[0].Name + " 1 IN A 10.9.9.9")}
			m.Ns = []dns.RR{test.SOA("failing.test. 5 IN SOA ns.failing.test. hostmaster.failing.test. 1 7200 1800 86400 5")}
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{Addr: "127.0.0.1:" + port, Net: "udp", Handler: handler}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ListenAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
}

func TestE2EFailureModes(t *testing.T) {
	path, ports := corefile(t, "failures.Corefile", "PORT", "CLOSED", "UPSTREAM")
	failingUpstream(t, ports["UPSTREAM"])
	s := launch(t, path, ports)
	port := s.ports["PORT"]

	for _, rcode := range []string{"SERVFAIL", "REFUSED"} {
		t.Run("backend "+rcode+" untouched", func(t *testing.T) {
			out := digOutput(t, port, 10, "A", strings.ToLower(rcode)+".failing.test.")
			if !strings.Contains(out, "status: "+rcode) {
				t.Fatalf("want %s:\n%s", rcode, out)
			}
			rrs := parseRRs(t, out[strings.Index(out, ";; ANSWER SECTION:"):])
			if len(rrs) != 2 {
				t.Fatalf("want the upstream's A and SOA:\n%s", out)
			}
			for _, rr := range rrs {
				if rr.Header().Ttl > 5 {
					t.Errorf("%s answer's %s raised to %d", rcode, dns.TypeToString[rr.Header().Rrtype], rr.Header().Ttl)
				}
			}
		})
	}

	t.Run("dead upstream gives the usual SERVFAIL", func(t *testing.T) {
		out := digOutput(t, port, 11, "A", "www.dead.test.")
		if !strings.Contains(out, "status: SERVFAIL") || strings.Contains(out, "ANSWER SECTION") {
			t.Errorf("forward to a closed port:\n%s", out)
		}
	})

	t.Run("truncated over UDP, raised over TCP", func(t *testing.T) {
		udp := digOutput(t, port, 12, "+noedns", "+ignore", "A", "big.linkerd.svc.cluster.local.")
		if !strings.Contains(udp, " tc") {
			t.Fatalf("a 40-record answer over 512-byte UDP is not truncated:\n%s", udp)
		}
		rrs := digRRs(t, port, 12, "+noedns", "+tcp", "A", "big.linkerd.svc.cluster.local.")
		if len(rrs) < 40 {
			t.Errorf("TCP answer has %d records, want 40", len(rrs))
		}
		for set, ttl := range oneTTLPerRRset(t, rrs) {
			if ttl < 30 {
				t.Errorf("TCP retry: %s TTL %d, want raised", set, ttl)
			}
		}
	})

	t.Run("EDNS DO bit and padding survive", func(t *testing.T) {
		out := digOutput(t, port, 13, "+dnssec", "+padding=128", "SRV", lab.SRVName)
		if !strings.Contains(out, "flags: do;") || !strings.Contains(out, "status: NOERROR") {
			t.Fatalf("EDNS lost:\n%s", out)
		}
		i := strings.Index(out, ";; ANSWER SECTION:")
		for set, ttl := range oneTTLPerRRset(t, parseRRs(t, out[i:])) {
			if ttl < lab.Floor || ttl > lab.Top {
				t.Errorf("%s TTL %d, want %d..%d", set, ttl, lab.Floor, lab.Top)
			}
		}
	})

	t.Run("pipelined queries on one TCP connection", func(t *testing.T) {
		conn, err := dns.DialTimeout("tcp", "127.0.0.1:"+port, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		sent := map[uint16]string{}
		for i := range 10 {
			q := new(dns.Msg)
			q.SetQuestion([]string{lab.SRVName, "linkerd-dst-headless.linkerd.svc.cluster.local."}[i%2], dns.TypeSRV)
			q.SetEdns0(4096, false)
			sent[q.Id] = q.Question[0].Name
			if err := conn.WriteMsg(q); err != nil {
				t.Fatal(err)
			}
		}
		for range sent {
			resp, err := conn.ReadMsg()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Question[0].Name != sent[resp.Id] {
				t.Errorf("answer %d is for %s, asked %s", resp.Id, resp.Question[0].Name, sent[resp.Id])
			}
			delete(sent, resp.Id)
			if p := lab.SRVProblem(resp, false); p != "" {
				t.Error(p)
			}
		}
	})

	t.Run("IPv6 loopback clients", func(t *testing.T) {
		seen := map[uint32]bool{}
		for _, transport := range []string{"+notcp", "+tcp"} {
			rrs := parseRRs(t, digFrom(t, "::1", port, "::1", "+noall", "+answer", "+additional", transport, "SRV", lab.SRVName))
			for set, ttl := range oneTTLPerRRset(t, rrs) {
				if ttl < lab.Floor || ttl > lab.Top {
					t.Errorf("IPv6 %s: %s TTL %d, want %d..%d", transport, set, ttl, lab.Floor, lab.Top)
				}
				seen[ttl] = true
			}
		}
		if len(seen) == 0 {
			t.Error("no answer over IPv6")
		}
	})
}

// TestE2EHostileInput sends a bounded burst of malformed packets over UDP and
// TCP while clients keep asking; the server must keep answering, correctly.
func TestE2EHostileInput(t *testing.T) {
	s := startCoreDNS(t, "Corefile", "PORT", "CONTROL", "DIRECT", "METRICS")
	addr := "127.0.0.1:" + s.ports["PORT"]

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers, problems := 0, []string{}
	for i := range 4 {
		wg.Go(func() {
			c := &dns.Client{Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(50+i))}}}
			for ctx.Err() == nil {
				q := new(dns.Msg)
				q.SetQuestion(lab.SRVName, dns.TypeSRV)
				q.SetEdns0(1232, false)
				resp, _, err := c.Exchange(q, addr)
				if err != nil { // like any stub resolver, try once more
					resp, _, err = c.Exchange(q, addr)
				}
				mu.Lock()
				switch {
				case err != nil:
					problems = append(problems, err.Error())
				default:
					answers++
					if p := lab.SRVProblem(resp, false); p != "" {
						problems = append(problems, p)
					}
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}

	rng := rand.New(rand.NewPCG(1, 2))
	valid := new(dns.Msg)
	valid.SetQuestion(lab.SRVName, dns.TypeSRV)
	wire, _ := valid.Pack()
	sentUDP, sentTCP := 0, 0
	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		if _, err := udp.Write(malformed(rng, wire, i)); err == nil {
			sentUDP++
		}
		if i%50 == 49 { // hostile, not a flood: keep the socket buffer from overflowing
			time.Sleep(2 * time.Millisecond)
		}
	}
	udp.Close()
	for i := range 200 {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		p := malformed(rng, wire, i)
		conn.SetDeadline(time.Now().Add(200 * time.Millisecond))
		// A length prefix that lies as often as it tells the truth.
		n := len(p)
		if i%2 == 1 {
			n = rng.IntN(65536)
		}
		if _, err := conn.Write(append([]byte{byte(n >> 8), byte(n)}, p...)); err == nil {
			sentTCP++
		}
		conn.Close()
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()

	t.Logf("sent %d malformed UDP packets and %d TCP messages; clients got %d answers", sentUDP, sentTCP, answers)
	if answers == 0 || len(problems) > 0 {
		t.Errorf("%d answers, problems: %v", answers, problems)
	}
	rrs := digRRs(t, s.ports["PORT"], 60, "SRV", lab.SRVName)
	if ttl := rrs[0].Header().Ttl; ttl < 30 {
		t.Errorf("after the burst: TTL %d", ttl)
	}
	if log, _ := os.ReadFile(s.log); strings.Contains(string(log), "panic") {
		t.Errorf("CoreDNS panicked:\n%s", log)
	}
}

// malformed returns the i-th kind of broken message built from a valid query.
func malformed(rng *rand.Rand, wire []byte, i int) []byte {
	p := append([]byte(nil), wire...)
	switch i % 5 {
	case 0: // random bytes
		p = make([]byte, rng.IntN(600))
		for j := range p {
			p[j] = byte(rng.UintN(256))
		}
	case 1: // truncated
		p = p[:rng.IntN(len(p))]
	case 2: // bit flips
		for range 1 + rng.IntN(8) {
			j := rng.IntN(len(p))
			p[j] ^= 1 << rng.UintN(8)
		}
	case 3: // header counts that lie
		for j := 4; j < 12; j++ {
			p[j] = byte(rng.UintN(256))
		}
	case 4: // a compression pointer to itself
		p = append(p[:12], 0xC0, 12, 0, 33, 0, 1)
	}
	return p
}

// TestE2EReload changes the floor in the Corefile under a running server with
// the reload plugin: the new floor takes effect without a restart, and a client
// asking throughout loses no query.
func TestE2EReload(t *testing.T) {
	path, ports, write := liveCorefile(t, "reload.Corefile", "FLOOR", "PORT")
	write("30")
	s := launch(t, path, ports)
	addr := "127.0.0.1:" + s.ports["PORT"]

	c := &dns.Client{Timeout: 2 * time.Second}
	ask := func() (uint32, error) {
		q := new(dns.Msg)
		q.SetQuestion(lab.SRVName, dns.TypeSRV)
		q.SetEdns0(1232, false)
		resp, _, err := c.Exchange(q, addr)
		if err != nil {
			return 0, err
		}
		return resp.Answer[0].Header().Ttl, nil
	}
	if ttl, err := ask(); err != nil || ttl != 30 {
		t.Fatalf("before the reload: TTL %d, %v; want 30", ttl, err)
	}
	write("60")
	deadline := time.Now().Add(30 * time.Second)
	asked, lost := 0, 0
	var ttl uint32
	var err error
	for time.Now().Before(deadline) {
		asked++
		if ttl, err = ask(); err != nil {
			lost++
			t.Logf("query %d: %v", asked, err)
		} else if ttl == 60 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d queries during the reload, %d lost, last TTL %d", asked, lost, ttl)
	if ttl != 60 {
		t.Errorf("floor 60 did not take effect within 30 s: TTL %d", ttl)
	}
	if lost > 0 {
		t.Errorf("%d of %d queries lost during the reload", lost, asked)
	}
	for range 20 { // and the new server keeps answering
		if _, err := ask(); err != nil {
			t.Errorf("after the reload: %v", err)
		}
	}
}
