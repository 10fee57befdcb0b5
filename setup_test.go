package minttl

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"

	"github.com/miekg/dns"
)

func TestSetup(t *testing.T) {
	for _, tc := range []struct {
		input    string
		zones    []string
		floor    uint32
		jitter   uint32
		types    []uint16
		negative uint32
		negJit   uint32 // the negative floor's jitter, when not 0
	}{
		{`minttl`, []string{"cluster.local."}, 30, 9, nil, 0, 0},
		{`minttl {
		}`, []string{"cluster.local."}, 30, 9, nil, 0, 0},
		{`minttl linkerd.svc.cluster.local example.org.`, []string{"linkerd.svc.cluster.local.", "example.org."}, 30, 9, nil, 0, 0},
		{`minttl {
			floor 2m
		}`, []string{"cluster.local."}, 120, 36, nil, 0, 0},
		{`minttl {
			floor 45
			jitter 10%
		}`, []string{"cluster.local."}, 45, 4, nil, 0, 0},
		{`minttl {
			jitter 50%
		}`, []string{"cluster.local."}, 30, 15, nil, 0, 0},
		{`minttl {
			jitter 7s
		}`, []string{"cluster.local."}, 30, 7, nil, 0, 0},
		{`minttl {
			jitter 0
		}`, []string{"cluster.local."}, 30, 0, nil, 0, 0},
		{`minttl {
			jitter 100%
			floor 1s
		}`, []string{"cluster.local."}, 1, 2, nil, 0, 0},
		// A jitter that is not 0 but rounds to less than 2 s on its floor
		// is 2 s: less could not spread clients.
		{`minttl {
			floor 4s
		}`, []string{"cluster.local."}, 4, 2, nil, 0, 0},
		{`minttl {
			floor 9s
			jitter 10%
		}`, []string{"cluster.local."}, 9, 2, nil, 0, 0},
		{`minttl {
			floor 6s
		}`, []string{"cluster.local."}, 6, 2, nil, 0, 0},
		{`minttl {
			floor 10s
		}`, []string{"cluster.local."}, 10, 3, nil, 0, 0},
		{`minttl {
			jitter 2s
		}`, []string{"cluster.local."}, 30, 2, nil, 0, 0},
		{`minttl {
			jitter 0.5%
		}`, []string{"cluster.local."}, 30, 2, nil, 0, 0},
		{`minttl {
			jitter 6s
			negative 4s
		}`, []string{"cluster.local."}, 30, 6, nil, 4, 2},
		{`minttl {
			jitter 0
			negative 4s
		}`, []string{"cluster.local."}, 30, 0, nil, 4, 0},
		{`minttl {
			floor 24h
		}`, []string{"cluster.local."}, 86400, 25920, nil, 0, 0},
		{`minttl {
			types srv A
		}`, []string{"cluster.local."}, 30, 9, []uint16{dns.TypeSRV, dns.TypeA}, 0, 0},
		{`minttl {
			negative
		}`, []string{"cluster.local."}, 30, 9, nil, 30, 9},
		{`minttl {
			negative 10s
		}`, []string{"cluster.local."}, 30, 9, nil, 10, 3},
		// A share rides on each floor; seconds are for the floor, and the
		// negative floor gets the same share of itself.
		{`minttl {
			floor 1h
			negative 10s
		}`, []string{"cluster.local."}, 3600, 1080, nil, 10, 3},
		{`minttl {
			floor 1h
			jitter 10m
			negative 10s
		}`, []string{"cluster.local."}, 3600, 600, nil, 10, 2},
		{`minttl {
			jitter 6s
			negative 2m
		}`, []string{"cluster.local."}, 30, 6, nil, 120, 24},
		{`minttl {
			jitter 0s
		}`, []string{"cluster.local."}, 30, 0, nil, 0, 0},
		{`minttl {
			jitter 0%
		}`, []string{"cluster.local."}, 30, 0, nil, 0, 0},
		{`minttl {
			types TYPE65280 type33 A
		}`, []string{"cluster.local."}, 30, 9, []uint16{65280, dns.TypeSRV, dns.TypeA}, 0, 0},
		{`minttl {
			types TYPE127 TYPE256 TYPE65535
		}`, []string{"cluster.local."}, 30, 9, []uint16{127, 256, 65535}, 0, 0},
		{`minttl 10.0.0.0/24 0/26.2.0.192.in-addr.arpa dns://example.org:53 EXAMPLE.net`,
			[]string{"0.0.10.in-addr.arpa.", "0/26.2.0.192.in-addr.arpa.", "example.org.", "example.net."}, 30, 9, nil, 0, 0},
		{`minttl 10.0.0.0/15`, []string{"0.10.in-addr.arpa.", "1.10.in-addr.arpa."}, 30, 9, nil, 0, 0},
		{`minttl {
			floor 1
			jitter 2147483646
		}`, []string{"cluster.local."}, 1, 2147483646, nil, 0, 0},
	} {
		c := caddy.NewTestController("dns", tc.input)
		c.ServerBlockKeys = []string{"cluster.local.:53"}
		m, err := parse(c)
		if err != nil {
			t.Errorf("%q: unexpected error %v", tc.input, err)
			continue
		}
		if !slices.Equal(m.Zones, tc.zones) || m.Floor != tc.floor || m.Jitter != tc.jitter ||
			!slices.Equal(m.Types, tc.types) || m.Negative != tc.negative || m.NegativeJitter != tc.negJit {
			t.Errorf("%q: got zones %v floor %d jitter %d types %v negative %d (jitter %d)", tc.input, m.Zones, m.Floor, m.Jitter, m.Types, m.Negative, m.NegativeJitter)
		}
	}
}

func TestSetupErrors(t *testing.T) {
	for _, tc := range []struct {
		input string
		want  string
	}{
		{"minttl {\n unknown 1\n}", `Testfile:2 - Error during parsing: unknown property "unknown"`},
		{"minttl {\n floor\n}", "Testfile:2 - Error during parsing: Wrong argument count"},
		{"minttl {\n floor 30 40\n}", "Testfile:2 - Error during parsing: Wrong argument count"},
		{"minttl {\n floor thirty\n}", `invalid duration "thirty"`},
		{"minttl {\n floor 1.5s\n}", `duration "1.5s" is not a whole number of seconds`},
		{"minttl {\n floor 500ms\n}", `duration "500ms" is not a whole number of seconds`},
		{"minttl {\n floor 0\n}", `floor "0" out of range: must be between 1s and 24h`},
		{"minttl {\n floor 25h\n}", `floor "25h" out of range`},
		{"minttl {\n floor -5\n}", `negative duration "-5"`},
		{"minttl {\n floor -5s\n}", `negative duration "-5s"`},
		{"minttl {\n jitter\n}", "Wrong argument count"},
		{"minttl {\n jitter -10%\n floor 20\n}", `Testfile:2 - Error during parsing: jitter "-10%" out of range`},
		{"minttl {\n jitter 101%\n}", `Testfile:2 - Error during parsing: jitter "101%" out of range`},
		{"minttl {\n jitter lots%\n}", `Testfile:2 - Error during parsing: invalid jitter "lots%"`},
		{"minttl {\n jitter -3\n}", `negative duration "-3"`},
		{"minttl {\n floor 5s\n jitter 1s\n}", `Testfile:3 - Error during parsing: jitter "1s" cannot spread clients (they could only move later): give 0 or at least 2s`},
		{"minttl {\n jitter 1\n}", `jitter "1" cannot spread clients`},
		{"minttl {\n jitter 3000000000\n}", `above the largest TTL`},
		{"minttl {\n floor 24h\n jitter 2147400000\n types A\n}", `Testfile:3 - Error during parsing: floor + jitter is 2147486400 s, above the largest TTL`},
		{"minttl {\n floor 30s 10%\n}", "Testfile:2 - Error during parsing: Wrong argument count"},
		{"minttl {\n jitter 20 %\n}", "Testfile:2 - Error during parsing: Wrong argument count"},
		{"minttl {\n floor 30 s\n}", "Testfile:2 - Error during parsing: Wrong argument count"},
		{"minttl {\n types srv, a\n}", `unknown type "srv,"`},
		{"minttl {\n negative yes\n}", `invalid duration "yes"`},
		{"minttl {\n Floor 30\n}", `unknown property "Floor"`},
		{"minttl {\n ttl 30\n}", `unknown property "ttl"`},
		{"minttl {\n types\n}", "Wrong argument count"},
		{"minttl {\n types SRV NOPE\n}", `unknown type "NOPE"`},
		{"minttl {\n types OPT\n}", `type "OPT" is never raised on its own`},
		{"minttl {\n negative 1s 2s\n}", "Wrong argument count"},
		{"minttl {\n negative 0\n}", `negative "0" out of range`},
		{"minttl {\n floor 10\n floor 20\n}", `Testfile:3 - Error during parsing: property "floor" given twice`},
		{"minttl {\n observe_only yes\n}", "Testfile:2 - Error during parsing: Wrong argument count"},
		{"minttl {\n observe_only\n observe_only\n}", `Testfile:3 - Error during parsing: property "observe_only" given twice`},
		{"minttl\nminttl", "Testfile:2 - Error during parsing: minttl can only be used once per server block"},
		{"minttl {\n floor 86401\n}", `floor "86401" out of range`},
		{"minttl {\n floor 24h0m1s\n}", `floor "24h0m1s" out of range`},
		{"minttl {\n jitter NaN%\n}", `Testfile:2 - Error during parsing: invalid jitter "NaN%"`},
		{"minttl {\n jitter nan%\n}", `invalid jitter "nan%"`},
		{"minttl {\n jitter inf%\n}", `jitter "inf%" out of range`},
		{"minttl {\n floor 1\n jitter 2147483000\n negative 24h\n}", `Testfile:3 - Error during parsing: negative + jitter is 185542531286400 s, above the largest TTL`},
		{"minttl {\n floor 1\n jitter 2147483647\n}", `Testfile:3 - Error during parsing: floor + jitter is 2147483648 s`},
		{"\nminttl ..bad", `Testfile:2 - Error during parsing: invalid zone "..bad"`},
		{"minttl example.org ..bad", `invalid zone "..bad"`},
		{"minttl 10.0.0.0/33", `invalid zone "10.0.0.0/33"`},
		{"minttl 10.0.0.0/8x", `invalid zone "10.0.0.0/8x"`},
		{"minttl 2001:db8::/129", `invalid zone "2001:db8::/129"`},
		{"minttl example.org:", `invalid zone "example.org:"`},
		{"\nminttl 10.0.0.1", `Testfile:2 - Error during parsing: zone "10.0.0.1" is an address, not a zone: for its reverse zone give 10.0.0.1/32`},
		{"minttl example.org 10.0.0.1.", `zone "10.0.0.1." is an address, not a zone: for its reverse zone give 10.0.0.1/32`},
		{"minttl fd00::53", `zone "fd00::53" is an address, not a zone: for its reverse zone give fd00::53/128`},
		{"minttl ::ffff:10.0.0.1", `give 10.0.0.1/32`},
		{"minttl {\n types ANY\n}", `type "ANY" is a query or meta type, never a record's`},
		{"minttl {\n types SRV AXFR\n}", `type "AXFR" is a query or meta type`},
		{"minttl {\n types ixfr\n}", `type "ixfr" is a query or meta type`},
		{"minttl {\n types TYPE128\n}", `type "TYPE128" is a query or meta type`},
		{"minttl {\n types TYPE255\n}", `type "TYPE255" is a query or meta type`},
		{"minttl {\n types TYPE0\n}", `type "TYPE0" is a query or meta type`},
		{"minttl {\n types TYPE41\n}", `type "TYPE41" is never raised on its own`},
		{"minttl {\n types TSIG\n}", `type "TSIG" is never raised on its own`},
		{"minttl {\n types SIG\n}", `type "SIG" is never raised on its own`},
		{"minttl {\n types RRSIG\n}", `type "RRSIG" is never raised on its own`},
		{"minttl {\n types TYPE65536\n}", `unknown type "TYPE65536"`},
		{"minttl {\n types TYPE\n}", `unknown type "TYPE"`},
		{"minttl {\n types TYPE-1\n}", `unknown type "TYPE-1"`},
		{"minttl {\n types xTYPE1\n}", `unknown type "xTYPE1"`},
	} {
		c := caddy.NewTestController("dns", tc.input)
		c.ServerBlockKeys = []string{"cluster.local.:53"}
		_, err := parse(c)
		if err == nil {
			t.Errorf("%q: no error, want %q", tc.input, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q, want it to contain %q", tc.input, err, tc.want)
		}
	}
}

// TestSetupObserveOnly: observe_only takes no argument and leaves the rest of
// the configuration as it would be, ready for the switch.
func TestSetupObserveOnly(t *testing.T) {
	for input, want := range map[string]bool{
		"minttl":                                 false,
		"minttl {\n observe_only\n}":             true,
		"minttl {\n floor 31s\n observe_only\n}": true,
	} {
		c := caddy.NewTestController("dns", input)
		c.ServerBlockKeys = []string{"cluster.local.:53"}
		m, err := parse(c)
		if err != nil {
			t.Errorf("%q: %v", input, err)
			continue
		}
		if m.ObserveOnly != want || m.Jitter == 0 {
			t.Errorf("%q: observe_only %v (jitter %d), want %v", input, m.ObserveOnly, m.Jitter, want)
		}
	}
}

func TestSetupNamesThePlugin(t *testing.T) {
	c := caddy.NewTestController("dns", "minttl {\n floor 0\n}")
	err := setup(c)
	if err == nil || !strings.HasPrefix(err.Error(), "plugin/minttl: ") {
		t.Errorf("setup error %v, want it prefixed with plugin/minttl", err)
	}
}

// loopback is bind 127.0.0.1, without the bind plugin's dependencies.
func init() {
	plugin.Register("loopback", func(c *caddy.Controller) error {
		c.Next()
		dnsserver.GetConfig(c).ListenHosts = []string{"127.0.0.1"}
		return nil
	})
}

// TestFailedReloadStartsNothing: caddy's Restart runs the new instance's
// setup and OnStartup callbacks, then, when a server of it cannot start (its
// port is taken), drops the instance without its OnShutdown. Five such
// reloads must leave the goroutines as they were. (Before, each left a ticker
// running for good: +5.)
func TestFailedReloadStartsNothing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	corefile := func(blocks ...int) caddy.Input {
		text := ""
		for i, port := range blocks {
			text += fmt.Sprintf("zone%d.test:%d {\n loopback\n minttl\n}\n", i, port)
		}
		return caddy.CaddyfileInput{Contents: []byte(text), Filepath: "Corefile", ServerTypeName: "dns"}
	}
	// As a build with minttl in plugin.cfg, quietly.
	directives, quiet := dnsserver.Directives, dnsserver.Quiet
	dnsserver.Directives, dnsserver.Quiet = append([]string{"loopback", "minttl"}, directives...), true
	defer func() { dnsserver.Directives, dnsserver.Quiet = directives, quiet }()
	instance, err := caddy.Start(corefile(port))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		instance.Stop()
		instance.ShutdownCallbacks()
	}()
	before := goroutines()
	for i := 0; i < 5; i++ {
		if _, err := instance.Restart(corefile(port, taken.Addr().(*net.TCPAddr).Port)); err == nil {
			t.Fatal("a reload onto a taken port succeeded")
		}
	}
	if g := goroutines(); g != before {
		t.Errorf("%d goroutines after five failed reloads, %d before", g, before)
	}
}
