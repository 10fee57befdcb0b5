# Two commands do everything: `make run` serves testdata/ on 127.0.0.1:1053,
# `make test` runs every test. See README.md.
#
# The plugin is the module at the top (go.mod: the oldest CoreDNS it supports).
# Everything that builds a whole CoreDNS (./coredns, the storm lab, the
# benchmarks, the soak, the end-to-end tests) is the module in lab/, on
# CoreDNS v1.15.0, so none of it reaches users' builds.

GO ?= go
NEED := lab/need
# The directive minttl is listed above in plugin.cfg.example.
ABOVE := $(shell awk -F: '/^minttl:/ {getline; print $$1; exit}' plugin.cfg.example)
SOURCES := $(wildcard *.go) go.mod go.sum plugin.cfg.example $(shell find lab -name '*.go') lab/go.mod lab/go.sum
FUZZTIME ?= 60s
# make compat builds each of these CoreDNS releases (default: all of
# lab/compat/versions); make test the oldest and the newest.
COMPAT_VERSIONS ?= $(shell awk '/^v/ {print $$1}' lab/compat/versions)
COMPAT_CI := $(shell awk '/^v/ {print $$1}' lab/compat/versions | sed -n '1p;$$p')
# The end-to-end tests run this binary (built from this checkout just before).
TEST_ENV := MINTTL_COREDNS=$(CURDIR)/coredns
# The lab builds and tests without cgo, as the static ./coredns, so a CoreDNS
# compiled once serves all of them; the race detector (which needs cgo) runs on
# the plugin's own tests in the top module.
LAB := cd lab && CGO_ENABLED=0

.PHONY: run test compat storm bench fuzz soak clean lab-tools

coredns: $(SOURCES)
	@test -n "$(ABOVE)" || { echo "plugin.cfg.example has no line after minttl's"; exit 1; }
	$(LAB) $(GO) build -ldflags "-X main.placeAbove=$(ABOVE)" -o ../coredns ./coredns

run: coredns
	./coredns -conf testdata/Corefile

test: coredns
	$(NEED) dig bind9-dnsutils
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(LAB) $(GO) vet ./...
	$(LAB) $(TEST_ENV) $(GO) test -count=1 ./... github.com/minttl/minttl
	$(MAKE) compat COMPAT_VERSIONS="$(COMPAT_CI)" COMPAT_OUT=$(CURDIR)/.bin/compat-ci

# Each CoreDNS release of lab/compat/versions built with minttl through
# plugin.cfg (lab/build-coredns) and checked end to end with dig.
compat:
	$(NEED) dig bind9-dnsutils
	lab/compat/run $(COMPAT_VERSIONS)

# The lab's commands, built once and run from here.
lab-tools:
	$(LAB) $(GO) build -o ../.bin/ ./stormlab ./dnsbench ./soak

# The storm lab: 8 scenarios side by side for 5 minutes. More:
#   make storm STORM_FLAGS="-stagger 30s -out results/storm-staggered"
storm: coredns lab-tools
	.bin/stormlab $(STORM_FLAGS)

# Go benchmarks (minttl beside rewrite), then the server benchmark with dnsperf.
bench: coredns lab-tools
	$(NEED) dnsperf dnsperf
	mkdir -p results
	$(LAB) $(GO) test -run '^$$' -bench . -benchmem -count 6 github.com/minttl/minttl | tee ../results/gobench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -filter '.name:Handler' -col /plugin results/gobench.txt | tee results/gobench-minttl-vs-rewrite.txt
	.bin/dnsbench $(BENCH_FLAGS)

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzWriter -fuzztime $(FUZZTIME) .

soak: coredns lab-tools
	$(NEED) dnsperf dnsperf
	.bin/soak $(SOAK_FLAGS)

clean:
	rm -rf coredns .bin
