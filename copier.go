package minttl

import "github.com/miekg/dns"

// raisedMsg is what a raised response allocates: the message, the slots of its
// changed sections and the copy of its first A record, in one. Most raised
// answers hold one address record, and then nothing else is allocated.
type raisedMsg struct {
	msg   dns.Msg
	slots [8]dns.RR
	a     [1]dns.A
}

// start allocates the copy of res.
func (c *copier) start(res *dns.Msg) {
	c.out = &raisedMsg{msg: *res}
	c.a = c.out.a[:0]
}

// copier makes the copy on write of one raised response with few allocations:
// the message and its sections' slots in one (raisedMsg), and the copies of raised
// A, AAAA and SRV records, which come many to an answer, in one array per type
// and section. An element of an array, once handed out, is never written
// again, so the records are as independent as records allocated one by one.
// The copier itself lives on raise's stack: only what the response keeps is
// allocated.
type copier struct {
	out  *raisedMsg
	used int

	// the types that come many to an answer
	a    []dns.A
	aaaa []dns.AAAA
	srv  []dns.SRV

	// what was done, for the metrics
	zero   int
	types  [4]uint16
	raised [4]int
	kinds  int            // types in use
	other  map[uint16]int // more than len(types) distinct types: rare
}

// section returns a copy of rrs to change.
func (c *copier) section(rrs []dns.RR) []dns.RR {
	var out []dns.RR
	if n := len(rrs); c.used+n <= len(c.out.slots) {
		out = c.out.slots[c.used : c.used+n : c.used+n]
		c.used += n
	} else {
		out = make([]dns.RR, n)
	}
	copy(out, rrs)
	return out
}

// withTTL returns a copy of rr carrying ttl (and, an SOA, MINIMUM minimum
// unless 0); at most
// left more records of the section may follow. Only the header changes, so
// A, AAAA and SRV records are copied shallowly: their rdata (IP slices,
// strings) is shared with rr and never written. Other types get a deep copy
// of their own.
func (c *copier) withTTL(rr dns.RR, ttl, minimum uint32, left int) dns.RR {
	var cp dns.RR
	switch r := rr.(type) {
	case *dns.A:
		cp = next(&c.a, r, left)
	case *dns.AAAA:
		cp = next(&c.aaaa, r, left)
	case *dns.SRV:
		cp = next(&c.srv, r, left)
	default:
		cp = dns.Copy(rr)
	}
	cp.Header().Ttl = ttl
	if minimum != 0 {
		cp.(*dns.SOA).Minttl = minimum
	}
	return cp
}

// next appends a copy of r to *array, growing it into a new array sized for the
// rest of the section when full, and returns the copy.
func next[T any](array *[]T, r *T, left int) *T {
	if len(*array) == cap(*array) {
		*array = make([]T, 0, left)
	}
	*array = append(*array, *r)
	return &(*array)[len(*array)-1]
}

func (c *copier) count(t uint16) {
	for i := 0; i < c.kinds; i++ {
		if c.types[i] == t {
			c.raised[i]++
			return
		}
	}
	if c.kinds < len(c.types) {
		c.types[c.kinds], c.raised[c.kinds] = t, 1
		c.kinds++
		return
	}
	if c.other == nil {
		c.other = make(map[uint16]int)
	}
	c.other[t]++
}
