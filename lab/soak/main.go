// Command soak runs the real ./coredns with minttl in front of cache under
// dnsperf at saturation for a bounded time, while verifiers from several
// source addresses check every answer they get against minttl's contract. It
// fails on a lost or errored query, a broken answer, resident memory that grows
// through the second half, or an error line in CoreDNS's log.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/minttl/minttl/lab/internal/lab"
)

type config struct {
	coredns, testdata string
	duration          time.Duration
	verifiers         int
}

// verdict is what the verifiers saw.
type verdict struct {
	mu       sync.Mutex
	answers  int
	failures []string
}

func (v *verdict) add(problem string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.answers++
	if problem != "" && len(v.failures) < 20 {
		v.failures = append(v.failures, problem)
	}
}

func main() {
	cfg := config{}
	flag.StringVar(&cfg.coredns, "coredns", "./coredns", "CoreDNS binary built with minttl (make coredns)")
	flag.StringVar(&cfg.testdata, "testdata", "testdata", "folder with cluster.local.db, soak.Corefile and bench/queries.txt")
	flag.DurationVar(&cfg.duration, "duration", 60*time.Second, "how long dnsperf saturates the server")
	flag.IntVar(&cfg.verifiers, "verifiers", 8, "clients checking answers during the load, each from its own 127.0.0.x")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "soak: FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("soak: PASS")
}

func run(ctx context.Context, cfg config) error {
	dir, err := os.MkdirTemp("", "soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := lab.FreePort()
	if err != nil {
		return err
	}
	corefile, err := lab.WriteCorefile(filepath.Join(cfg.testdata, "soak.Corefile"), filepath.Join(cfg.testdata, "cluster.local.db"), dir, "PORT", port)
	if err != nil {
		return err
	}
	server, err := lab.Start(ctx, filepath.Join(dir, "coredns.log"), nil, cfg.coredns, "-conf", corefile)
	if err != nil {
		return err
	}
	defer server.Stop()
	addr := "127.0.0.1:" + port
	if err := lab.WaitForDNS(ctx, addr, server.Exited); err != nil {
		return err
	}

	loadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	v := &verdict{}
	var wg sync.WaitGroup
	for i := range cfg.verifiers {
		wg.Go(func() { verify(loadCtx, addr, net.IPv4(127, 0, 0, byte(21+i)), v) })
	}
	rss := make(chan []int64, 1)
	go func() { rss <- sampleRSS(loadCtx, server.Cmd.Process.Pid) }()

	perf, perfErr := lab.Dnsperf(ctx, "dnsperf", "-s", "127.0.0.1", "-p", port, "-d", filepath.Join(cfg.testdata, "bench", "queries.txt"),
		"-l", strconv.Itoa(int(cfg.duration.Seconds())), "-e", "-c", "4", "-q", "64", "-t", "2", "-S", "10")
	cancel()
	wg.Wait()
	samples := <-rss
	return judge(cfg, perf, perfErr, v, samples, server.Log)
}

// verify asks for a Linkerd SRV name every 50 ms from src and checks each answer.
func verify(ctx context.Context, addr string, src net.IP, v *verdict) {
	c := &dns.Client{Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: src}}}
	for i := 0; ctx.Err() == nil; i++ {
		q := new(dns.Msg)
		q.SetQuestion([]string{"linkerd-policy.linkerd.svc.cluster.local.", "linkerd-dst-headless.linkerd.svc.cluster.local."}[i%2], dns.TypeSRV)
		q.SetEdns0(1232, i%3 == 0)
		resp, _, err := c.ExchangeContext(ctx, q, addr)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			v.add(fmt.Sprintf("%s: %v", src, err))
		} else {
			v.add(lab.SRVProblem(resp, i%3 == 0))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sampleRSS reads the server's resident memory once a second until ctx ends.
func sampleRSS(ctx context.Context, pid int) []int64 {
	var samples []int64
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if rss, err := lab.RSS(pid); err == nil {
			samples = append(samples, rss)
		}
		select {
		case <-ctx.Done():
			return samples
		case <-t.C:
		}
	}
}

func judge(cfg config, perf lab.Perf, perfErr error, v *verdict, rss []int64, logPath string) error {
	var errs []error
	if perfErr != nil {
		errs = append(errs, perfErr)
	}
	fmt.Printf("dnsperf: %d queries answered, %d lost, %.0f q/s for %s\n", perf.Completed, perf.Lost, perf.QPS, cfg.duration)
	if perf.Lost > 0 {
		errs = append(errs, fmt.Errorf("%d queries lost", perf.Lost))
	}
	fmt.Printf("verifiers: %d answers checked, %d broken\n", v.answers, len(v.failures))
	for _, f := range v.failures {
		errs = append(errs, errors.New(f))
	}
	if v.answers == 0 {
		errs = append(errs, errors.New("the verifiers got no answer"))
	}
	if len(rss) < 4 {
		errs = append(errs, fmt.Errorf("only %d RSS samples", len(rss)))
	} else {
		start, end := rss[len(rss)/2], rss[len(rss)-1]
		fmt.Printf("RSS: %.1f MiB at the start, %.1f MiB at the second half's start, %.1f MiB at the end\n", mib(rss[0]), mib(start), mib(end))
		// Noise: the Go heap breathes with GC cycles; 10 % or 8 MiB, whichever is larger.
		if growth := end - start; growth > max(start/10, 8<<20) {
			errs = append(errs, fmt.Errorf("RSS grew %.1f MiB through the second half", mib(growth)))
		}
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		errs = append(errs, err)
	}
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "[ERROR]") || strings.Contains(line, "panic") {
			errs = append(errs, fmt.Errorf("CoreDNS log: %s", line))
		}
	}
	return errors.Join(errs...)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
