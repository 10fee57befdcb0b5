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
	for range 100 {
		if _, _, err := c.ExchangeContext(ctx, q, addr); err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("server for %s exited", addr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("no answer on %s", addr)
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
