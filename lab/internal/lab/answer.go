package lab

import (
	"fmt"

	"github.com/miekg/dns"
)

// SRVName is the Linkerd name the tests and the soak ask for; testdata/cluster.local.db
// gives it 3 SRV records and their 3 A records, with TTL 5.
const SRVName = "linkerd-policy.linkerd.svc.cluster.local."

// SRVProblem describes how an answer for SRVName from minttl with its
// defaults (floor 30 s, jitter 20 %) to a query with the DO bit do breaks the
// contract, or is "".
func SRVProblem(m *dns.Msg, do bool) string {
	additional := 0
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			additional++
		}
	}
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 3 || additional != 3 {
		return "incomplete answer: " + m.String()
	}
	ttl := m.Answer[0].Header().Ttl
	if ttl < 30 || ttl > 36 {
		return fmt.Sprintf("TTL %d outside 30..36: %s", ttl, m)
	}
	for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Extra...) {
		if opt, ok := rr.(*dns.OPT); ok {
			if opt.Do() != do {
				return "DO bit changed"
			}
		} else if rr.Header().Ttl != ttl {
			return "more than one TTL in one response: " + m.String()
		}
	}
	return ""
}
