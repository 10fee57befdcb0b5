// Command stormlab reproduces the Linkerd DNS storm on the real ./coredns and
// measures it side by side for CoreDNS's cache, CoreDNS's own mitigations,
// minttl, and (where installed) unbound and dnsmasq. See README.md, "Storm lab".
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// config is what one lab run needs; flags fill it in.
type config struct {
	coredns   string        // the ./coredns binary
	testdata  string        // the testdata folder (zone file, scenario Corefiles)
	out       string        // results folder
	clients   int           // simulated proxies per scenario
	duration  time.Duration // per scenario
	stagger   time.Duration // proxies start spread over this long; 0 is a lockstep rollout
	fixed     bool          // the fixed proxy: a 5 s client-side floor, no jitter
	scenarios []string
	progress  time.Duration
}

func main() {
	cfg := config{}
	var scenarios string
	flag.StringVar(&cfg.coredns, "coredns", "./coredns", "CoreDNS binary built with minttl (make coredns)")
	flag.StringVar(&cfg.testdata, "testdata", "testdata", "folder with cluster.local.db and storm/")
	flag.StringVar(&cfg.out, "out", "results/storm", "folder for table.md, storm.svg and summary.json")
	flag.IntVar(&cfg.clients, "clients", 200, "simulated proxies per scenario, each from its own 127.x.y.z address")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Minute, "how long each scenario runs")
	flag.DurationVar(&cfg.stagger, "stagger", 0, "spread the proxies' start over this long (0: all start together)")
	flag.BoolVar(&cfg.fixed, "fixed-proxy", false, "behave like linkerd2-proxy after its 2025 fix (5 s client-side floor)")
	flag.StringVar(&scenarios, "scenarios", strings.Join(allScenarios(), ","), "comma-separated scenarios to run")
	flag.DurationVar(&cfg.progress, "progress", 30*time.Second, "interval of the progress lines")
	flag.Parse()
	cfg.scenarios = strings.Split(scenarios, ",")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stormlab:", err)
		os.Exit(1)
	}
	if err := write(cfg, results); err != nil {
		fmt.Fprintln(os.Stderr, "stormlab:", err)
		os.Exit(1)
	}
	fmt.Println(table(cfg, results))
	fmt.Println("wrote", filepath.Join(cfg.out, "table.md"), "and", filepath.Join(cfg.out, "storm.svg"))
}

// run starts every scenario at once (each with its own server port and client
// address range), waits for all of them, and stops every process it started.
func run(ctx context.Context, cfg config) ([]result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type done struct {
		i   int
		res result
		err error
	}
	ch := make(chan done, len(cfg.scenarios))
	for i, name := range cfg.scenarios {
		go func() {
			res, err := runScenario(ctx, cfg, i, name)
			ch <- done{i, res, err}
		}()
	}
	results := make([]result, len(cfg.scenarios))
	var firstErr error
	for range cfg.scenarios {
		d := <-ch
		if d.err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", cfg.scenarios[d.i], d.err)
			cancel()
		}
		results[d.i] = d.res
	}
	if firstErr != nil {
		return nil, firstErr
	}
	var kept []result
	for _, r := range results {
		if r.Scenario != "" { // empty: a resolver that is not installed
			kept = append(kept, r)
		}
	}
	return kept, ctx.Err()
}

func runScenario(ctx context.Context, cfg config, index int, name string) (result, error) {
	srv, err := startScenario(ctx, cfg, name)
	if err != nil || srv == nil {
		return result{}, err
	}
	defer srv.stop()
	fmt.Printf("%-20s started on %s\n", name, srv.addr)
	queries := simulate(ctx, cfg, index, name, srv.addr)
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	return summarize(name, srv.describe, cfg, queries), nil
}
