// Command dnsbench measures what minttl costs a running CoreDNS: it starts the
// real ./coredns once per configuration (cache alone, minttl + cache, rewrite
// ttl + cache, and the same without cache) and drives them with dnsperf in
// interleaved rounds, so machine noise hits every configuration alike.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minttl/minttl/lab/internal/lab"
)

type config struct {
	coredns, testdata, out string
	rounds                 int
	load                   int
	seconds                int
	configs                []string
	profile                string
	pin                    bool
}

// one dnsperf run against one configuration.
type sample struct {
	cpuPerQuery time.Duration // server CPU per answered query, at the fixed load
	qps         float64       // at saturation
	avg, p99    time.Duration // latency at the fixed load
	lost        int
}

type server struct {
	name, port, pprof string
	proc              *lab.Process
	dir               string
}

func main() {
	cfg := config{}
	var configs string
	flag.StringVar(&cfg.coredns, "coredns", "./coredns", "CoreDNS binary built with minttl (make coredns)")
	flag.StringVar(&cfg.testdata, "testdata", "testdata", "folder with cluster.local.db and bench/")
	flag.StringVar(&cfg.out, "out", "results/bench", "folder for table.md")
	flag.IntVar(&cfg.rounds, "rounds", 5, "rounds; each runs every configuration once, in turn")
	flag.IntVar(&cfg.load, "load", 10000, "fixed offered load, queries per second (below saturation)")
	flag.IntVar(&cfg.seconds, "seconds", 5, "length of each dnsperf run")
	flag.StringVar(&configs, "configs", "cache,minttl_cache,rewrite_cache,file,minttl_file,rewrite_file,kubeadm,minttl_kubeadm,rewrite_kubeadm", "configurations (testdata/bench/NAME.Corefile)")
	flag.StringVar(&cfg.profile, "profile", "", "also write a 10 s CPU profile of this configuration at saturation to the results folder")
	flag.BoolVar(&cfg.pin, "pin", runtime.NumCPU() >= 2, "run CoreDNS on CPU 0 (GOMAXPROCS=1) and dnsperf on CPU 1, so they do not compete")
	flag.Parse()
	cfg.configs = strings.Split(configs, ",")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	if _, err := exec.LookPath("dnsperf"); err != nil {
		return errors.New("dnsperf is missing: apt-get install dnsperf")
	}
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, name := range cfg.configs {
		s, err := start(ctx, cfg, name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		servers = append(servers, s)
	}
	samples := map[string][]sample{}
	for round := 1; round <= cfg.rounds; round++ {
		for _, s := range servers {
			smp, err := measure(ctx, cfg, s)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			samples[s.name] = append(samples[s.name], smp)
			fmt.Printf("round %d/%d %-14s %6.1f µs CPU/query at %d q/s, %8.0f q/s saturated, avg %v p99 %v, lost %d\n",
				round, cfg.rounds, s.name, micros(smp.cpuPerQuery), cfg.load, smp.qps, smp.avg, smp.p99, smp.lost)
		}
	}
	if cfg.profile != "" {
		if err := profile(ctx, cfg, servers); err != nil {
			return err
		}
	}
	text := table(cfg, samples)
	fmt.Println(text)
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cfg.out, "table.md"), []byte("Made by `dnsbench "+strings.Join(os.Args[1:], " ")+"` (make bench).\n\n"+text), 0o644)
}

func start(ctx context.Context, cfg config, name string) (*server, error) {
	dir, err := os.MkdirTemp("", "dnsbench-"+name+"-")
	if err != nil {
		return nil, err
	}
	s := &server{name: name, dir: dir}
	if s.port, err = lab.FreePort(); err != nil {
		return nil, err
	}
	if s.pprof, err = lab.FreePort(); err != nil {
		return nil, err
	}
	corefile, err := lab.WriteCorefile(filepath.Join(cfg.testdata, "bench", name+".Corefile"), filepath.Join(cfg.testdata, "cluster.local.db"),
		dir, "PPROF", s.pprof, "PORT", s.port)
	if err != nil {
		return nil, err
	}
	argv, env := []string{cfg.coredns, "-conf", corefile}, []string(nil)
	if cfg.pin {
		argv, env = append([]string{"taskset", "-c", "0"}, argv...), []string{"GOMAXPROCS=1"}
	}
	if s.proc, err = lab.Start(ctx, filepath.Join(dir, "coredns.log"), env, argv...); err != nil {
		return nil, err
	}
	return s, lab.WaitForDNS(ctx, "127.0.0.1:"+s.port, s.proc.Exited)
}

func (s *server) stop() {
	if s.proc != nil {
		s.proc.Stop()
	}
	os.RemoveAll(s.dir)
}

// measure runs dnsperf twice against s: at the fixed load (CPU per query,
// latency) and unlimited (saturation throughput).
func measure(ctx context.Context, cfg config, s *server) (sample, error) {
	before, err := lab.CPUTime(s.proc.Cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	fixed, err := dnsperf(ctx, cfg, s, "-Q", strconv.Itoa(cfg.load), "-v")
	if err != nil {
		return sample{}, err
	}
	after, err := lab.CPUTime(s.proc.Cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	saturated, err := dnsperf(ctx, cfg, s)
	if err != nil {
		return sample{}, err
	}
	smp := sample{qps: saturated.QPS, avg: fixed.Avg, p99: fixed.P99, lost: fixed.Lost + saturated.Lost}
	smp.cpuPerQuery = (after - before) / time.Duration(fixed.Completed)
	return smp, nil
}

func dnsperf(ctx context.Context, cfg config, s *server, extra ...string) (lab.Perf, error) {
	argv := append([]string{"dnsperf", "-s", "127.0.0.1", "-p", s.port, "-d", filepath.Join(cfg.testdata, "bench", "queries.txt"),
		"-l", strconv.Itoa(cfg.seconds), "-e", "-c", "4", "-q", "64", "-t", "2"}, extra...)
	if cfg.pin {
		argv = append([]string{"taskset", "-c", "1"}, argv...)
	}
	return lab.Dnsperf(ctx, argv...)
}

// profile takes a CPU profile of one configuration while dnsperf saturates it.
func profile(ctx context.Context, cfg config, servers []*server) error {
	i := slices.IndexFunc(servers, func(s *server) bool { return s.name == cfg.profile })
	if i < 0 {
		return fmt.Errorf("-profile %s: no such configuration", cfg.profile)
	}
	s := servers[i]
	long := cfg
	long.seconds = 12
	errc := make(chan error, 1)
	go func() { _, err := dnsperf(ctx, long, s); errc <- err }()
	time.Sleep(time.Second)
	resp, err := http.Get("http://127.0.0.1:" + s.pprof + "/debug/pprof/profile?seconds=10")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(cfg.out, s.name+".cpu.pprof"))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.ReadFrom(resp.Body); err != nil {
		return err
	}
	fmt.Println("wrote", f.Name(), "(go tool pprof -top", cfg.coredns, f.Name()+")")
	return <-errc
}

func table(cfg config, samples map[string][]sample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %d cores; %d rounds, %d s per dnsperf run, fixed load %d q/s; medians over rounds.\n\n",
		lab.CPUModel(), runtime.NumCPU(), cfg.rounds, cfg.seconds, cfg.load)
	b.WriteString("| configuration | CPU µs/query | × baseline | q/s saturated | × baseline | avg latency | p99 latency | lost |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, name := range cfg.configs {
		base := baseline(name)
		lost := 0
		for _, s := range samples[name] {
			lost += s.lost
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.3f (vs %s) | %.0f | %.3f | %.0f µs | %.0f µs | %d |\n",
			name, median(samples[name], cpuOf), ratioOf(samples[name], samples[base], cpuOf), base,
			median(samples[name], qpsOf), ratioOf(samples[name], samples[base], qpsOf),
			median(samples[name], avgOf), median(samples[name], p99Of), lost)
	}
	return b.String()
}

// baseline is the configuration a configuration is compared with: the same
// without minttl or rewrite.
func baseline(name string) string {
	return strings.TrimPrefix(strings.TrimPrefix(name, "minttl_"), "rewrite_")
}

func cpuOf(s sample) float64 { return micros(s.cpuPerQuery) }
func qpsOf(s sample) float64 { return s.qps }
func avgOf(s sample) float64 { return micros(s.avg) }
func p99Of(s sample) float64 { return micros(s.p99) }

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func median(samples []sample, f func(sample) float64) float64 {
	v := make([]float64, len(samples))
	for i, s := range samples {
		v[i] = f(s)
	}
	return middle(v)
}

func middle(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// ratioOf is the median over rounds of each round's ratio: the configurations
// of one round ran back to back, so they shared that round's noise.
func ratioOf(samples, base []sample, f func(sample) float64) float64 {
	var ratios []float64
	for i := range min(len(samples), len(base)) {
		if b := f(base[i]); b > 0 {
			ratios = append(ratios, f(samples[i])/b)
		}
	}
	return middle(ratios)
}
