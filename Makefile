# Two commands do everything: `make run` serves testdata/ on 127.0.0.1:1053,
# `make test` runs every test. See README.md.

GO ?= go
# The directive minttl is listed above in plugin.cfg.example.
ABOVE := $(shell awk -F: '/^minttl:/ {getline; print $$1; exit}' plugin.cfg.example)
SOURCES := $(wildcard *.go cmd/coredns/*.go) go.mod go.sum plugin.cfg.example
FUZZTIME ?= 60s

.PHONY: run test storm bench fuzz soak clean

coredns: $(SOURCES)
	@test -n "$(ABOVE)" || { echo "plugin.cfg.example has no line after minttl's"; exit 1; }
	$(GO) build -ldflags "-X main.placeAbove=$(ABOVE)" -o coredns ./cmd/coredns

run: coredns
	./coredns -conf testdata/Corefile

test: coredns
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

# The storm lab: 8 scenarios side by side for 5 minutes. More:
#   make storm STORM_FLAGS="-stagger 30s -out results/storm-staggered"
storm: coredns
	$(GO) run ./cmd/stormlab $(STORM_FLAGS)

# Go benchmarks (minttl beside rewrite), then the server benchmark with dnsperf.
bench: coredns
	mkdir -p results
	$(GO) test -run '^$$' -bench . -benchmem -count 6 . | tee results/gobench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -filter '.name:Handler' -col /plugin results/gobench.txt | tee results/gobench-minttl-vs-rewrite.txt
	command -v dnsperf >/dev/null || { apt-get update && apt-get install -y dnsperf; }
	$(GO) run ./cmd/dnsbench $(BENCH_FLAGS)

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzWriter -fuzztime $(FUZZTIME) .

soak: coredns
	command -v dnsperf >/dev/null || { apt-get update && apt-get install -y dnsperf; }
	$(GO) run ./cmd/soak $(SOAK_FLAGS)

clean:
	rm -f coredns
