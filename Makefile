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

.PHONY: run test compat storm storm-replicas storm-nodelocal storm-scale storm-jitter storm-rules bench fuzz soak clean lab-tools

coredns: $(SOURCES)
	@test -n "$(ABOVE)" || { echo "plugin.cfg.example has no line after minttl's"; exit 1; }
	cd lab && CGO_ENABLED=0 $(GO) build -ldflags "-X main.placeAbove=$(ABOVE)" -o ../coredns ./coredns

run: coredns
	./coredns -conf testdata/Corefile

test: coredns
	$(NEED) dig bind9-dnsutils
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	cd lab && $(GO) vet ./...
	cd lab && $(TEST_ENV) $(GO) test -race -count=1 ./... github.com/minttl/minttl
	$(MAKE) compat COMPAT_VERSIONS="$(COMPAT_CI)" COMPAT_OUT=$(CURDIR)/.bin/compat-ci

# Each CoreDNS release of lab/compat/versions built with minttl through
# plugin.cfg (lab/build-coredns) and checked end to end with dig.
compat:
	$(NEED) dig bind9-dnsutils
	lab/compat/run $(COMPAT_VERSIONS)

# The lab's commands, built once and run from here.
lab-tools:
	cd lab && $(GO) build -o ../.bin/ ./stormlab ./dnsbench ./soak

# The storm lab (README.md, "Storm lab"): 8 scenarios side by side for 5
# minutes. More:
#   make storm STORM_FLAGS="-stagger 30s -out results/storm-staggered"
storm: coredns lab-tools
	.bin/stormlab $(STORM_FLAGS)

# kube-dns as 1 and as 3 replicas behind a Service, side by side (6 minutes).
storm-replicas: coredns lab-tools
	.bin/stormlab -replicas 1,3 -scenarios cache,serve_stale,rewrite,minttl,minttl_serve_stale -out results/storm-replicas $(STORM_FLAGS)

# NodeLocal DNSCache: 20 nodes × 10 pods, 3 kube-dns replicas (6 minutes).
storm-nodelocal: coredns lab-tools
	.bin/stormlab -nodes 20 -clients 10 -replicas 3 -out results/storm-nodelocal $(STORM_FLAGS)

# 2,000 proxies, one scenario after another, a TTL-0 storm among them (21 minutes).
storm-scale: coredns lab-tools
	.bin/stormlab -clients 2000 -replicas 3 -sequential -scenarios cache,minttl,serve_stale_slow,minttl_serve_stale_slow -out results/storm-scale $(STORM_FLAGS)

# Calm time and staleness over jitter settings, 1,000 proxies each (6 minutes).
storm-jitter: coredns lab-tools
	.bin/stormlab -clients 1000 -replicas 3 -scenarios minttl_j0,minttl_j10,minttl_j20,minttl_j30,minttl_j50 -out results/storm-jitter $(STORM_FLAGS)

# minttl's jitter rule beside the one of BASELINE (a commit), 200 and 2,000
# proxies (6 minutes).
BASELINE ?= aeab74d
storm-rules: coredns lab-tools
	rm -rf .bin/baseline && mkdir -p .bin/baseline
	git archive $(BASELINE) | tar -x -C .bin/baseline
	cd .bin/baseline/lab && CGO_ENABLED=0 $(GO) build -ldflags "-X main.placeAbove=$(ABOVE)" -o ../../coredns-baseline ./coredns
	.bin/stormlab -baseline .bin/coredns-baseline -clients 200,2000 -replicas 3 -scenarios minttl,minttl_baseline -out results/storm-rules $(STORM_FLAGS)

# Go benchmarks (minttl beside rewrite), then the server benchmark with dnsperf.
bench: coredns lab-tools
	$(NEED) dnsperf dnsperf
	mkdir -p results
	cd lab && $(GO) test -run '^$$' -bench . -benchmem -count 6 github.com/minttl/minttl | tee ../results/gobench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -filter '.name:Handler' -col /plugin results/gobench.txt | tee results/gobench-minttl-vs-rewrite.txt
	.bin/dnsbench $(BENCH_FLAGS)

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzWriter -fuzztime $(FUZZTIME) .

soak: coredns lab-tools
	$(NEED) dnsperf dnsperf
	.bin/soak $(SOAK_FLAGS)

clean:
	rm -rf coredns .bin
