package lab

import "testing"

// TestPlaceholdersLongestWins: a placeholder that begins another (NODE,
// NODE_FLOOR) must not eat the longer one, whichever the pairs list first.
func TestPlaceholdersLongestWins(t *testing.T) {
	const text = "floor NODE_FLOOR; source NODE; port PORT"
	const want = "floor 31s; source 127.0.0.9; port 53"
	for _, pairs := range [][]string{
		{"NODE", "127.0.0.9", "NODE_FLOOR", "31s", "PORT", "53"},
		{"NODE_FLOOR", "31s", "PORT", "53", "NODE", "127.0.0.9"},
	} {
		if got := Placeholders(pairs...).Replace(text); got != want {
			t.Errorf("pairs %q: %q, want %q", pairs, got, want)
		}
	}
}
