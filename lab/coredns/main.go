// Command coredns is upstream CoreDNS with every in-tree plugin plus minttl,
// built the library way: minttl is inserted into the directive list directly
// above cache, as plugin.cfg.example shows.
package main

import (
	"log"
	"slices"

	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/core/plugin" // every in-tree plugin
	"github.com/coredns/coredns/coremain"

	_ "github.com/minttl/minttl"
)

// placeAbove is the directive minttl is listed above. make coredns sets it
// from plugin.cfg.example (-ldflags -X); listed above cache, minttl's writer
// sees cache hits on their way out.
var placeAbove = "cache"

// withMinttl returns a copy of directives with "minttl" inserted before placeAbove.
func withMinttl(directives []string) ([]string, bool) {
	i := slices.Index(directives, placeAbove)
	if i < 0 {
		return nil, false
	}
	return slices.Insert(slices.Clone(directives), i, "minttl"), true
}

func main() {
	directives, ok := withMinttl(dnsserver.Directives)
	if !ok {
		log.Fatalf("directive %q not found: cannot place minttl", placeAbove)
	}
	if err := dnsserver.SetDirectives(directives); err != nil {
		log.Fatal(err)
	}
	coremain.Run()
}
