# Two commands do everything: `make run` serves testdata/ on 127.0.0.1:1053,
# `make test` runs every test. See README.md.

GO ?= go
# The directive minttl is listed above in plugin.cfg.example.
ABOVE := $(shell awk -F: '/^minttl:/ {getline; print $$1; exit}' plugin.cfg.example)
SOURCES := $(shell find . -name '*.go' -not -path './results/*') go.mod go.sum plugin.cfg.example

.PHONY: run test bench storm clean

coredns: $(SOURCES)
	@test -n "$(ABOVE)" || { echo "plugin.cfg.example has no line after minttl's"; exit 1; }
	$(GO) build -ldflags "-X main.placeAbove=$(ABOVE)" -o coredns ./cmd/coredns

run: coredns
	./coredns -conf testdata/Corefile

test: coredns
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem .

clean:
	rm -f coredns
