// Command dnsbench measures what minttl costs a running CoreDNS: it starts the
// real ./coredns once per configuration and drives them with dnsperf in
// interleaved rounds, each in a new order, so machine noise hits every
// configuration alike.
//
// Each chain (cache alone, kubeadm's) is measured bare, with the pass-through
// `any` plugin in minttl's place above cache (the cheapest plugin that place
// can hold: the yardstick), with `loadbalance` (an in-tree writer wrapper) where
// the chain has none, with minttl and with `rewrite ttl`.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
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
	profiles               []string
	pin                    bool
	instructions           int
}

// one dnsperf run against one configuration.
type sample struct {
	cpuPerQuery time.Duration // server CPU per answered query, at the fixed load
	qps         float64       // at saturation
	avg, p99    time.Duration // latency at the fixed load
	lost        int
	// per answered query at the fixed load, from the server's runtime.MemStats
	allocs, bytes, gcs float64
	// per answered query under valgrind (-instructions)
	instructions float64
}

type server struct {
	name, port, pprof string
	proc              *lab.Process
	dir               string
}

func main() {
	cfg := config{}
	var configs, profiles string
	flag.StringVar(&cfg.coredns, "coredns", "./coredns", "CoreDNS binary built with minttl (make coredns)")
	flag.StringVar(&cfg.testdata, "testdata", "testdata", "folder with cluster.local.db and bench/")
	flag.StringVar(&cfg.out, "out", "results/bench", "folder for table.md")
	flag.IntVar(&cfg.rounds, "rounds", 7, "rounds; each runs every configuration once, in turn")
	flag.IntVar(&cfg.load, "load", 10000, "fixed offered load, queries per second (below saturation)")
	flag.IntVar(&cfg.seconds, "seconds", 5, "length of each dnsperf run")
	flag.StringVar(&configs, "configs", "cache,any_cache,loadbalance_cache,minttl_cache,rewrite_cache,kubeadm,any_kubeadm,minttl_kubeadm,rewrite_kubeadm", "configurations (testdata/bench/NAME.Corefile)")
	flag.StringVar(&profiles, "profile", "", "also write a 10 s CPU profile of these configurations (comma-separated) at saturation to the results folder")
	flag.BoolVar(&cfg.pin, "pin", runtime.NumCPU() >= 2, "run CoreDNS on CPU 0 (GOMAXPROCS=1) and dnsperf on CPU 1, so they do not compete")
	flag.IntVar(&cfg.instructions, "instructions", 0, "instead, count the server's instructions per query under valgrind over this many queries per configuration")
	flag.Parse()
	cfg.configs = strings.Split(configs, ",")
	if profiles != "" {
		cfg.profiles = strings.Split(profiles, ",")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	measure := run
	if cfg.instructions > 0 {
		measure = instructions
	}
	if err := measure(ctx, cfg); err != nil {
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
		// A new order each round: no configuration always runs right after the same one.
		for _, i := range rand.Perm(len(servers)) {
			s := servers[i]
			smp, err := measure(ctx, cfg, s)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			samples[s.name] = append(samples[s.name], smp)
			fmt.Printf("round %d/%d %-17s %6.1f µs CPU/query at %d q/s, %8.0f q/s saturated, %5.1f allocs %5.0f B/query, avg %v p99 %v, lost %d\n",
				round, cfg.rounds, s.name, micros(smp.cpuPerQuery), cfg.load, smp.qps, smp.allocs, smp.bytes, smp.avg, smp.p99, smp.lost)
		}
	}
	for _, name := range cfg.profiles {
		if err := profile(ctx, cfg, servers, name); err != nil {
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

// start starts the configuration name, pinned to CPU 0 when cfg.pin.
func start(ctx context.Context, cfg config, name string) (*server, error) {
	var prefix, env []string
	if cfg.pin {
		prefix, env = []string{"taskset", "-c", "0"}, []string{"GOMAXPROCS=1"}
	}
	return startWith(ctx, cfg, name, prefix, env)
}

// startWith starts the configuration name under the command prefix.
func startWith(ctx context.Context, cfg config, name string, prefix, env []string) (*server, error) {
	dir, err := os.MkdirTemp("", "dnsbench-"+name+"-")
	if err != nil {
		return nil, err
	}
	s := &server{name: name, dir: dir}
	corefile, err := s.corefile(cfg)
	if err != nil {
		s.stop()
		return nil, err
	}
	argv := append(slices.Clone(prefix), cfg.coredns, "-conf", corefile)
	if s.proc, err = lab.Start(ctx, filepath.Join(dir, "coredns.log"), env, argv...); err != nil {
		s.stop()
		return nil, err
	}
	if err := lab.WaitForDNS(ctx, "127.0.0.1:"+s.port, s.proc.Exited); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// corefile picks the server's ports and writes its Corefile.
func (s *server) corefile(cfg config) (string, error) {
	var err error
	if s.port, err = lab.FreePort(); err != nil {
		return "", err
	}
	if s.pprof, err = lab.FreePort(); err != nil {
		return "", err
	}
	return lab.WriteCorefile(filepath.Join(cfg.testdata, "bench", s.name+".Corefile"), filepath.Join(cfg.testdata, "cluster.local.db"),
		s.dir, "PPROF", s.pprof, "PORT", s.port)
}

func (s *server) stop() {
	if s.proc != nil {
		s.proc.Stop()
	}
	os.RemoveAll(s.dir)
}

// measure runs dnsperf twice against s: at the fixed load (CPU, allocations
// and GC cycles per query, latency) and unlimited (saturation throughput).
func measure(ctx context.Context, cfg config, s *server) (sample, error) {
	memBefore, err := s.memStats()
	if err != nil {
		return sample{}, err
	}
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
	memAfter, err := s.memStats()
	if err != nil {
		return sample{}, err
	}
	saturated, err := dnsperf(ctx, cfg, s)
	if err != nil {
		return sample{}, err
	}
	n := float64(fixed.Completed)
	return sample{
		cpuPerQuery: (after - before) / time.Duration(fixed.Completed),
		qps:         saturated.QPS,
		avg:         fixed.Avg,
		p99:         fixed.P99,
		lost:        fixed.Lost + saturated.Lost,
		allocs:      (memAfter["Mallocs"] - memBefore["Mallocs"]) / n,
		bytes:       (memAfter["TotalAlloc"] - memBefore["TotalAlloc"]) / n,
		gcs:         1000 * (memAfter["NumGC"] - memBefore["NumGC"]) / n,
	}, nil
}

// memStats reads the server's runtime.MemStats counters from the pprof
// plugin's heap profile ("# Mallocs = 123" lines).
func (s *server) memStats() (map[string]float64, error) {
	resp, err := http.Get("http://127.0.0.1:" + s.pprof + "/debug/pprof/heap?debug=1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	stats := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "#" && f[2] == "=" {
			if v, err := strconv.ParseFloat(f[3], 64); err == nil {
				stats[f[1]] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if _, ok := stats["Mallocs"]; !ok {
		return nil, fmt.Errorf("%s: no MemStats in the heap profile", s.name)
	}
	return stats, nil
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
func profile(ctx context.Context, cfg config, servers []*server, name string) error {
	i := slices.IndexFunc(servers, func(s *server) bool { return s.name == name })
	if i < 0 {
		return fmt.Errorf("-profile %s: no such configuration", name)
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
	fmt.Fprintf(&b, "%s, %d cores; %d rounds, %d s per dnsperf run, fixed load %d q/s; medians over rounds. "+
		"Ratios are medians of the rounds' ratios, with their range over the rounds (the run-to-run noise) in brackets; "+
		"\"bare\" is the chain without a plugin in minttl's place, \"pass\" the chain with `any` there.\n\n",
		lab.CPUModel(), runtime.NumCPU(), cfg.rounds, cfg.seconds, cfg.load)
	b.WriteString("| configuration | CPU µs/query | × bare | × pass | q/s saturated | × bare | × pass | allocs/query | B/query | GC/1k queries | avg latency | p99 latency | lost |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, name := range cfg.configs {
		bare, pass := chainOf(name), "any_"+chainOf(name)
		own := samples[name]
		lost := 0
		for _, s := range own {
			lost += s.lost
		}
		fmt.Fprintf(&b, "| %s | %.1f | %s | %s | %.0f | %s | %s | %.1f | %.0f | %.2f | %.0f µs | %.0f µs | %d |\n",
			name, median(own, cpuOf), selfOr(name, bare, own, samples, cpuOf), selfOr(name, pass, own, samples, cpuOf),
			median(own, qpsOf), selfOr(name, bare, own, samples, qpsOf), selfOr(name, pass, own, samples, qpsOf),
			median(own, allocsOf), median(own, bytesOf), median(own, gcsOf),
			median(own, avgOf), median(own, p99Of), lost)
	}
	// minttl against rewrite, round by round: ahead only if the whole range is.
	for _, name := range cfg.configs {
		rewrite := "rewrite_" + strings.TrimPrefix(name, "minttl_")
		if !strings.HasPrefix(name, "minttl_") || samples[rewrite] == nil {
			continue
		}
		fmt.Fprintf(&b, "\n%s ÷ %s, per round: CPU/query %s, q/s saturated %s.", name, rewrite,
			ratioCell(samples[name], samples[rewrite], cpuOf), ratioCell(samples[name], samples[rewrite], qpsOf))
	}
	b.WriteString("\n")
	return b.String()
}

// chainOf is the chain a configuration belongs to: its name without the plugin
// put in minttl's place.
func chainOf(name string) string {
	for _, p := range []string{"minttl_", "rewrite_", "any_", "loadbalance_"} {
		name = strings.TrimPrefix(name, p)
	}
	return name
}

func cpuOf(s sample) float64    { return micros(s.cpuPerQuery) }
func qpsOf(s sample) float64    { return s.qps }
func avgOf(s sample) float64    { return micros(s.avg) }
func p99Of(s sample) float64    { return micros(s.p99) }
func allocsOf(s sample) float64 { return s.allocs }
func bytesOf(s sample) float64  { return s.bytes }
func gcsOf(s sample) float64    { return s.gcs }

func instructionsOf(s sample) float64 { return s.instructions }

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

// ratios are each round's ratio of samples to base: the configurations of one
// round ran back to back, so they shared that round's noise.
func ratios(samples, base []sample, f func(sample) float64) []float64 {
	var r []float64
	for i := range min(len(samples), len(base)) {
		if b := f(base[i]); b > 0 {
			r = append(r, f(samples[i])/b)
		}
	}
	slices.Sort(r)
	return r
}

// selfOr is "1" when base is name itself, else the ratio cell of own to base.
func selfOr(name, base string, own []sample, samples map[string][]sample, f func(sample) float64) string {
	if base == name {
		return "1"
	}
	return ratioCell(own, samples[base], f)
}

// ratioCell is the median of the rounds' ratios and their range, or "–"
// without a base to compare with.
func ratioCell(samples, base []sample, f func(sample) float64) string {
	r := ratios(samples, base, f)
	if len(r) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f [%.2f–%.2f]", middle(r), r[0], r[len(r)-1])
}
