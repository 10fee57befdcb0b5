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
# make image: CoreDNS COREDNS_VERSION (default: the newest of lab/compat/versions)
# with minttl, built the plugin.cfg way into .bin/compat/VERSION, where make compat
# builds too, in an image FROM scratch (deploy/image). COREDNS_VERSION=v1.12.1 is
# what kubeadm runs on Kubernetes 1.34.
COREDNS_VERSION ?= $(lastword $(shell awk '/^v/ {print $$1}' lab/compat/versions))
MINTTL_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE ?= minttl/coredns:$(COREDNS_VERSION)-minttl-$(MINTTL_VERSION)
IMAGE_ARCHIVE ?= .bin/coredns-minttl-$(COREDNS_VERSION).tar
IMAGE_BUILD := .bin/compat/$(COREDNS_VERSION)
IMAGE_COREDNS := $(IMAGE_BUILD)/coredns
CONTAINER := lab/container
# The end-to-end tests run this binary (built from this checkout just before),
# the image test this image and its archive (make image-archive, just before).
TEST_ENV := MINTTL_COREDNS=$(CURDIR)/coredns MINTTL_IMAGE=$(IMAGE) MINTTL_IMAGE_ARCHIVE=$(CURDIR)/$(IMAGE_ARCHIVE)
# ... and lab/kube its control plane (make controlplane).
CONTROLPLANE := .bin/controlplane
TEST_ENV += MINTTL_CONTROLPLANE=$(CURDIR)/$(CONTROLPLANE)
# ... and the lab's Prometheus and deploy/'s promtool, the release operators
# run (make prometheus).
PROMETHEUS := .bin/prometheus
PROMETHEUS_ENV := MINTTL_PROMETHEUS=$(CURDIR)/$(PROMETHEUS)/prometheus MINTTL_PROMTOOL=$(CURDIR)/$(PROMETHEUS)/promtool
TEST_ENV += $(PROMETHEUS_ENV)
# The lab builds and tests without cgo, as the static ./coredns, so a CoreDNS
# compiled once serves all of them.
LAB := cd lab && CGO_ENABLED=0

# The tables make targets write under results/ are embedded into README.md and
# docs/ by lab/docs (make docs); make test checks every link, anchor and block.
DOCS := $(LAB) $(GO) run ./docs -root ..

.PHONY: docs run test compat storm storm-replicas storm-nodelocal storm-scale storm-jitter storm-rules bench fuzz soak mutation clean lab-tools image image-archive image-name deploy-test
.PHONY: controlplane prometheus storm-kube storm-herd storm-stale storm-long herd-sim herd-rules

coredns: $(SOURCES)
	@test -n "$(ABOVE)" || { echo "plugin.cfg.example has no line after minttl's"; exit 1; }
	$(LAB) $(GO) build -ldflags "-X main.placeAbove=$(ABOVE)" -o ../coredns ./coredns

run: coredns
	./coredns -conf testdata/Corefile

# The plugin's unit tests run at both ends: under the race detector at CoreDNS
# v1.11.3 (go.mod), and in lab/ at v1.15.0.
test: coredns
	$(NEED) dig bind9-dnsutils
	$(NEED) unbound unbound
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(LAB) $(GO) vet ./...
	$(MAKE) image-archive
	$(MAKE) controlplane
	$(MAKE) prometheus
	$(LAB) $(TEST_ENV) $(GO) test -count=1 ./... github.com/minttl/minttl
	$(MAKE) compat COMPAT_VERSIONS="$(COMPAT_CI)" COMPAT_OUT=$(CURDIR)/.bin/compat-ci
	$(MAKE) deploy-test

# A real control plane for the lab (docs/real-api-server.md): etcd,
# kube-apiserver and kubectl built from the module proxy into .bin/controlplane,
# kept while their modules (lab/controlplane) have not changed.
controlplane:
	lab/controlplane/build $(CURDIR)/$(CONTROLPLANE)

# Prometheus and promtool 3.16 (github.com/prometheus/prometheus v0.316.0)
# built from the module proxy into .bin/prometheus, kept while their module
# (lab/prometheus) has not changed: the lab's Prometheus and deploy/'s rule
# tests run them.
prometheus:
	lab/prometheus/build $(CURDIR)/$(PROMETHEUS)

# Each CoreDNS release of lab/compat/versions built with minttl through
# plugin.cfg (lab/build-coredns) and checked end to end with dig.
compat:
	$(NEED) dig bind9-dnsutils
	lab/compat/run $(COMPAT_VERSIONS)
	$(DOCS) -embed

image:
	lab/build-coredns $(COREDNS_VERSION) $(IMAGE_BUILD)
	$(NEED) setcap libcap2-bin
	test -s /etc/ssl/certs/ca-certificates.crt || { $(NEED) update-ca-certificates ca-certificates && update-ca-certificates; }
	rm -rf .bin/image && mkdir -p .bin/image/etc/ssl/certs
	cp /etc/ssl/certs/ca-certificates.crt .bin/image/etc/ssl/certs/
	cp deploy/image/passwd deploy/image/group .bin/image/etc/
	cp $(IMAGE_COREDNS) .bin/image/coredns
	setcap cap_net_bind_service=+ep .bin/image/coredns
	$(CONTAINER) build --build-arg COREDNS_VERSION=$(COREDNS_VERSION) --build-arg MINTTL_VERSION=$(MINTTL_VERSION) \
		-f deploy/image/Containerfile -t $(IMAGE) .bin/image

# A docker-archive of the image, for kind load image-archive, ctr images import
# or podman load on the nodes.
image-archive: image
	rm -f $(IMAGE_ARCHIVE)
	$(CONTAINER) save -o $(IMAGE_ARCHIVE) $(IMAGE)
	@echo "wrote $(IMAGE_ARCHIVE) ($(IMAGE))"

image-name:
	@echo $(IMAGE)

# deploy/ checked offline: kustomize overlays rendered and decoded strictly into
# the Kubernetes API types, every Corefile there (and the Helm values') run by the
# image's CoreDNS, the Prometheus rules checked and unit-tested by promtool.
deploy-test: prometheus
	lab/build-coredns $(COREDNS_VERSION) $(IMAGE_BUILD)
	$(NEED) dig bind9-dnsutils
	cd deploy && $(GO) vet ./...
	cd deploy && MINTTL_COREDNS=$(CURDIR)/$(IMAGE_COREDNS) $(PROMETHEUS_ENV) $(GO) test -count=1 ./...

# The lab's commands, built once and run from here.
lab-tools:
	$(LAB) $(GO) build -o ../.bin/ ./stormlab ./dnsbench ./soak

# The storm lab (README.md, "Storm lab"): 8 scenarios side by side for 5
# minutes. More:
#   make storm STORM_FLAGS="-stagger 30s -out results/storm-staggered"
storm: coredns lab-tools
	.bin/stormlab $(STORM_FLAGS)
	$(DOCS) -embed

# kube-dns as 1 and as 3 replicas behind a Service, side by side (6 minutes).
storm-replicas: coredns lab-tools
	.bin/stormlab -replicas 1,3 -scenarios cache,serve_stale,rewrite,minttl,minttl_serve_stale -out results/storm-replicas $(STORM_FLAGS)
	$(DOCS) -embed

# NodeLocal DNSCache: 20 nodes × 10 pods, 3 kube-dns replicas (6 minutes).
storm-nodelocal: coredns lab-tools
	.bin/stormlab -nodes 20 -clients 10 -replicas 3 -out results/storm-nodelocal $(STORM_FLAGS)
	$(DOCS) -embed

# 2,000 proxies, one scenario after another, a TTL-0 storm among them (21 minutes).
storm-scale: coredns lab-tools
	.bin/stormlab -clients 2000 -replicas 3 -sequential -scenarios cache,minttl,serve_stale_slow,minttl_serve_stale_slow -out results/storm-scale $(STORM_FLAGS)
	$(DOCS) -embed

# Calm time and staleness over jitter settings, 1,000 proxies each (6 minutes).
storm-jitter: coredns lab-tools
	.bin/stormlab -clients 1000 -replicas 3 -scenarios minttl_j0,minttl_j10,minttl_j20,minttl_j30,minttl_j50 -out results/storm-jitter $(STORM_FLAGS)
	$(DOCS) -embed

# minttl's jitter rule beside the one of BASELINE (a commit; cb306d4 has the
# rule before issue 25), 200 and 2,000 proxies (6 minutes).
BASELINE ?= cb306d4
storm-rules: coredns lab-tools
	rm -rf .bin/baseline && mkdir -p .bin/baseline
	git archive $(BASELINE) | tar -x -C .bin/baseline
	cd .bin/baseline/lab && CGO_ENABLED=0 $(GO) build -ldflags "-X main.placeAbove=$(ABOVE)" -o ../../coredns-baseline ./coredns
	.bin/stormlab -baseline .bin/coredns-baseline -clients 200,2000 -replicas 3 -scenarios minttl,minttl_baseline -out results/storm-rules $(STORM_FLAGS)
	$(DOCS) -embed

# What an operator's Prometheus sees (docs/monitoring.md): each scenario's
# kube-dns replicas scraped every 15 s by a Prometheus of its own, all under
# one server label as in a cluster, native histograms only, with deploy/'s
# rules; 25 minutes (the alert needs 15). Lockstep herds at 2, 3 and 5
# replicas (kubeadm's shape switched from observe_only to raising at 16
# minutes among them), and even loads over 4 replicas, evenly and 10:1:1:1.
storm-herd: coredns lab-tools prometheus
	$(PROMETHEUS_ENV) .bin/stormlab -prometheus 15s -histograms native -probe 0 -duration 25m -replicas 2,3,5 \
		-scenarios observe,minttl,kubeadm_observe,kubeadm_minttl,kubeadm_switch,kubeadm_even,kubeadm_even_skewed,kubeadm_even_sticky,kubeadm_minttl_skewed \
		-out results/storm-herd $(STORM_FLAGS)
	$(DOCS) -embed

# MinttlStaleAnswers's input (docs/monitoring.md): minttl in front of
# cache 30 { serve_stale } and a healthy zone (TTL 5 and 30, the latter also
# with deploy/kubeadm's floor of 31 s), one that stops answering at 5
# minutes, and a healthy one asked by 2 to 40 proxies; a Prometheus per
# scenario as in storm-herd, classic histograms (Prometheus's default); 15
# minutes.
storm-stale: coredns lab-tools prometheus
	$(PROMETHEUS_ENV) .bin/stormlab -prometheus 15s -histograms classic -probe 0 -duration 15m -replicas 1,3 \
		-scenarios minttl_serve_stale,minttl_serve_stale_ttl30,minttl_serve_stale_ttl30_floor31,minttl_serve_stale_failing,minttl_serve_stale_few \
		-out results/storm-stale $(STORM_FLAGS)
	$(DOCS) -embed

# A lockstep start run into its steady state (docs/storm-lab.md): 15 minutes,
# the last 5 of them (600-900 s) as make herd-sim reads the steady state, 200
# and 1,000 proxies as the pods of 30-pod nodes (the simulation's layout) on
# 1 and 3 replicas, minttl at its defaults; a Prometheus per scenario as in
# storm-herd (the herd factor after the calm at each rate per replica), the
# replicas' agreement probed every 15 s.
storm-long: coredns lab-tools prometheus
	$(PROMETHEUS_ENV) .bin/stormlab -prometheus 15s -histograms native -probe 15s -duration 15m -clients 200,1000 -replicas 1,3 \
		-pods-per-node 30 -scenarios minttl -out results/storm-long $(STORM_FLAGS)
	$(DOCS) -embed

# kube-dns as CoreDNS's kubernetes plugin fed by a real kube-apiserver, with
# kubeadm's and EKS's Corefiles, with and without minttl, 2 replicas (kubeadm's),
# proxies started over 30 s, while a rolling update replaces a
# linkerd-destination pod every 20 s (5 minutes).
storm-kube: coredns lab-tools controlplane
	.bin/stormlab -scenarios kube_kubeadm,kube_kubeadm_minttl,kube_eks,kube_eks_minttl -replicas 2 -stagger 30s -churn 20s -out results/storm-kube $(STORM_FLAGS)
	$(DOCS) -embed

# What deploy/'s herd rules read in every scrape mode (docs/monitoring.md):
# deploy/herd_rules_test.go's cases, evaluated by promtool.
herd-rules: coredns prometheus
	mkdir -p results/rules
	cd deploy && MINTTL_COREDNS=$(CURDIR)/coredns $(PROMETHEUS_ENV) MINTTL_HERD_RULES_TABLE=$(CURDIR)/results/rules/herd-rules.md \
		$(GO) test -count=1 -run TestHerdRules .
	$(DOCS) -embed

# The herd simulation (herd_test.go): jitter settings, rules compared, pod
# address layouts, replicas with skewed clocks, in simulated time (seconds).
herd-sim:
	mkdir -p results
	$(GO) test -count=1 -run 'TestJitterSettings|TestJitterRules|TestPodLayoutsSpread|TestAddressLayouts|TestReplicaClockSkew|TestStormLabAddresses' -v . | \
		sed -e '/^=== RUN/d' -e 's/^ *[a-z_]*_test.go:[0-9]*: //' > results/herd-sim.txt
	$(DOCS) -embed

# Go benchmarks (minttl beside rewrite), then the server benchmark with dnsperf.
bench: coredns lab-tools
	$(NEED) dnsperf dnsperf
	mkdir -p results
	$(LAB) $(GO) test -run '^$$' -bench . -benchmem -count 6 github.com/minttl/minttl | tee ../results/gobench.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da -filter '.name:Handler' -col /plugin results/gobench.txt | tee results/gobench-minttl-vs-rewrite.txt
	.bin/dnsbench $(BENCH_FLAGS)
	$(DOCS) -embed

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzWriter -fuzztime $(FUZZTIME) .

# Mutation testing of the plugin package against its unit tests (gremlins,
# settings in .gremlins.yaml): fails below 92 % test efficacy or 95 % mutator
# coverage; the mutants that live are listed as LIVED.
GREMLINS := github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
mutation:
	GOBIN=$(CURDIR)/.bin $(GO) install $(GREMLINS)
	.bin/gremlins unleash .

soak: coredns lab-tools
	$(NEED) dnsperf dnsperf
	.bin/soak $(SOAK_FLAGS)

docs:
	$(DOCS) -embed

clean:
	rm -rf coredns .bin
