package main

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// stampName carries, in the additional section of every SRV answer, the
// instant the zone made it (Unix nanoseconds). Caches keep it with the answer,
// so a proxy knows how old the data it uses is, however many caches it passed.
const stampName = "stamp.linkerd.svc.cluster.local."

// zone is what the kube-dns replicas forward to: the two SRV names of
// cluster.local.db with their A records, every record with the scenario's TTL
// (the kubernetes plugin's 5 s; kubeadm sets 30), answered after delay (a slow
// upstream), stamped.
type zone struct {
	ttl     uint32
	delay   time.Duration
	records map[string][]dns.RR // owner name → its records
	addr    string
	silent  atomic.Bool // from now on, drop every query (a failing backend)
	servers []*dns.Server
	wg      sync.WaitGroup
}

// startZone serves cluster.local.db on a free loopback port over UDP and TCP.
func startZone(path string, ttl uint32, delay time.Duration) (*zone, error) {
	z := &zone{ttl: ttl, delay: delay, records: map[string][]dns.RR{}}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, "", path)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rr.Header().Ttl = ttl
		name := strings.ToLower(rr.Header().Name)
		z.records[name] = append(z.records[name], rr)
	}
	if err := zp.Err(); err != nil {
		return nil, err
	}
	udp, tcp, err := listenPair()
	if err != nil {
		return nil, err
	}
	z.addr = udp.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: udp, Handler: z}, {Listener: tcp, Handler: z}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		z.servers = append(z.servers, srv)
		z.wg.Add(1)
		go func() {
			defer z.wg.Done()
			srv.ActivateAndServe()
		}()
		<-started // so that stop can shut it down
	}
	return z, nil
}

// listenPair listens on one loopback port for UDP and TCP. The port is the
// kernel's pick, so servers started side by side never race for one.
func listenPair() (net.PacketConn, net.Listener, error) {
	for range 20 {
		udp, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		tcp, err := net.Listen("tcp", udp.LocalAddr().String())
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
	}
	return nil, nil, errors.New("no loopback port free for both UDP and TCP")
}

func (z *zone) stop() {
	for _, s := range z.servers {
		s.Shutdown()
	}
	z.wg.Wait()
}

// ServeDNS answers an SRV question with the SRV RRset, its targets' A records
// and the stamp; the apex SOA (what lab.WaitForDNS asks) as it is; anything
// else with NXDOMAIN. A silent zone answers nothing.
func (z *zone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if z.silent.Load() {
		return
	}
	if z.delay > 0 {
		time.Sleep(z.delay)
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	for _, rr := range z.records[strings.ToLower(q.Name)] {
		if rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, rr)
		}
	}
	if q.Qtype == dns.TypeSRV && len(m.Answer) > 0 {
		for _, rr := range m.Answer {
			m.Extra = append(m.Extra, z.records[strings.ToLower(rr.(*dns.SRV).Target)]...)
		}
		m.Extra = append(m.Extra, &dns.TXT{
			Hdr: dns.RR_Header{Name: stampName, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: z.ttl},
			Txt: []string{strconv.FormatInt(time.Now().UnixNano(), 10)},
		})
	}
	if len(m.Answer) == 0 && len(z.records[strings.ToLower(q.Name)]) == 0 {
		m.Rcode = dns.RcodeNameError
	}
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), false)
	}
	w.WriteMsg(m)
}

// stampOf reads the zone's stamp from an answer; zero when it has none.
func stampOf(m *dns.Msg) time.Time {
	for _, rr := range m.Extra {
		if t, ok := rr.(*dns.TXT); ok && strings.EqualFold(t.Hdr.Name, stampName) && len(t.Txt) == 1 {
			if ns, err := strconv.ParseInt(t.Txt[0], 10, 64); err == nil {
				return time.Unix(0, ns)
			}
		}
	}
	return time.Time{}
}
