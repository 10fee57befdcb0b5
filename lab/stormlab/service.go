package main

import (
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// service stands in for the kube-dns Service in front of the replicas, as
// kube-proxy does it: each new connection goes to a random replica, and the
// replica sees the client's own source address (the node's, since each node
// cache forwards from its node's address). The node caches forward over TCP
// (force_tcp), so this is a TCP relay. On the way back it counts the answers
// for the node tier's table.
type service struct {
	ln       net.Listener
	replicas []string
	tally    atomic.Pointer[tally] // nil until the proxies start
	node     func(net.IP) int      // the tally loop of a node's address, or -1
	validity time.Duration         // the zone's TTL
	wg       sync.WaitGroup
}

func startService(ctx context.Context, replicas []string, node func(net.IP) int, validity time.Duration) (*service, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &service{ln: ln, replicas: replicas, node: node, validity: validity}
	s.wg.Add(1)
	go s.accept(ctx)
	return s, nil
}

func (s *service) addr() string { return s.ln.Addr().String() }

// stop closes the listener and every relayed connection, and waits for them.
func (s *service) stop() {
	s.ln.Close()
	s.wg.Wait()
}

func (s *service) accept(ctx context.Context) {
	defer s.wg.Done()
	var conns sync.Map
	defer func() {
		conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
	}()
	go func() { <-ctx.Done(); s.ln.Close() }()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		conns.Store(c, nil)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conns.Delete(c)
			s.relay(ctx, c)
		}()
	}
}

// relay connects c to a random replica from c's own source address and copies
// both ways until either side closes.
func (s *service) relay(ctx context.Context, c net.Conn) {
	defer c.Close()
	src := c.RemoteAddr().(*net.TCPAddr).IP
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 2 * time.Second}
	up, err := d.DialContext(ctx, "tcp", s.replicas[rand.IntN(len(s.replicas))])
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		io.Copy(up, c)
		up.(*net.TCPConn).CloseWrite()
	}()
	s.answers(up, c, s.node(src))
}

// answers copies length-prefixed DNS messages from up to c, counting each.
func (s *service) answers(up, c net.Conn, loop int) {
	var size [2]byte
	for {
		if _, err := io.ReadFull(up, size[:]); err != nil {
			return
		}
		buf := make([]byte, 2+int(binary.BigEndian.Uint16(size[:])))
		copy(buf, size[:])
		if _, err := io.ReadFull(up, buf[2:]); err != nil {
			return
		}
		s.count(buf[2:], loop)
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// count records an answer for one of the two names as the node cache will
// use it: cached for its TTL clamped to the node Corefile's 5..30 s.
func (s *service) count(wire []byte, loop int) {
	t := s.tally.Load()
	m := new(dns.Msg)
	if t == nil || loop < 0 || m.Unpack(wire) != nil || len(m.Question) != 1 || !isProxyName(m.Question[0].Name) {
		return
	}
	a := answer{at: time.Now(), failed: true}
	if ttl, ok := answerTTL(m); ok {
		a = answer{at: a.at, ttl: ttl, held: time.Duration(min(max(ttl, nodeMinTTL), nodeMaxTTL)) * time.Second, stamp: stampOf(m)}
	}
	t.record(loop, a, s.validity)
}

// The node cache's `cache { success 9984 30 }`: cache's default MINTTL (5 s)
// and the 30 s cap (testdata/storm/node.Corefile).
const nodeMinTTL, nodeMaxTTL = 5, 30
