package minttl

import (
	"fmt"
	"math"
	"math/bits"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// A herd is clients × 2 names that all resolve in the same instant (a
// rollout) and re-resolve the moment their TTL runs out, as the storm lab's
// proxies do, replayed on simulated time: what the lab measures in minutes,
// in milliseconds. Answers come from replicas whose clocks may be off; each
// query goes to one of them at random, as kube-proxy sends it.
type herd struct {
	clients       int
	floor, jitter uint32
	seconds       int
	epoch         time.Time       // the wall clock when the herd starts
	skew          []time.Duration // each replica's clock offset; nil: one replica
	rule          func(key uint64, now int64, base, jitter uint32) uint32
	key           func(addr net.Addr, qname string) uint64 // nil: clientKey
	layout        func(c int) net.IP                       // client c's address; nil: podLayouts[0]
}

// herdRun is what a herd did.
type herdRun struct {
	perSecond         []int   // queries in each second since the start
	perReplica        [][]int // each replica's queries in each of its own seconds
	queries           int
	sumTTL            uint64
	minTTL, maxTTL    uint32
	probes, differing int // replicas asked the same question at the same instant
}

var herdNames = []string{"linkerd-policy.linkerd.svc.cluster.local.", "linkerd-dst-headless.linkerd.svc.cluster.local."}

// answerTime is how long after a query its answer arrives, when the client
// starts waiting out the TTL: herds drift across second boundaries slowly.
const answerTime = time.Millisecond

func (h herd) run() herdRun {
	skew := h.skew
	if len(skew) == 0 {
		skew = []time.Duration{0}
	}
	key, layout := h.key, h.layout
	if key == nil {
		key = clientKey
	}
	if layout == nil {
		layout = podLayouts[0].client
	}
	r := herdRun{perSecond: make([]int, h.seconds), perReplica: make([][]int, len(skew)), minTTL: ^uint32(0)}
	for i := range r.perReplica {
		r.perReplica[i] = make([]int, h.seconds+1)
	}
	end := time.Duration(h.seconds) * time.Second
	start := h.epoch.Unix()
	pick := uint64(1)
	ttlAt := func(key uint64, at time.Duration, replica int) uint32 {
		now := h.epoch.Add(at + skew[replica]).Unix()
		return h.floor + h.rule(key, now, h.floor, h.jitter)
	}
	for c := 0; c < h.clients; c++ {
		addr := &net.UDPAddr{IP: layout(c)}
		for _, name := range herdNames {
			key := key(addr, name)
			for at := time.Duration(0); at < end; {
				pick = pick*6364136223846793005 + 1442695040888963407
				replica := int((pick >> 33) % uint64(len(skew)))
				ttl := ttlAt(key, at, replica)
				r.perSecond[at/time.Second]++
				if s := h.epoch.Add(at+skew[replica]).Unix() - start; s < int64(h.seconds) {
					r.perReplica[replica][s]++
				}
				r.queries++
				r.sumTTL += uint64(ttl)
				r.minTTL, r.maxTTL = min(r.minTTL, ttl), max(r.maxTTL, ttl)
				at += time.Duration(ttl)*time.Second + answerTime
			}
		}
	}
	if len(skew) > 1 {
		probe := key(&net.UDPAddr{IP: net.IPv4(10, 245, 0, 1)}, herdNames[0])
		for at := 700 * time.Millisecond; at < end; at += 5*time.Second + 97*time.Millisecond {
			r.probes++
			for replica := 1; replica < len(skew); replica++ {
				if ttlAt(probe, at, replica) != ttlAt(probe, at, 0) {
					r.differing++
					break
				}
			}
		}
	}
	return r
}

func (r herdRun) meanTTL() float64 { return float64(r.sumTTL) / float64(r.queries) }

// peakToMean is the busiest second of [from, to) over its mean second.
func (r herdRun) peakToMean(from, to int) float64 {
	peak, total := 0, 0
	for _, n := range r.perSecond[from:to] {
		peak, total = max(peak, n), total+n
	}
	return float64(peak) * float64(to-from) / float64(total)
}

// calm is the first second after which no second holds more than twice the
// mean second of the second half (the storm lab's measure).
func (r herdRun) calm() int {
	half := r.perSecond[len(r.perSecond)/2:]
	total := 0
	for _, n := range half {
		total += n
	}
	limit := 2 * float64(total) / float64(len(half))
	calm := 0
	for s, n := range r.perSecond {
		if float64(n) > limit {
			calm = s + 1
		}
	}
	return calm
}

// herdSummary is how a rule does over herds that start at different instants
// (the slots fall differently against each start, and so does the sub-second
// phase of the clients against the replicas' seconds): the median over the
// starts and the worst.
type herdSummary struct {
	calm, latest            int
	settling, settlingWorst float64 // peak/mean over 150-300 s (the storm lab's late window)
	steady, steadyWorst     float64 // peak/mean over the last 300 s: 600-900 s of a 900 s herd
	meanTTL                 float64 // the highest over the starts
	minTTL, maxTTL          uint32
}

// herdStarts is how many starts a summary takes the median of.
const herdStarts = 8

// steadySeconds is how long the simulation runs: the issue asks for the
// steady state 600-900 s after a lockstep start.
const steadySeconds = 900

func summarizeHerds(h herd, starts int) herdSummary {
	s := herdSummary{minTTL: ^uint32(0)}
	var calms []int
	var settling, steady []float64
	for i := 0; i < starts; i++ {
		h.epoch = pinned.Add(time.Duration(i) * 7919 * time.Millisecond)
		r := h.run()
		calms = append(calms, r.calm())
		settling = append(settling, r.peakToMean(150, 300))
		steady = append(steady, r.peakToMean(h.seconds-300, h.seconds))
		s.meanTTL = max(s.meanTTL, r.meanTTL())
		s.minTTL, s.maxTTL = min(s.minTTL, r.minTTL), max(s.maxTTL, r.maxTTL)
	}
	slices.Sort(calms)
	slices.Sort(settling)
	slices.Sort(steady)
	s.calm, s.latest = calms[len(calms)/2], calms[len(calms)-1]
	s.settling, s.settlingWorst = settling[len(settling)/2], settling[len(settling)-1]
	s.steady, s.steadyWorst = steady[len(steady)/2], steady[len(steady)-1]
	return s
}

func (s herdSummary) String() string {
	return fmt.Sprintf("calm after %3d s (latest %3d), 150-300 s %.2f× (worst %.2f×), 600-900 s %.2f× (worst %.2f×), mean TTL %.2f s, TTLs %d-%d s",
		s.calm, s.latest, s.settling, s.settlingWorst, s.steady, s.steadyWorst, s.meanTTL, s.minTTL, s.maxTTL)
}

// defaultHerd is a lockstep herd at minttl's defaults, 900 s long.
func defaultHerd(clients int) herd {
	return herd{clients: clients, floor: defaultFloor, jitter: defaultFloor * defaultJitter / 100, seconds: steadySeconds, rule: jitterFor}
}

// Pod addresses as clusters hand them out: pod p of node n, pods a node.
type podLayout struct {
	name string
	pods int
	addr func(n, p int) net.IP
}

// defaultCycle is the ring at minttl's defaults: floor + jitter/2, 34 s.
const defaultCycle = defaultFloor + defaultFloor*defaultJitter/100/2

// podsPerNode is how many pods a node runs in the simulation.
const podsPerNode = 30

var podLayouts = []podLayout{
	// A /24 per node (kubeadm's default node-cidr-mask-size); .0 is the
	// network and .1 the node's bridge.
	{"IPv4, a /24 per node", podsPerNode, func(n, p int) net.IP { return net.IPv4(10, byte(244+n/256), byte(n), byte(p+2)) }},
	// A /64 per node (node-cidr-mask-size-ipv6 64): fd00:10:244:N::P.
	{"IPv6, a /64 per node", podsPerNode, func(n, p int) net.IP { return ipv6(0xfd00, 0x10, 0x244, n, 0, 0, 0, p+2) }},
	// EKS prefix delegation: a /80 per node out of the subnet's /64, pods in its last bits.
	{"IPv6, a /80 per node", podsPerNode, func(n, p int) net.IP { return ipv6(0x2600, 0x1f14, 0x0abc, 0x1200, 0x8c00+n, 0, 0, p+2) }},
	// Dual stack: every other pod resolves over IPv6.
	{"dual stack", podsPerNode, func(n, p int) net.IP {
		if p%2 == 1 {
			return ipv6(0xfd00, 0x10, 0x244, n, 0, 0, 0, p+2)
		}
		return net.IPv4(10, byte(244+n/256), byte(n), byte(p+2))
	}},
}

func ipv6(groups ...int) net.IP {
	ip := make(net.IP, net.IPv6len)
	for i, g := range groups {
		ip[2*i], ip[2*i+1] = byte(g>>8), byte(g)
	}
	return ip
}

func (l podLayout) client(c int) net.IP { return l.addr(c/l.pods, c%l.pods) }

// slotsPeak is the busiest second of the herd's slots, clients × names placed
// in their slot's second on a ring of cycle seconds (jitterFor's slots), and
// the mean second: where a rule that takes every client to its slot's second
// ends, and so the most evenly the slots let any such rule spread the herd.
func slotsPeak(clients int, layout func(int) net.IP, cycle int64, names ...string) (peak int, mean float64) {
	if len(names) == 0 {
		names = herdNames
	}
	seconds := make([]int, cycle)
	for c := 0; c < clients; c++ {
		for _, name := range names {
			seconds[slotSecond(clientKey(&net.UDPAddr{IP: layout(c)}, name), cycle)]++
		}
	}
	return slices.Max(seconds), float64(clients*len(names)) / float64(cycle)
}

// slotsPeak34 is slotsPeak for the slots before (clientKey34): each client in
// the second nearest its slot.
func slotsPeak34(clients int, layout func(int) net.IP, cycle int64) int {
	seconds := make([]int, cycle)
	for c := 0; c < clients; c++ {
		for _, name := range herdNames {
			d := slotDistance(clientKey34(&net.UDPAddr{IP: layout(c)}, name), 0, cycle, false)
			seconds[(d+1<<(fraction-1))>>fraction%cycle]++
		}
	}
	return slices.Max(seconds)
}

// otherNames is how the slots' busiest second goes for pairs of names other
// than Linkerd's: how many of 200 pairs have each count in it.
func otherNames(clients int, layout func(int) net.IP, cycle int64) string {
	counts := map[int]int{}
	for i := 0; i < 200; i++ {
		peak, _ := slotsPeak(clients, layout, cycle, fmt.Sprintf("svc-%d.ns.svc.cluster.local.", i), fmt.Sprintf("svc-%d-headless.ns.svc.cluster.local.", i))
		counts[peak]++
	}
	var b strings.Builder
	for peak := 0; peak <= clients*2; peak++ {
		if counts[peak] > 0 {
			fmt.Fprintf(&b, " %d in %d,", peak, counts[peak])
		}
	}
	return strings.TrimSuffix(b.String(), ",")
}

// The rule that shipped before, kept to compare with (jitterFor34 and the key
// it came with), and rules of its kind.

// fraction is the resolution of jitterFor34's slots: 1/65536 s.
const fraction = 16

// jitterFor34 moves the next refresh three quarters of the way toward the
// slot, to the nearest second: within about 2/3 s of its slot a client no
// longer moves, so neighbours that share a second never part.
func jitterFor34(key uint64, now int64, base, jitter uint32) uint32 {
	if jitter == 0 {
		return 0
	}
	half := int64(jitter / 2)
	d := slotDistance(key, now, int64(base)+half, half > 0)
	move := (3*abs(d)/4 + 1<<(fraction-1)) >> fraction
	if d < 0 {
		move = -move
	}
	move = min(max(move, -half), int64(jitter)-half)
	return uint32(half + move)
}

// slotDistance is how far (in 1/65536 s, round the ring of cycle seconds,
// the shorter way if both ways are allowed) the key's slot is from where a
// refresh cycle seconds after now lands, as jitterFor34 reckons it: the slot
// is the Fibonacci hash of the whole key.
func slotDistance(key uint64, now, cycle int64, bothWays bool) int64 {
	ring := cycle << fraction
	slot, _ := bits.Mul64(key*golden, uint64(ring))
	d := (int64(slot) - (now%cycle)<<fraction + ring) % ring
	if bothWays && d > ring/2 {
		d -= ring
	}
	return d
}

// clientKey34 is the key jitterFor34 came with: the address (an IPv6
// address's last 32 bits plus a hash of its prefix) plus a hash of the name.
func clientKey34(addr net.Addr, qname string) uint64 {
	ip := clientIP(addr)
	if v4 := ip.To4(); v4 != nil {
		return uint64(v4[0])<<24 | uint64(v4[1])<<16 | uint64(v4[2])<<8 | uint64(v4[3]) + nameKey(qname)
	}
	if len(ip) != net.IPv6len {
		return nameKey(qname)
	}
	var prefix, lo uint64
	for i := 0; i < 8; i++ {
		prefix = prefix<<8 | uint64(ip[i])
	}
	for i := 8; i < 12; i++ {
		lo = lo<<8 | uint64(ip[i])
	}
	host := uint64(ip[12])<<24 | uint64(ip[13])<<16 | uint64(ip[14])<<8 | uint64(ip[15])
	return mix(prefix^mix(lo)) + host + nameKey(qname)
}

// mix is the finalizer of SplitMix64.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	return x ^ x>>31
}

// steer is a rule of jitterFor34's kind: move share of the distance to the
// slot, rounded to a whole second by round, all the way once within near (in
// 1/65536 s; 0: never).
func steer(share float64, round func(move, key uint64, now int64) int64, near int64) func(uint64, int64, uint32, uint32) uint32 {
	return func(key uint64, now int64, base, jitter uint32) uint32 {
		half := int64(jitter / 2)
		d := slotDistance(key, now, int64(base)+half, half > 0)
		a := abs(d)
		move := (a + 1<<(fraction-1)) >> fraction
		if a > near {
			move = round(uint64(float64(a)*share), key, now)
		}
		if d < 0 {
			move = -move
		}
		return uint32(half + min(max(move, -half), int64(jitter)-half))
	}
}

// dither is a hash of the key and the second, in [0, 1) s.
func dither(key uint64, now int64) uint64 {
	h := (key ^ uint64(now)*golden) * 0xD6E8FEB86659FD93
	h ^= h >> 32
	return (h * 0xD6E8FEB86659FD93) >> (64 - fraction)
}

func nearest(move, _ uint64, _ int64) int64 { return int64(move+1<<(fraction-1)) >> fraction }

// hashed rounds up with the probability of the fraction, by a hash of the key
// and the second.
func hashed(move, key uint64, now int64) int64 { return int64(move+dither(key, now)) >> fraction }

// interleaved rounds up by a second low-discrepancy sequence over the keys,
// turned by the clock: evenly interleaved where hashed is random.
func interleaved(move, key uint64, now int64) int64 {
	const plastic2 = 0x91E10DA5C79E7B1D // 2^64 / the plastic number squared
	return int64(move+(key*plastic2+uint64(now)*golden)>>(64-fraction)) >> fraction
}

// toward is a rule on jitterFor's slots: to the slot's second once within a
// second of it (whole seconds, rounded down, -1 to 1), farther share num/den
// of the way, rounded up when up, else to the nearest second. jitterFor is
// toward(3, 4, true).
func toward(num, den int64, up bool) func(uint64, int64, uint32, uint32) uint32 {
	return func(key uint64, now int64, base, jitter uint32) uint32 {
		if jitter == 0 {
			return 0
		}
		earlier := int64(jitter / 2)
		cycle := int64(base) + earlier
		ring := cycle << 16
		slot := (int64(key>>32)%cycle)<<16 + int64(uint64(uint32(key))*uint64(cycle)>>16)
		d := (slot - (now%cycle)<<16 + ring) % ring
		if earlier > 0 && d >= ring/2 {
			d -= ring
		}
		move := d >> 16
		if move < -1 || move > 1 {
			round := int64(1<<16 - 1)
			if !up {
				round = 1 << 15
			}
			move = (abs(d)*num/den + round) >> 16
			if d < 0 {
				move = -move
			}
		}
		return uint32(earlier + min(max(move, -earlier), int64(jitter)-earlier))
	}
}

// lenient is jitterFor that also leaves a client one second past its slot's
// second where it is, and so never moves a client back and forth between
// replicas whose clocks are up to a second apart (TestReplicaClockSkew). It
// never lands a client there itself: a move that would lands a second earlier
// (or, already the earliest, a second later).
func lenient(key uint64, now int64, base, jitter uint32) uint32 {
	earlier := int64(jitter / 2)
	cycle := int64(base) + earlier
	slot := slotSecond(key, cycle)
	if (now-slot-1)%cycle == 0 {
		return uint32(earlier)
	}
	j := int64(jitterFor(key, now, base, jitter))
	if (now+j-earlier-slot-1)%cycle == 0 {
		if j > 0 {
			j--
		} else {
			j++
		}
	}
	return uint32(j)
}

// slotSecond is the second of the ring of cycle seconds the key's slot is in.
func slotSecond(key uint64, cycle int64) int64 {
	return (int64(key>>32)%cycle + int64(uint64(uint32(key))*uint64(cycle)>>32)) % cycle
}

// rulesCompared are the rules TestJitterRules tries, each with what it was
// to show.
var rulesCompared = []struct {
	name, why string
	key       func(net.Addr, string) uint64
	rule      func(uint64, int64, uint32, uint32) uint32
}{
	{"jitterFor34: 3/4 of the way, to the nearest second", "the rule before: calm at 91 s, then neighbours within 2/3 s of their slots never part",
		clientKey34, jitterFor34},
	{"all the way", "exact slots: far clients move the most a cycle together, in blocks",
		clientKey34, steer(1, nearest, 0)},
	{"1/4 of the way, rounded by a hash", "small moves spread a herd without blocks",
		clientKey34, steer(0.25, hashed, 0)},
	{"3/10 of the way, to the nearest second, all within 2 s", "smaller moves, exact near the slot: fewer blocks, and no rest short of the slot",
		clientKey34, steer(0.3, nearest, 2<<fraction)},
	{"3/10 of the way, rounded interleaved, all within 2 s", "small moves rounded up or down evenly over the keys, so that they do not all round alike",
		clientKey34, steer(0.3, interleaved, 2<<fraction)},
	{"3/10 of the way, rounded by a hash, all within 2 s", "the same, rounded by a hash of the key and the second",
		clientKey34, steer(0.3, hashed, 2<<fraction)},
	{"1/2 of the way, rounded by a hash, all within 2 s", "a larger share calms sooner", clientKey34, steer(0.5, hashed, 2<<fraction)},
	{"0.85 of the way, all within a second", "the issue's experiment: reach the slots and calm as fast; is the steady state then even?",
		clientKey34, steer(0.85, nearest, 1<<fraction)},
	{"node seconds: all the way", "slots a second apart per node: how even do they let a herd get?",
		clientKey, toward(1, 1, false)},
	{"node seconds: 3/4 of the way, to the nearest second", "jitterFor34's far moves on the node slots",
		clientKey, toward(3, 4, false)},
	{"node seconds: 2/3 of the way, rounded up", "rounded up, so that no move rounds to nothing; is a smaller share as fast?",
		clientKey, toward(2, 3, true)},
	{"jitterFor: node seconds, 3/4 of the way rounded up", "moves of 3/4 rounded up differ with the distance, and bring every client to its slot's second by its fifth refresh",
		clientKey, jitterFor},
}

// TestJitterRules replays lockstep herds of 200 and 2,000 clients (30 pods a
// node, IPv4) at the defaults with each rule of rulesCompared and prints the
// table (go test -run TestJitterRules -v; make herd-sim). jitterFor must meet
// the figures where whole seconds allow them: calm within 95 s and
// the 150-300 s window within 1.25× the mean second at both sizes, the
// steady state within 1.05× at 2,000, and at 200 exactly what its slots
// allow (TestPodLayoutsSpread says how much that is); and no rule of the table
// may do as well on every figure and better on one.
func TestJitterRules(t *testing.T) {
	sizes := []int{200, 2000}
	results := make([][]herdSummary, len(rulesCompared))
	for i, r := range rulesCompared {
		t.Logf("%s", r.name)
		if r.why != "" {
			t.Logf("    why: %s", r.why)
		}
		for _, clients := range sizes {
			h := defaultHerd(clients)
			h.key, h.rule = r.key, r.rule
			s := summarizeHerds(h, herdStarts)
			results[i] = append(results[i], s)
			t.Logf("    %4d clients: %s", clients, s)
		}
	}
	mine := results[len(results)-1]
	for k, clients := range sizes {
		s := mine[k]
		if s.calm > 95 || s.settling > 1.25 || clients >= 2000 && s.steady > 1.05 {
			t.Errorf("jitterFor, %d clients: %s", clients, s)
		}
		if peak, mean := slotsPeak(clients, podLayouts[0].client, defaultCycle); math.Abs(s.steady-float64(peak)/mean) > 0.01 {
			t.Errorf("jitterFor, %d clients: steady state %.2f×, its slots' busiest second %d of %.2f (%.2f×): not every client reaches its slot's second",
				clients, s.steady, peak, mean, float64(peak)/mean)
		}
	}
	for i, r := range rulesCompared[:len(rulesCompared)-1] {
		if dominates(results[i], mine) {
			t.Errorf("%q does as well as jitterFor everywhere and better somewhere: %v against %v", r.name, results[i], mine)
		}
	}
}

// dominates says whether a is as good as b on every figure (the median calm,
// 150-300 s and steady state) and better on one.
func dominates(a, b []herdSummary) bool {
	better := false
	for k := range a {
		if a[k].calm > b[k].calm || a[k].settling > b[k].settling+0.005 || a[k].steady > b[k].steady+0.005 {
			return false
		}
		better = better || a[k].calm < b[k].calm || a[k].settling < b[k].settling-0.005 || a[k].steady < b[k].steady-0.005
	}
	return better
}

// TestTowardIsJitterFor: the table's variants of jitterFor share its code
// path but for the share and the rounding, so toward(3, 4, true) must be
// jitterFor itself.
func TestTowardIsJitterFor(t *testing.T) {
	same := toward(3, 4, true)
	for _, cfg := range [][2]uint32{{30, 9}, {30, 1}, {30, 6}, {5, 2}, {86400, 86400}} {
		for k := uint64(0); k < 3000; k++ {
			key := mix(k)
			for now := int64(1_790_000_000); now < 1_790_000_000+int64(cfg[0]+cfg[1]); now += 7 {
				if a, b := jitterFor(key, now, cfg[0], cfg[1]), same(key, now, cfg[0], cfg[1]); a != b {
					t.Fatalf("key %#x now %d %v: jitterFor %d, toward %d", key, now, cfg, a, b)
				}
			}
		}
	}
}

// TestJitterSettings checks what the README's table tells operators: a larger
// jitter calms a herd of 2,000 sooner (median of 8 starts), at the price of a
// longer mean TTL; the rule before beside it.
func TestJitterSettings(t *testing.T) {
	last := herdSummary{calm: 1 << 30}
	for _, percent := range []uint32{10, 20, 30, 50} {
		h := defaultHerd(2000)
		h.jitter = defaultFloor * percent / 100
		s := summarizeHerds(h, herdStarts)
		h.key, h.rule = clientKey34, jitterFor34
		t.Logf("jitter %d %%: %s", percent, s)
		t.Logf("  jitterFor34: %s", summarizeHerds(h, herdStarts))
		if s.calm > last.calm || s.meanTTL <= last.meanTTL {
			t.Errorf("jitter %d %%: %s; less jitter: %s", percent, s, last)
		}
		last = s
	}
	// deploy/kubeadm's floor is 31 s (kubeadm's ttl 30 must be raised too),
	// its jitter 30 % of it, 9 s: a cycle of 35 s, which the same moves take
	// about a cycle longer to spread (README: 2 minutes).
	for _, clients := range []int{200, 2000} {
		h := defaultHerd(clients)
		h.floor, h.jitter = 31, 31*defaultJitter/100
		s := summarizeHerds(h, herdStarts)
		t.Logf("floor 31 s, jitter 9 s (deploy/kubeadm), %4d clients: %s", clients, s)
		if s.calm > 125 || s.latest > 130 {
			t.Errorf("deploy/kubeadm's 31 s + 9 s, %d clients: %s; README says 2 minutes", clients, s)
		}
	}
}

// TestReplicaClockSkew replays herds on three replicas that a query reaches
// at random: replicas with synced clocks must always agree and so spread a
// herd exactly as one replica does; clocks 10 and 20 ms apart (NTP keeps
// nodes closer) must not change anything; clocks 250 and 500 ms ahead of the
// first cost what TTLs in whole seconds must cost (docs/jitter.md): a herd
// whose clients query within the skew before a second's edge meets replicas
// that disagree which second it is, so its clients step between two seconds
// at random. lenient shows the way out that is worse: tolerating a second's
// skew keeps such herds still, but leaves the clients of one second of a
// synced herd stuck a second late, on top of the next second's.
func TestReplicaClockSkew(t *testing.T) {
	clocks := []struct {
		name string
		skew []time.Duration
	}{
		{"1 replica", nil},
		{"3 replicas, synced", []time.Duration{0, 0, 0}},
		{"3 replicas, 0/10/20 ms", []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond}},
		{"3 replicas, 0/250/500 ms", []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond}},
	}
	for _, clients := range []int{200, 2000} {
		var one herdSummary
		for i, c := range clocks {
			h := defaultHerd(clients)
			h.skew = c.skew
			s := summarizeHerds(h, herdStarts)
			h.key, h.rule = clientKey34, jitterFor34
			before := summarizeHerds(h, herdStarts)
			h.key, h.rule = clientKey, lenient
			tolerant := summarizeHerds(h, herdStarts)
			t.Logf("%4d clients, %-25s %s", clients, c.name+":", s)
			t.Logf("%4d clients, %-25s %s", clients, "  jitterFor34:", before)
			if i == 1 || i == 3 {
				t.Logf("%4d clients, %-25s %s", clients, "  lenient:", tolerant)
			}
			switch i {
			case 0:
				one = s
			case 1, 2:
				if s != one {
					t.Errorf("%d clients, %s: %s; 1 replica: %s", clients, c.name, s, one)
				}
			case 3:
				// Below the 2× of lenient on synced replicas at 200 clients,
				// below the 1.33× of jitterFor34 with any clocks at 2,000.
				if s.calm > one.calm || s.steady > map[int]float64{200: 1.7, 2000: 1.2}[clients] {
					t.Errorf("%d clients, %s: %s", clients, c.name, s)
				}
				if tolerant.steady > 1.1*one.steady {
					t.Errorf("%d clients, %s: lenient %s; with one replica %s", clients, c.name, tolerant, one)
				}
			}
			if i == 1 && tolerant.steady < 1.9 {
				t.Errorf("%d clients: lenient on synced replicas %s: no cohort stuck a second late", clients, tolerant)
			}
		}
	}
	// Replicas asked the same question at the same instant.
	for _, c := range clocks[1:] {
		h := defaultHerd(200)
		h.skew, h.seconds = c.skew, 600
		for i := 0; i < 4; i++ {
			h.epoch = pinned.Add(time.Duration(i) * 250 * time.Millisecond)
			r := h.run()
			t.Logf("start %s, %s: replicas differ in %d of %d probes", h.epoch.Format(".000"), c.name, r.differing, r.probes)
			synced := c.skew[2] == 0
			if synced && r.differing != 0 {
				t.Errorf("start %s: replicas with synced clocks differ in %d of %d probes", h.epoch.Format(".000"), r.differing, r.probes)
			}
			if c.skew[2] >= 500*time.Millisecond && r.differing == 0 {
				t.Errorf("start %s: replicas 500 ms apart never differ: the probes miss the second boundaries", h.epoch.Format(".000"))
			}
		}
	}
}

// TestPodLayoutsSpread replays lockstep herds of 200 and 2,000 clients, 30
// pods a node, in each layout at the defaults, jitterFor34 beside: every
// layout must meet TestJitterRules' figures, reach its slots' busiest second
// (printed: what no rule on these slots can beat), and give each pod a key of
// its own. At 200 clients, 6 full nodes and 20 pods, each name's slots put 7
// queries in some seconds where the mean is 5.9 (a window of 7 node seconds
// holds 30 × 7/34 = 6.2 pods on average), and where the two names' busiest
// seconds meet, 14: 1.19× the mean second.
func TestPodLayoutsSpread(t *testing.T) {
	cycle := int64(defaultCycle)
	apart := float64(uint32((nameKey(herdNames[0])-nameKey(herdNames[1]))*golden>>32)) / (1 << 32) * float64(cycle)
	t.Logf("the Linkerd names' slots are %.2f s apart on the ring of %d s", min(apart, float64(cycle)-apart), cycle)
	for _, l := range podLayouts {
		for _, clients := range []int{200, 2000} {
			keys := distinctKeys(clients, l.client)
			h := defaultHerd(clients)
			h.layout = l.client
			s := summarizeHerds(h, herdStarts)
			h.key, h.rule = clientKey34, jitterFor34
			before := summarizeHerds(h, herdStarts)
			peak, mean := slotsPeak(clients, l.client, cycle)
			t.Logf("%-22s %4d clients: %s", l.name, clients, s)
			t.Logf("%-22s %4d clients: the slots' busiest second %d, %.2f× the mean %.2f (the slots before: %d); %d distinct keys",
				"", clients, peak, float64(peak)/mean, mean, slotsPeak34(clients, l.client, cycle), keys)
			t.Logf("%-22s %4d clients: jitterFor34: %s", "", clients, before)
			t.Logf("%-22s %4d clients: their slots' busiest second with 200 other pairs of names:%s", "", clients, otherNames(clients, l.client, cycle))
			if keys != clients {
				t.Errorf("%s: %d pods share %d keys", l.name, clients, keys)
			}
			if s.calm > 95 || s.settling > 1.25 || math.Abs(s.steady-float64(peak)/mean) > 0.01 || clients >= 2000 && s.steady > 1.05 {
				t.Errorf("%s, %d clients: %s; its slots' busiest second %.2f×", l.name, clients, s, float64(peak)/mean)
			}
			if float64(peak) > math.Ceil(mean)+2 {
				t.Errorf("%s, %d clients: the slots put %d queries in a second, %.2f on average", l.name, clients, peak, mean)
			}
		}
	}
}

// TestJitterBounds: for any key, at any second of the ring, jitterFor stays
// within [0, jitter]; from any second a client that follows it reaches its
// slot's second within a bounded number of refreshes (the most moves of
// jitter/2 that half the ring takes, then a few of 3/4 of the way) and then gets
// exactly jitter/2 each time (TTL floor + jitter/2); and over its refreshes
// the mean TTL is floor + jitter/2 to within a ring's length spread over them.
func TestJitterBounds(t *testing.T) {
	for _, cfg := range []struct{ base, jitter uint32 }{{30, 9}, {30, 6}, {30, 1}, {30, 2}, {30, 15}, {1, 1}, {5, 0}, {3, 40}, {300, 90}} {
		earlier := cfg.jitter / 2
		cycle := int64(cfg.base + earlier)
		// Clamped moves to within a move's reach, then 3/4 of the way (a
		// quarter left, rounded up) down to a second, then the last step.
		reach := max(int(min(earlier, cfg.jitter-earlier)), 1)
		steps := (int(cycle)/2+reach-1)/reach + (bits.Len32(cfg.jitter-earlier)+1)/2 + 2
		if earlier == 0 { // later only, a second a cycle
			steps = int(cycle)
		}
		for k := uint64(0); k < 400; k++ {
			key := clientKey(&net.UDPAddr{IP: podLayouts[k%4].client(int(k))}, herdNames[k%2])
			if k%3 == 0 {
				key = mix(k) // any key, a node number beyond the ring's seconds too
			}
			slot := slotSecond(key, cycle)
			for start := int64(1_790_000_000); start < 1_790_000_000+cycle; start++ {
				now, sum := start, int64(0)
				for step := 0; step < steps+20; step++ {
					j := jitterFor(key, now, cfg.base, cfg.jitter)
					if j > cfg.jitter {
						t.Fatalf("base %d jitter %d key %#x now %d: j = %d", cfg.base, cfg.jitter, key, now, j)
					}
					if cfg.jitter > 0 && step >= steps && (j != earlier || now%cycle != slot) {
						t.Fatalf("base %d jitter %d key %#x from %d: refresh %d at second %d of the ring, j = %d; slot's second %d",
							cfg.base, cfg.jitter, key, start, step, now%cycle, j, slot)
					}
					sum += int64(cfg.base + j)
					now += int64(cfg.base + j)
				}
				if mean := float64(sum) / float64(steps+20); math.Abs(mean-float64(cycle)) > float64(cycle)/float64(steps+20) {
					t.Fatalf("base %d jitter %d key %#x from %d: mean TTL %.2f, want %d", cfg.base, cfg.jitter, key, start, mean, cycle)
				}
			}
		}
	}
	// The largest settings, a few seconds of the ring.
	for _, cfg := range []struct{ base, jitter uint32 }{{86400, maxTTL - 86400}, {1, maxTTL - 1}, {maxTTL - 1, 1}} {
		for k := uint64(0); k < 1000; k++ {
			for _, now := range []int64{0, 1_790_000_000, 1_790_000_000 + int64(k)*104729, math.MaxInt32} {
				if j := jitterFor(mix(k), now, cfg.base, cfg.jitter); j > cfg.jitter {
					t.Fatalf("base %d jitter %d: j = %d", cfg.base, cfg.jitter, j)
				}
			}
		}
	}
}

// BenchmarkJitter is the key and the jitter of one raised response, each
// alone, jitterFor beside jitterFor34:
//
//	go test -run '^$' -bench Jitter -benchmem -count 10
func BenchmarkJitter(b *testing.B) {
	addrs := make([]net.Addr, 64)
	for i := range addrs {
		addrs[i] = &net.UDPAddr{IP: podLayouts[i%4].client(i * 7)}
	}
	for _, r := range []struct {
		name string
		key  func(net.Addr, string) uint64
		rule func(uint64, int64, uint32, uint32) uint32
	}{{"jitterFor", clientKey, jitterFor}, {"jitterFor34", clientKey34, jitterFor34}} {
		keys := make([]uint64, len(addrs))
		for i, a := range addrs {
			keys[i] = r.key(a, herdNames[i&1])
		}
		b.Run("rule="+r.name+"/part=key", func(b *testing.B) {
			b.ReportAllocs()
			sum := uint64(0)
			for i := 0; i < b.N; i++ {
				sum += r.key(addrs[i%64], herdNames[i&1])
			}
			if sum == 0 {
				b.Fatal("no key")
			}
		})
		b.Run("rule="+r.name+"/part=jitter", func(b *testing.B) {
			b.ReportAllocs()
			sum := uint32(0)
			for i := 0; i < b.N; i++ {
				sum += r.rule(keys[i%64], 1_790_000_000+int64(i), 30, 9)
			}
			if sum == 0 {
				b.Fatal("no jitter")
			}
		})
	}
}

// herdFactors are the herd factor of per-second counts, their 99th
// percentile over their mean: exact (the nearest rank), and as Prometheus
// reads it from the herd metric's buckets (histogram_quantile over
// perSecondBuckets: linear within the bucket the rank falls in).
func herdFactors(counts []int) (exact, bucketed float64) {
	sorted := slices.Clone(counts)
	slices.Sort(sorted)
	total := 0
	for _, n := range counts {
		total += n
	}
	mean := float64(total) / float64(len(counts))
	rank := 0.99 * float64(len(counts))
	exact = float64(sorted[int(math.Ceil(rank))-1]) / mean

	bounds := append(perSecondBuckets(), math.Inf(1))
	cumulative := make([]float64, len(bounds))
	for _, n := range counts {
		for i := range bounds {
			if float64(n) <= bounds[i] {
				cumulative[i]++
			}
		}
	}
	b := 0
	for cumulative[b] < rank {
		b++
	}
	if b == len(bounds)-1 {
		return exact, bounds[b-1] / mean
	}
	start, count := 0.0, cumulative[b]
	if b > 0 {
		start, count, rank = bounds[b-1], count-cumulative[b-1], rank-cumulative[b-1]
	}
	return exact, (start + (bounds[b]-start)*rank/count) / mean
}

// herdFactorReadings are the herd factors of every window a herd was read
// in, each replica's, exactly and from the √2 buckets.
type herdFactorReadings struct{ exact, bucketed []float64 }

// herdFactorsAfterCalm reads the herd factor of h, for herdStarts starts, in
// every 5-minute window that starts after the calm (every 15 s, a scrape
// interval) on each replica's own seconds, and the mean second per replica.
func herdFactorsAfterCalm(h herd) (r herdFactorReadings, meanSecond float64) {
	for i := 0; i < herdStarts; i++ {
		h.epoch = pinned.Add(time.Duration(i) * 7919 * time.Millisecond)
		run := h.run()
		for from := (run.calm() + 14) / 15 * 15; from+300 <= h.seconds; from += 15 {
			for _, seconds := range run.perReplica {
				window := seconds[from : from+300]
				e, b := herdFactors(window)
				r.exact, r.bucketed = append(r.exact, e), append(r.bucketed, b)
				for _, n := range window {
					meanSecond += float64(n)
				}
			}
		}
	}
	return r, meanSecond / float64(len(r.exact)*300)
}

// medianRange is the median of x and its range.
func medianRange(x []float64) string {
	s := slices.Clone(x)
	slices.Sort(s)
	return fmt.Sprintf("%.2f (%.2f-%.2f)", s[len(s)/2], s[0], s[len(s)-1])
}

// TestJitterRulesHerdFactor: what the alert's herd factor (the 99th
// percentile second over the mean second of each replica, over 5 minutes)
// reads once a lockstep herd has calmed, jitterFor beside jitterFor34: every
// 5-minute window that starts after the calm (every 15 s, a scrape interval,
// up to 600 s), 8 starts, 200 and 2,000 clients, on one replica and on three
// that each query reaches at random (each replica's own seconds). The
// dashboard's "calm" is what these read. jitterFor must read no higher than
// jitterFor34 (the median window), and lower on one replica, exactly; on
// three, each replica's share of a second is a random draw, which sets the
// 99th percentile more than the rule does, and the √2 buckets hide the rest.
func TestJitterRulesHerdFactor(t *testing.T) {
	for _, clients := range []int{200, 2000} {
		for _, replicas := range []int{1, 3} {
			h := defaultHerd(clients)
			h.skew = make([]time.Duration, replicas)
			mine, meanSecond := herdFactorsAfterCalm(h)
			h.key, h.rule = clientKey34, jitterFor34
			before, _ := herdFactorsAfterCalm(h)
			t.Logf("%4d clients, %d replica(s), mean second %5.1f: exact p99/mean %s, from √2 buckets %s; jitterFor34: exact %s, from buckets %s",
				clients, replicas, meanSecond, medianRange(mine.exact), medianRange(mine.bucketed), medianRange(before.exact), medianRange(before.bucketed))
			if median(mine.exact) > median(before.exact) || median(mine.bucketed) > median(before.bucketed)+0.005 ||
				replicas == 1 && median(mine.exact) >= median(before.exact) {
				t.Errorf("%d clients, %d replica(s): jitterFor's herd factor after the calm reads higher than jitterFor34's", clients, replicas)
			}
		}
	}
}

// The storm lab's proxy addresses (lab/stormlab, proxyAddr): 250 a /24 from
// .1 as make storm gives them (its 200 proxies are one node's pods), and the
// pods of 30-pod nodes from .2 (-pods-per-node 30, podLayouts[0]'s layout
// under the lab's prefix).
var stormLabLayouts = []podLayout{
	{"storm lab, 250 a /24", 250, func(n, p int) net.IP { return net.IPv4(127, 14, byte(n), byte(p+1)) }},
	{"storm lab, 30 a node", podsPerNode, func(n, p int) net.IP { return net.IPv4(127, 10, byte(n), byte(p+2)) }},
}

// TestStormLabAddresses replays the storm lab's shapes (make storm, make
// storm-replicas, make storm-long): lockstep herds of 200 clients on one
// replica and 1,000 over three, and the other two pairs, at the lab's
// addresses, and reads what the lab's tables and Prometheus read: the calm,
// the busiest second over the mean from 150 to 300 s and from 600 to 900 s,
// and the herd factor of each replica in the 5-minute windows after the calm.
// With 250 pods in a /24, 200 clients are one node's pods, whose Fibonacci
// fractions spread the two names' slots to 13 in the busiest second (1.10×);
// as 30-pod nodes they are the simulation's 14 (1.19×). The steady state must
// be the slots' busiest second, whatever the replicas.
func TestStormLabAddresses(t *testing.T) {
	cycle := int64(defaultCycle)
	for _, l := range stormLabLayouts {
		for _, shape := range []struct{ clients, replicas int }{{200, 1}, {200, 3}, {1000, 1}, {1000, 3}} {
			h := defaultHerd(shape.clients)
			h.layout, h.skew = l.client, make([]time.Duration, shape.replicas)
			s := summarizeHerds(h, herdStarts)
			factors, meanSecond := herdFactorsAfterCalm(h)
			peak, mean := slotsPeak(shape.clients, l.client, cycle)
			t.Logf("%s, %4d clients, %d replica(s): %s", l.name, shape.clients, shape.replicas, s)
			t.Logf("%s, %4d clients, %d replica(s): the slots' busiest second %d, %.2f× the mean %.2f; herd factor after the calm, mean second per replica %.1f: exact %s, from √2 buckets %s",
				l.name, shape.clients, shape.replicas, peak, float64(peak)/mean, mean, meanSecond, medianRange(factors.exact), medianRange(factors.bucketed))
			if s.calm > 95 || math.Abs(s.steady-float64(peak)/mean) > 0.01 {
				t.Errorf("%s, %d clients, %d replica(s): %s; its slots' busiest second %.2f×", l.name, shape.clients, shape.replicas, s, float64(peak)/mean)
			}
		}
	}
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	return s[len(s)/2]
}

// Address layouts that are not a block per node: minttl's node and pod
// numbers must not spread them worse than the key before, nor than a plain
// hash of the address would.
var addressLayouts = []podLayout{
	// AWS VPC CNI: pods take secondary addresses of the node's subnet, which
	// nodes share, so a /24 holds pods of many nodes in no order: distinct
	// addresses at random in 10.0.0.0/16.
	{"random addresses in a /16", podsPerNode, func(n, p int) net.IP {
		x := uint16(n*podsPerNode + p)
		x *= 0x9E37
		x ^= x >> 7
		x *= 0x5BD1
		x ^= x >> 9
		return net.IPv4(10, 0, byte(x>>8), byte(x))
	}},
	// Calico: a /26 block per node, four nodes to a /24, the node's pods in
	// order within its block.
	{"Calico /26 blocks", podsPerNode, func(n, p int) net.IP { return net.IPv4(10, 244, byte(n/4), byte(n%4*64+p+1)) }},
	// More than 256 pods on an IPv6 node: pod 256+b of node N has the node
	// and pod numbers of pod b of node N+1.
	{"IPv6, 300 pods a node", 300, func(n, p int) net.IP { return ipv6(0xfd00, 0x10, 0x244, n, 0, 0, 0, p+2) }},
}

// hashKey is a plain hash of the address and the name, all in the slot's
// fraction: slots spread as randomly as hashes do, whatever the layout.
func hashKey(addr net.Addr, qname string) uint64 {
	ip := clientIP(addr).To16()
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi, lo = hi<<8|uint64(ip[i]), lo<<8|uint64(ip[8+i])
	}
	return mix(mix(hi)^lo^nameKey(qname)) >> 32
}

// TestAddressLayouts replays lockstep herds of 200 and 2,000 clients in
// layouts that are not a block of addresses per node (addressLayouts), with
// jitterFor, with the rule and key before (jitterFor34) and with jitterFor on
// a plain hash of the address (hashKey): the steady state must be no worse
// than either's, and the calm within 95 s or no later than the plain hash's
// latest (random addresses put 20 of 200 clients' slots in one second, 1.70×
// the mean, whatever the key: such a herd calms later).
func TestAddressLayouts(t *testing.T) {
	cycle := int64(defaultCycle)
	for _, l := range addressLayouts {
		for _, clients := range []int{200, 2000} {
			keys := distinctKeys(clients, l.client)
			h := defaultHerd(clients)
			h.layout = l.client
			s := summarizeHerds(h, herdStarts)
			h.key = hashKey
			hashed := summarizeHerds(h, herdStarts)
			h.key, h.rule = clientKey34, jitterFor34
			before := summarizeHerds(h, herdStarts)
			peak, mean := slotsPeak(clients, l.client, cycle)
			t.Logf("%-26s %4d clients: %s", l.name, clients, s)
			t.Logf("%-26s %4d clients: the slots' busiest second %d, %.2f× the mean %.2f; %d distinct keys", "", clients, peak, float64(peak)/mean, mean, keys)
			t.Logf("%-26s %4d clients: a plain hash: %s", "", clients, hashed)
			t.Logf("%-26s %4d clients: jitterFor34: %s", "", clients, before)
			if s.calm > max(95, hashed.latest) || s.steady > before.steady+0.005 || s.steady > hashed.steady+0.005 {
				t.Errorf("%s, %d clients: %s; a plain hash %s; jitterFor34 %s", l.name, clients, s, hashed, before)
			}
		}
	}
}

// distinctKeys is how many keys clientKey gives clients at layout's
// addresses for one name.
func distinctKeys(clients int, layout func(int) net.IP) int {
	keys := map[uint64]bool{}
	for c := 0; c < clients; c++ {
		keys[clientKey(&net.UDPAddr{IP: layout(c)}, herdNames[0])] = true
	}
	return len(keys)
}

// interleavedKey makes the name part of the pods' low-discrepancy index: a
// name takes one of three places between consecutive pods (a hash of it
// modulo 3) on a Fibonacci sequence a third as fast, so that two names a
// client asks together interleave over a node's pods instead of lying a
// random distance apart (clientKey); a third of pairs of names share their
// place, and so their pods' slots.
func interleavedKey(addr net.Addr, qname string) uint64 {
	node, pod := nodeAndPod(clientIP(addr))
	return node<<32 | (3*pod+nameKey(qname)>>32%3)*(golden/3)>>32
}

// TestJitterRulesNames: would interleaving the names part the Linkerd pair's
// busiest seconds at 200 clients (14 where 13 meets the 1.15×)? It
// does, and over 25 herds (10 to 110 pods a node, 100 to 2,000 clients) the
// Linkerd pair spreads better on average and 40 other pairs each no worse,
// though not in every herd: the busiest second is mostly set by how each
// name's pods fall in a window of node seconds, which the pods a node runs
// and the nodes decide. It is not shipped because on replicas 250 and 500 ms
// apart a herd of 200 then calms a cycle later (117 s, not 91 s). The test
// fails when that cost goes away (interleavedKey should then ship) or the
// gain does.
func TestJitterRulesNames(t *testing.T) {
	cycle := int64(defaultCycle)
	for _, clients := range []int{200, 2000} {
		h := defaultHerd(clients)
		s := summarizeHerds(h, herdStarts)
		h.key = interleavedKey
		i := summarizeHerds(h, herdStarts)
		h.skew = []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond}
		iSkewed := summarizeHerds(h, herdStarts)
		h.key = nil
		sSkewed := summarizeHerds(h, herdStarts)
		t.Logf("names interleaved, %4d clients: %s", clients, i)
		t.Logf("names interleaved, %4d clients, replicas 0/250/500 ms: %s", clients, iSkewed)
		if clients == 200 && (i.steady >= s.steady || iSkewed.calm <= sSkewed.calm) {
			t.Errorf("200 clients: names interleaved %s (clocks apart: %s); clientKey %s (%s)", i, iSkewed, s, sSkewed)
		}
	}
	peaks := func(key func(net.Addr, string) uint64, clients int, layout func(int) net.IP, names ...string) int {
		seconds := make([]int, cycle)
		for c := 0; c < clients; c++ {
			for _, name := range names {
				seconds[slotSecond(key(&net.UDPAddr{IP: layout(c)}, name), cycle)]++
			}
		}
		return slices.Max(seconds)
	}
	var mine, interleaved, linkerdMine, linkerdInterleaved float64
	for _, pods := range []int{10, 17, 30, 50, 110} {
		layout := func(c int) net.IP { return podLayouts[0].addr(c/pods, c%pods+podsPerNode-pods) }
		var line strings.Builder
		for _, clients := range []int{100, 200, 500, 1000, 2000} {
			mean := float64(2*clients) / float64(cycle)
			var a, b float64
			for i := 0; i < 40; i++ {
				names := []string{fmt.Sprintf("svc-%d.ns.svc.cluster.local.", i), fmt.Sprintf("other-%d.ns2.svc.cluster.local.", 7*i)}
				if i == 0 {
					linkerdMine += float64(peaks(clientKey, clients, layout, herdNames...)) / mean / 25
					linkerdInterleaved += float64(peaks(interleavedKey, clients, layout, herdNames...)) / mean / 25
				}
				a += float64(peaks(clientKey, clients, layout, names...)) / mean / 40
				b += float64(peaks(interleavedKey, clients, layout, names...)) / mean / 40
			}
			fmt.Fprintf(&line, " %d clients %.3f (%.3f);", clients, a, b)
			mine, interleaved = mine+a/25, interleaved+b/25
		}
		t.Logf("%3d pods a node, the slots' busiest second over the mean, clientKey (names interleaved):%s", pods, strings.TrimSuffix(line.String(), ";"))
	}
	t.Logf("over the 25 herds: clientKey %.3f×, names interleaved %.3f×; the Linkerd names: clientKey %.3f×, interleaved %.3f×", mine, interleaved, linkerdMine, linkerdInterleaved)
	if interleaved > mine+0.005 || linkerdInterleaved >= linkerdMine {
		t.Errorf("names interleaved spread 25 herds' slots worse on average: %.3f× (the Linkerd names %.3f×) against clientKey's %.3f× (%.3f×)", interleaved, linkerdInterleaved, mine, linkerdMine)
	}
}

// pulled is lenient that pulls a client one second past its slot's second
// in, in one refresh cycle of every four (a hash of the key says which): on
// synced replicas the clients a lockstep start leaves there reach their slot
// within four cycles; on skewed ones a client whose replicas disagree which
// second it is stays put in three cycles of four.
func pulled(key uint64, now int64, base, jitter uint32) uint32 {
	earlier := int64(jitter / 2)
	cycle := int64(base) + earlier
	slot := slotSecond(key, cycle)
	if (now-slot-1)%cycle == 0 && ((now-slot+cycle/2)/cycle+int64(mix(key)>>40))%4 != 0 {
		return uint32(earlier)
	}
	j := int64(jitterFor(key, now, base, jitter))
	if (now+j-earlier-slot-1)%cycle == 0 { // never lands a client there itself, as lenient
		if j > 0 {
			j--
		} else {
			j++
		}
	}
	return uint32(j)
}

// TestReplicaClockSkewPulls: the middle way between jitterFor and lenient on
// replicas 250 and 500 ms apart. It gains at 200 clients, not to the rule
// before's 1.45×, and costs the synced start a later calm for some starts:
// the clients a start leaves a second past their slot stay on top of the
// next second's until their pull.
func TestReplicaClockSkewPulls(t *testing.T) {
	for _, clients := range []int{200, 2000} {
		var synced, skewed [2]herdSummary
		for i, rule := range []func(uint64, int64, uint32, uint32) uint32{jitterFor, pulled} {
			h := defaultHerd(clients)
			h.rule, h.skew = rule, []time.Duration{0, 0, 0}
			synced[i] = summarizeHerds(h, herdStarts)
			h.skew = []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond}
			skewed[i] = summarizeHerds(h, herdStarts)
		}
		t.Logf("%4d clients, pulled every 4th cycle, synced:       %s", clients, synced[1])
		t.Logf("%4d clients, pulled every 4th cycle, 0/250/500 ms: %s", clients, skewed[1])
		if synced[1].steady != synced[0].steady || synced[1].latest <= synced[0].latest || clients == 200 && skewed[1].steady >= skewed[0].steady {
			t.Errorf("%d clients: pulled %s and %s; jitterFor %s and %s", clients, synced[1], skewed[1], synced[0], skewed[0])
		}
	}
}
