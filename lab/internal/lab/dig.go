package lab

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Dig runs dig against server:port from the source address src, once, and
// returns what it printed. A missing dig is an error that says how to get it.
func Dig(server, port, src string, args ...string) (string, error) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		return "", fmt.Errorf("dig is missing (make test installs it; or apt-get install bind9-dnsutils): %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	all := append([]string{"@" + server, "-p", port, "-b", src, "+tries=1", "+time=5"}, args...)
	out, err := exec.CommandContext(ctx, dig, all...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dig %v: %w\n%s", all, err, out)
	}
	return string(out), nil
}

// ParseRRs reads the records dig printed; at least one must be there.
func ParseRRs(out string) ([]dns.RR, error) {
	var rrs []dns.RR
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			return nil, fmt.Errorf("dig printed %q: %w", line, err)
		}
		rrs = append(rrs, rr)
	}
	if len(rrs) == 0 {
		return nil, fmt.Errorf("dig printed no records:\n%s", out)
	}
	return rrs, nil
}
