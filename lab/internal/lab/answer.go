package lab

import (
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// SRVName is the Linkerd name the tests and the soak ask for; testdata/cluster.local.db
// gives it 3 SRV records and their 3 A records, with TTL 5.
const SRVName = "linkerd-policy.linkerd.svc.cluster.local."

// Floor and Top are the lowest and the highest TTL minttl raises to at its
// defaults: floor 30 s, jitter 30 %.
const Floor, Top = 30, 39

// SRVProblem describes how an answer for SRVName from minttl with its
// defaults to a query with the DO bit do breaks the contract, or is "".
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
	if ttl < Floor || ttl > Top {
		return fmt.Sprintf("TTL %d outside %d..%d: %s", ttl, Floor, Top, m)
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

// Spread holds the TTLs clients were handed, by the second they asked in.
type Spread map[int64]map[uint32]bool

// Add records a TTL handed out in the current second.
func (s Spread) Add(ttl uint32) {
	second := time.Now().Unix()
	if s[second] == nil {
		s[second] = map[uint32]bool{}
	}
	s[second][ttl] = true
}

// Most is the largest number of different TTLs handed out within one second:
// below 2, clients asking together were told to come back together.
func (s Spread) Most() int {
	most := 0
	for _, ttls := range s {
		most = max(most, len(ttls))
	}
	return most
}
