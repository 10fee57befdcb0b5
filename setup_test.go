package minttl

import (
	"slices"
	"strings"
	"testing"

	"github.com/coredns/caddy"

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
	}{
		{`minttl`, []string{"cluster.local."}, 30, 6, nil, 0},
		{`minttl {
		}`, []string{"cluster.local."}, 30, 6, nil, 0},
		{`minttl linkerd.svc.cluster.local example.org.`, []string{"linkerd.svc.cluster.local.", "example.org."}, 30, 6, nil, 0},
		{`minttl {
			floor 2m
		}`, []string{"cluster.local."}, 120, 24, nil, 0},
		{`minttl {
			floor 45
			jitter 10%
		}`, []string{"cluster.local."}, 45, 4, nil, 0},
		{`minttl {
			jitter 50%
		}`, []string{"cluster.local."}, 30, 15, nil, 0},
		{`minttl {
			jitter 7s
		}`, []string{"cluster.local."}, 30, 7, nil, 0},
		{`minttl {
			jitter 0
		}`, []string{"cluster.local."}, 30, 0, nil, 0},
		{`minttl {
			jitter 100%
			floor 1s
		}`, []string{"cluster.local."}, 1, 1, nil, 0},
		{`minttl {
			floor 24h
		}`, []string{"cluster.local."}, 86400, 17280, nil, 0},
		{`minttl {
			types srv A
		}`, []string{"cluster.local."}, 30, 6, []uint16{dns.TypeSRV, dns.TypeA}, 0},
		{`minttl {
			negative
		}`, []string{"cluster.local."}, 30, 6, nil, 30},
		{`minttl {
			negative 10s
		}`, []string{"cluster.local."}, 30, 6, nil, 10},
	} {
		c := caddy.NewTestController("dns", tc.input)
		c.ServerBlockKeys = []string{"cluster.local.:53"}
		m, err := parse(c)
		if err != nil {
			t.Errorf("%q: unexpected error %v", tc.input, err)
			continue
		}
		if !slices.Equal(m.Zones, tc.zones) || m.Floor != tc.floor || m.Jitter != tc.jitter ||
			!slices.Equal(m.Types, tc.types) || m.Negative != tc.negative {
			t.Errorf("%q: got zones %v floor %d jitter %d types %v negative %d", tc.input, m.Zones, m.Floor, m.Jitter, m.Types, m.Negative)
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
		{"minttl\nminttl", "Testfile:2 - Error during parsing: minttl can only be used once per server block"},
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

func TestSetupNamesThePlugin(t *testing.T) {
	c := caddy.NewTestController("dns", "minttl {\n floor 0\n}")
	err := setup(c)
	if err == nil || !strings.HasPrefix(err.Error(), "plugin/minttl: ") {
		t.Errorf("setup error %v, want it prefixed with plugin/minttl", err)
	}
}
