package minttl

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"

	"github.com/miekg/dns"
)

func init() { plugin.Register("minttl", setup) }

const (
	defaultFloor = 30
	// defaultJitter, in percent of the floor, calms a lockstep start within
	// 100 s (docs/jitter.md).
	defaultJitter = 30
	minFloor      = 1
	maxFloor      = 86400         // 24h
	maxTTL        = math.MaxInt32 // RFC 2181 §8
	// minJitter is the smallest jitter that spreads clients: with 1 s, j is 0
	// or 1 and a client can only move later, never back into a gap.
	minJitter = 2
)

func setup(c *caddy.Controller) error {
	m, err := parse(c)
	if err != nil {
		return plugin.Error("minttl", err)
	}
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		m.Next = next
		return m
	})
	return nil
}

func parse(c *caddy.Controller) (*MinTTL, error) {
	m := &MinTTL{Floor: defaultFloor, now: time.Now}
	jit, negative := jitter{share: true, percent: defaultJitter}, false
	var err error
	for i := 0; c.Next(); i++ {
		if i > 0 {
			return nil, c.Err("minttl can only be used once per server block")
		}
		if m.Zones, err = zonesArgs(c); err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for c.NextBlock() {
			property := c.Val()
			if seen[property] {
				return nil, c.Errf("property %q given twice", property)
			}
			seen[property] = true
			switch property {
			case "floor":
				m.Floor, err = floorArg(c, "floor")
			case "jitter":
				jit, err = jitterArg(c)
			case "types":
				m.Types, err = typesArgs(c)
			case "negative":
				negative = true
				m.Negative, err = negativeArg(c)
			case "observe_only":
				m.ObserveOnly = true
				if len(c.RemainingArgs()) > 0 {
					err = c.ArgErr()
				}
			default:
				return nil, c.Errf("unknown property %q", property)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	if negative && m.Negative == 0 {
		m.Negative = m.Floor
	}
	if m.Jitter, err = jit.on(c, "floor", m.Floor, m.Floor); err != nil {
		return nil, err
	}
	if m.NegativeJitter, err = jit.on(c, "negative", m.Negative, m.Floor); err != nil {
		return nil, err
	}
	return m, nil
}

// zonesArgs returns the zones given as arguments, or else the server block's.
// plugin.OriginsFromArgsOrServerBlock drops a zone it cannot read, and takes
// a CIDR it cannot read, or a bare address, for a name: minttl would then act
// on none of the zones the operator meant, silently. Refuse them instead.
func zonesArgs(c *caddy.Controller) ([]string, error) {
	args := c.RemainingArgs()
	for _, arg := range args {
		if ip := net.ParseIP(strings.TrimSuffix(arg, ".")); ip != nil {
			return nil, c.Errf("zone %q is an address, not a zone: for its reverse zone give %s", arg, hostCIDR(ip))
		}
		zones := plugin.Host(arg).NormalizeExact()
		if len(zones) == 0 || badCIDR(zones[0]) {
			return nil, c.Errf("invalid zone %q", arg)
		}
	}
	return plugin.OriginsFromArgsOrServerBlock(args, c.ServerBlockKeys), nil
}

// hostCIDR is the CIDR of ip alone: ip/32, or ip/128 for an IPv6 address.
func hostCIDR(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.String() + "/32"
	}
	return ip.String() + "/128"
}

// badCIDR reports whether zone is an IP address with a prefix that
// net.ParseCIDR refused ("10.0.0.0/33."): a CIDR it accepts has become
// in-addr.arpa or ip6.arpa names, and an RFC 2317 name such as
// "0/26.2.0.192.in-addr.arpa." has no address before its slash.
func badCIDR(zone string) bool {
	ip, _, slash := strings.Cut(zone, "/")
	return slash && net.ParseIP(ip) != nil
}

func oneArg(c *caddy.Controller) (string, error) {
	args := c.RemainingArgs()
	if len(args) != 1 {
		return "", c.ArgErr()
	}
	return args[0], nil
}

func floorArg(c *caddy.Controller, name string) (uint32, error) {
	arg, err := oneArg(c)
	if err != nil {
		return 0, err
	}
	return floorSeconds(c, name, arg)
}

func negativeArg(c *caddy.Controller) (uint32, error) {
	args := c.RemainingArgs()
	switch len(args) {
	case 0:
		return 0, nil // the floor, once it is known
	case 1:
		return floorSeconds(c, "negative", args[0])
	}
	return 0, c.ArgErr()
}

func floorSeconds(c *caddy.Controller, name, arg string) (uint32, error) {
	s, err := seconds(c, arg)
	if err != nil {
		return 0, err
	}
	if s < minFloor || s > maxFloor {
		return 0, c.Errf("%s %q out of range: must be between 1s and 24h", name, arg)
	}
	return uint32(s), nil
}

// seconds parses a Go duration ("30s", "2m") or plain seconds ("30") into
// whole seconds, since TTLs have no finer unit.
func seconds(c *caddy.Controller, arg string) (uint64, error) {
	if s, err := strconv.ParseInt(arg, 10, 64); err == nil {
		if s < 0 {
			return 0, c.Errf("negative duration %q", arg)
		}
		return uint64(s), nil
	}
	d, err := time.ParseDuration(arg)
	if err != nil {
		return 0, c.Errf("invalid duration %q", arg)
	}
	if d < 0 {
		return 0, c.Errf("negative duration %q", arg)
	}
	if d%time.Second != 0 {
		return 0, c.Errf("duration %q is not a whole number of seconds", arg)
	}
	return uint64(d / time.Second), nil
}

// jitter is the jitter property as given: a share of the floor, or seconds.
type jitter struct {
	share   bool
	percent float64
	seconds uint32
	line    int // of the Corefile; 0 for the default
}

func jitterArg(c *caddy.Controller) (jitter, error) {
	arg, err := oneArg(c)
	if err != nil {
		return jitter{}, err
	}
	j := jitter{line: c.Line()}
	if pct, ok := strings.CutSuffix(arg, "%"); ok {
		p, err := strconv.ParseFloat(pct, 64)
		if err != nil || math.IsNaN(p) {
			return j, c.Errf("invalid jitter %q", arg)
		}
		if p < 0 || p > 100 {
			return j, c.Errf("jitter %q out of range: must be between 0%% and 100%%", arg)
		}
		j.share, j.percent = true, p
		return j, nil
	}
	s, err := seconds(c, arg)
	if err != nil {
		return j, err
	}
	if s > maxTTL {
		return j, c.Errf("jitter %q above the largest TTL (%d s)", arg, maxTTL)
	}
	if s > 0 && s < minJitter {
		return j, c.Errf("jitter %q cannot spread clients (they could only move later): give 0 or at least %ds", arg, minJitter)
	}
	j.seconds = uint32(s)
	return j, nil
}

// on returns the jitter in whole seconds on floor (named name), given for
// the positive floor. A share is a share of the floor it rides on; seconds
// are for the positive floor, and another floor (negative) gets the same
// share of itself. A jitter that is not 0 but comes to less than minJitter
// on its floor (the default 30 % of a floor of 4 s) is raised to minJitter:
// rounded down to nothing, it would leave every client the same TTL.
func (j jitter) on(c *caddy.Controller, name string, floor, positive uint32) (uint32, error) {
	if floor == 0 {
		return 0, nil // negative not given
	}
	var s uint64
	if j.share {
		s = uint64(float64(floor) * j.percent / 100)
	} else {
		s = uint64(j.seconds) * uint64(floor) / uint64(positive)
	}
	if s < minJitter && (j.percent > 0 || j.seconds > 0) {
		s = minJitter
	}
	// Floors stop at 24h, so only a jitter given in seconds can overflow: name its line.
	if top := uint64(floor) + s; top > maxTTL {
		return 0, fmt.Errorf("%s:%d - Error during parsing: %s + jitter is %d s, above the largest TTL (%d s)", c.File(), j.line, name, top, maxTTL)
	}
	return uint32(s), nil
}

func typesArgs(c *caddy.Controller) ([]uint16, error) {
	args := c.RemainingArgs()
	if len(args) == 0 {
		return nil, c.ArgErr()
	}
	types := make([]uint16, 0, len(args))
	for _, a := range args {
		t, ok := typeOf(strings.ToUpper(a))
		if !ok {
			return nil, c.Errf("unknown type %q", a)
		}
		switch t {
		case dns.TypeOPT, dns.TypeTSIG, dns.TypeSIG, dns.TypeRRSIG:
			return nil, c.Errf("type %q is never raised on its own", a)
		}
		// RFC 6895 §3.1: types 128 to 255 (ANY, AXFR, IXFR, MAILA, MAILB,
		// TKEY, ...) are asked for, never held in an RRset; 0 is reserved.
		if t == dns.TypeNone || t >= 128 && t <= 255 {
			return nil, c.Errf("type %q is a query or meta type, never a record's", a)
		}
		types = append(types, t)
	}
	return types, nil
}

// typeOf reads a type's mnemonic or its RFC 3597 name, TYPEnnn.
func typeOf(s string) (uint16, bool) {
	if t, ok := dns.StringToType[s]; ok {
		return t, true
	}
	n, ok := strings.CutPrefix(s, "TYPE")
	if !ok {
		return 0, false
	}
	t, err := strconv.ParseUint(n, 10, 16)
	return uint16(t), err == nil
}
