// Package lab holds what the end-to-end tests, the storm lab and the server
// benchmark share: loopback ports, waiting for a DNS server, the machine's CPU.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// FreePort returns a loopback port that is free for both UDP and TCP.
func FreePort() (string, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return fmt.Sprint(port), nil
		}
	}
	return "", errors.New("no free loopback port")
}

// WaitForDNS polls addr with an SOA query for cluster.local. until it answers,
// for at most ten seconds, or until exited reports that the server is gone.
func WaitForDNS(ctx context.Context, addr string, exited <-chan struct{}) error {
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	q := new(dns.Msg)
	q.SetQuestion("cluster.local.", dns.TypeSOA)
	return poll(ctx, exited, 100*time.Millisecond, func() bool {
		_, _, err := c.ExchangeContext(ctx, q, addr)
		return err == nil
	}, "no answer on "+addr)
}

// WaitForTCP waits until addr accepts TCP connections (CoreDNS opens its
// metrics listener just after its DNS servers).
func WaitForTCP(ctx context.Context, addr string, exited <-chan struct{}) error {
	return poll(ctx, exited, 50*time.Millisecond, func() bool {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, "nothing listens on "+addr)
}

// poll tries ready up to 100 times, pause apart, until it holds, ctx ends or
// exited reports that the server is gone.
func poll(ctx context.Context, exited <-chan struct{}, pause time.Duration, ready func() bool, failure string) error {
	for range 100 {
		if ready() {
			return nil
		}
		select {
		case <-exited:
			return errors.New("server exited: " + failure)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
	return errors.New(failure)
}

// CPUModel names the machine's processor, for result tables.
func CPUModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
