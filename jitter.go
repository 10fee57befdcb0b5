package minttl

import (
	"net"
)

// TTLs are whole seconds, so clients that start in the same instant and are
// handed the same TTL stay in lockstep for good, and a random or per-client
// constant jitter only loosens the herd slowly (a random walk). minttl instead
// gives every (client, name) pair a slot on a ring as long as one refresh cycle
// (floor + jitter/2 seconds) and picks the jitter that moves the client's next
// refresh toward the second its slot is in: three quarters of the way, rounded
// up, while that second is farther than one second away, then all the way; by
// at most jitter/2 seconds earlier or jitter - jitter/2 later a cycle. The far
// moves differ with the distance, so clients that start together do not
// travel in blocks; at the defaults a herd is calm after three cycles and
// every client is in its slot's second after at most five, where it then
// gets jitter/2, once a cycle: the mean TTL is floor + jitter/2.
//
// How evenly a herd ends up is then up to the slots. Pods are numbered per
// node, a node's prefix and its pods in order (10.244.N.P with a /24 per
// node), so a slot is the node's second, one more for each next node, plus a
// Fibonacci fraction of the ring for the pod and the name: each node's pods
// spread over the ring like a low-discrepancy sequence, any cycle's worth of
// consecutive nodes puts the same number of queries in every second, and
// fewer nodes put in each second the pods of one pattern that fall in a
// window of seconds, a count Fibonacci spacing keeps close to its mean.
// Clients whose slots share a second come back in it together: no rule that
// sees only the address, the name and the clock can part them
// (docs/jitter.md has the arithmetic and the figures).

// golden is 2^64 divided by the golden ratio.
const golden = 0x9E3779B97F4A7C15

// jitterFor returns the seconds to add to base for the client key (clientKey)
// at now (Unix seconds). It allocates nothing and divides twice.
func jitterFor(key uint64, now int64, base, jitter uint32) uint32 {
	if jitter == 0 {
		return 0
	}
	earlier := int64(jitter / 2)
	later := int64(jitter) - earlier
	cycle := int64(base) + earlier
	// Positions on the ring are in 1/65536 s.
	ring := cycle << 16
	slot := (int64(key>>32)%cycle)<<16 + int64(uint64(uint32(key))*uint64(cycle)>>16)
	// With a jitter of jitter/2 (TTL = cycle) the next refresh lands where
	// now is on the ring; d is how far the slot is from there, the shorter
	// way round (only later when the jitter cannot move a refresh earlier).
	// The slot's two parts add up to less than two rings.
	d := slot - (now%cycle)<<16
	if d < 0 {
		d += ring
	} else if d >= ring {
		d -= ring
	}
	if earlier > 0 && d >= ring/2 {
		d -= ring
	}
	move := d >> 16 // to the slot's second, in whole seconds (rounded down)
	if move < -1 || move > 1 {
		move = (3*abs(d)/4 + 1<<16 - 1) >> 16
		if d < 0 {
			move = -move
		}
	}
	return uint32(earlier + min(max(move, -earlier), later))
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// clientKey folds the client's address and the query name into one key: the
// address's node number (high 32 bits) and the Fibonacci fraction of its pod
// number plus a hash of the name (low 32 bits).
func clientKey(addr net.Addr, qname string) uint64 {
	node, pod := nodeAndPod(clientIP(addr))
	return node<<32 | (pod+nameKey(qname))*golden>>32
}

// clientIP is the IP address of the client as request.Request.IP sees it,
// taken from the net.Addr's concrete type, which allocates nothing. An address
// that wraps the client's, such as the one CoreDNS's proxyproto plugin hands
// out for clients behind a PROXY-protocol load balancer, is unwrapped as
// CoreDNS's request package does it.
func clientIP(addr net.Addr) net.IP {
	if u, ok := addr.(interface{ Unwrap() net.Addr }); ok {
		addr = u.Unwrap()
	}
	switch a := addr.(type) {
	case *net.UDPAddr:
		return a.IP
	case *net.TCPAddr:
		return a.IP
	}
	return nil
}

// nodeAndPod splits an address into a pod number, its last byte, and the
// number of its node, the rest, so that the next node's prefix counts one
// more. An IPv4 address's first three bytes are that number as they are
// (10.244.N, a /24 per node, and on across 10.245.0). IPv6 nodes own a /64
// (kubeadm), a /80 (EKS prefix delegation) or a /112 or /120, and count up in
// one byte or another of their prefix: the sum of the first 15 bytes modulo
// 255 counts one more for a step of one in any of them (256 is 1 modulo 255),
// so an IPv6 node number repeats every 255 nodes.
func nodeAndPod(ip net.IP) (node, pod uint64) {
	if v4 := ip.To4(); v4 != nil {
		return uint64(v4[0])<<16 | uint64(v4[1])<<8 | uint64(v4[2]), uint64(v4[3])
	}
	if len(ip) != net.IPv6len {
		return 0, 0
	}
	for _, b := range ip[:15] {
		node += uint64(b)
	}
	return node % 255, uint64(ip[15])
}

// nameKey is FNV-1a over the lower-cased name, so 0x20-randomized queries
// share a slot.
func nameKey(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(lowerByte(name[i]))
		h *= 1099511628211
	}
	return h
}
