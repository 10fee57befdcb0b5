package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// CoreDNS is the CoreDNS binary with minttl that the tests run, set by Main.
var CoreDNS string

// Main runs the tests of a package that starts CoreDNS. make sets
// MINTTL_COREDNS to the binary it has just built from this checkout (or, in
// make compat, from a CoreDNS release); without it, as in a plain go test, the
// binary is built here and now, so a stale ./coredns can never pass the tests.
func Main(m *testing.M) int {
	if path := os.Getenv("MINTTL_COREDNS"); path != "" {
		if _, err := os.Stat(path); err != nil {
			fmt.Fprintf(os.Stderr, "MINTTL_COREDNS: %v\n", err)
			return 1
		}
		CoreDNS = path
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "minttl-coredns")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	CoreDNS = filepath.Join(dir, "coredns")
	build := exec.Command("go", "build", "-o", CoreDNS, "github.com/minttl/minttl/lab/coredns")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building CoreDNS with minttl: %v\n", err)
		return 1
	}
	return m.Run()
}
