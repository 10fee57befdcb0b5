package minttl

import (
	"math/bits"
	"net"
)

// TTLs are whole seconds, so clients that start in the same instant and are
// handed the same TTL stay in lockstep for good, and a random or per-client
// constant jitter only loosens the herd slowly (a random walk). minttl instead
// gives every (client, name) pair a slot on a ring as long as one refresh cycle
// (floor + jitter/2 seconds) and steers each refresh toward it, by at most
// jitter/2 a cycle: by a share of the distance left, the share that moves a
// client 3/10 of a cycle away by jitter/2 (0.3 at the defaults), and all the
// way once within 2 s. Moving by a share of the distance widens a herd evenly,
// like a rubber band: each client moves in proportion to how far its slot is,
// where moving all the way, or most of it, sends out fronts of clients that
// all move the most they can and arrive together. Near its slot a client
// covers the rest in one step, so clients settle exactly on their slots and
// then refresh once a cycle each; the mean TTL stays floor + jitter/2.
//
// Slots come from Fibonacci hashing: consecutive keys (pod IPs handed out in
// order) land as evenly on the ring as possible, and unrelated keys land like
// any hash would. A share of the distance is rarely a whole number of seconds:
// it is rounded up or down by a hash of the key and the second, up with the
// probability of the fraction, so that clients who share a position but not a
// slot part ways and none drifts. Rounding to the nearest second instead keeps
// the fronts (every client of a second moves alike).
//
// What bounds it: a client moves at most jitter/2 a cycle against the herd, so
// a herd grows at most jitter+1 seconds wider each cycle, and it holds at most
// twice the steady rate in every second only once it is about half a cycle
// wide and nearly even: in the third cycle at the defaults (90-108 s). A rule
// that knows only the key, the name, the clock second and its configuration
// cannot know when a herd started, so it cannot move each client in
// proportion to where its slot was at the start, which would spread the herd
// perfectly; a share of the distance left is the nearest it comes. Simulated
// (TestJitterRules: 200 and 2,000 lockstep clients × 2 names, floor 30 s,
// jitter 20 %): no second above twice the steady rate after 109 s (median of
// 8 starts; moving three quarters of the way: 145 s, all the way: 145-181 s),
// a busiest second of 1.1-1.3× the mean in the steady state, but up to 2×
// while the last clients settle (150-300 s).

// golden is 2^64 divided by the golden ratio.
const golden = 0x9E3779B97F4A7C15

// fraction is the resolution of slots: 1/65536 s.
const fraction = 16

// snap is how close to its slot (in 1/65536 s) a client moves all the way.
const snap = 2 << fraction

// jitterFor returns the seconds to add to base for the client key at now (Unix seconds).
func jitterFor(key uint64, now int64, base, jitter uint32) uint32 {
	if jitter == 0 {
		return 0
	}
	half := int64(jitter / 2)
	cycle := int64(base) + half
	// With a jitter of 1 s, half is 0 and a client can only move later: the
	// slot is then always ahead.
	d := slotDistance(key, now, cycle, half > 0)
	var move int64
	if abs(d) <= snap {
		move = (abs(d) + 1<<(fraction-1)) >> fraction
	} else {
		move = (share(abs(d), jitter, cycle) + int64(dither(key, now))) >> fraction
	}
	if d < 0 {
		move = -move
	}
	move = min(max(move, -half), int64(jitter)-half)
	return uint32(half + move)
}

// share is the part of distance d (in 1/65536 s) one refresh covers: in
// proportion to d, as much as moves a client 3/10 of a cycle from its slot by
// jitter/2, and no more than d.
func share(d int64, jitter uint32, cycle int64) int64 {
	// d × (jitter/2) / (3/10 × cycle); d × jitter takes up to 77 bits.
	hi, lo := bits.Mul64(uint64(d), uint64(jitter)*5)
	den := uint64(cycle) * 3
	if hi >= den {
		return d
	}
	q, _ := bits.Div64(hi, lo, den)
	return min(int64(q), d)
}

// dither is a hash of the key and the second, in [0, 1) s.
func dither(key uint64, now int64) uint64 {
	h := (key ^ uint64(now)*golden) * 0xD6E8FEB86659FD93
	h ^= h >> 32
	return (h * 0xD6E8FEB86659FD93) >> (64 - fraction)
}

// slotDistance is how far (in 1/65536 s, round the ring of cycle seconds,
// the shorter way if both ways are allowed) the key's slot is from where a
// refresh cycle seconds after now lands: the distance the jitter has to cover.
func slotDistance(key uint64, now, cycle int64, bothWays bool) int64 {
	ring := cycle << fraction
	slot, _ := bits.Mul64(key*golden, uint64(ring))
	d := (int64(slot) - (now%cycle)<<fraction + ring) % ring
	if bothWays && d > ring/2 {
		d -= ring
	}
	return d
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// clientKey folds the client's address and the query name into one key. It
// takes the address from the net.Addr's concrete type, which allocates nothing.
func clientKey(addr net.Addr, qname string) uint64 {
	var ip net.IP
	switch a := addr.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	return addressKey(ip) + nameKey(qname)
}

// addressKey keeps neighbouring addresses neighbouring keys, so that Fibonacci
// hashing spreads them evenly.
func addressKey(ip net.IP) uint64 {
	if v4 := ip.To4(); v4 != nil {
		return uint64(v4[0])<<24 | uint64(v4[1])<<16 | uint64(v4[2])<<8 | uint64(v4[3])
	}
	if len(ip) != net.IPv6len {
		return 0
	}
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(ip[i])
		lo = lo<<8 | uint64(ip[8+i])
	}
	return hi ^ lo
}

// nameKey is FNV-1a over the lower-cased name, so 0x20-randomized queries
// share a slot.
func nameKey(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}
