package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minttl/minttl/lab/internal/lab"
)

// instructions counts what each configuration's server executes per answered
// query, under valgrind's cachegrind. Instruction counts do not depend on what
// else the machine runs, so they compare configurations on a busy machine,
// where CPU time cannot; they do not weigh cache misses or the kernel's work.
// A run without queries (start-up, warm-up, shutdown) is subtracted.
func instructions(ctx context.Context, cfg config) error {
	if _, err := exec.LookPath("valgrind"); err != nil {
		return errors.New("valgrind is missing: apt-get install valgrind")
	}
	idle := map[string]float64{}
	for _, name := range cfg.configs {
		n, err := countInstructions(ctx, cfg, name, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		idle[name] = n
	}
	samples := map[string][]sample{}
	for round := 1; round <= cfg.rounds; round++ {
		for _, name := range cfg.configs {
			n, err := countInstructions(ctx, cfg, name, cfg.instructions)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			perQuery := (n - idle[name]) / float64(cfg.instructions)
			samples[name] = append(samples[name], sample{instructions: perQuery})
			fmt.Printf("round %d/%d %-17s %8.0f instructions/query\n", round, cfg.rounds, name, perQuery)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Instructions per answered query (valgrind --tool=cachegrind, GOMAXPROCS=1), %d queries per run, %d rounds; "+
		"medians, ratios as in the timing table.\n\n", cfg.instructions, cfg.rounds)
	b.WriteString("| configuration | instructions/query | × bare | × pass |\n|---|--:|--:|--:|\n")
	for _, name := range cfg.configs {
		own, bare, pass := samples[name], chainOf(name), "any_"+chainOf(name)
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s |\n", name, median(own, instructionsOf),
			selfOr(name, bare, own, samples, instructionsOf), selfOr(name, pass, own, samples, instructionsOf))
	}
	text := b.String()
	fmt.Println(text)
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cfg.out, "instructions.md"), []byte("Made by `dnsbench "+strings.Join(os.Args[1:], " ")+"`.\n\n"+text), 0o644)
}

// countInstructions starts the configuration name under cachegrind, sends it
// 800 queries to warm up and then queries more, stops it and returns the
// instructions it executed.
func countInstructions(ctx context.Context, cfg config, name string, queries int) (float64, error) {
	out, err := os.CreateTemp("", "dnsbench-cachegrind-")
	if err != nil {
		return 0, err
	}
	out.Close()
	defer os.Remove(out.Name())
	// Go preempts goroutines with signals valgrind cannot follow.
	prefix := []string{"valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=" + out.Name()}
	s, err := startWith(ctx, cfg, name, prefix, []string{"GOMAXPROCS=1", "GODEBUG=asyncpreemptoff=1"})
	if err != nil {
		if s != nil {
			s.stop()
		}
		return 0, err
	}
	defer s.stop()
	lines, err := queryLines(cfg)
	if err != nil {
		return 0, err
	}
	run := func(queries int, extra ...string) error {
		argv := append([]string{"dnsperf", "-s", "127.0.0.1", "-p", s.port, "-d", filepath.Join(cfg.testdata, "bench", "queries.txt"),
			"-n", strconv.Itoa(queries / lines), "-c", "1", "-t", "10"}, extra...)
		p, err := lab.Dnsperf(ctx, argv...)
		if err == nil && p.Lost > 0 {
			err = fmt.Errorf("dnsperf lost %d queries", p.Lost)
		}
		return err
	}
	if err := run(800, "-Q", "1000", "-q", "20"); err != nil {
		return 0, err
	}
	if queries > 0 {
		if err := run(queries, "-q", "10"); err != nil {
			return 0, err
		}
	}
	// cachegrind writes its counts when the server exits on its own.
	s.proc.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.proc.Exited:
	case <-time.After(time.Minute):
		return 0, errors.New("no exit a minute after SIGTERM")
	}
	return cachegrindTotal(out.Name())
}

// queryLines is the number of queries in the query file: dnsperf -n counts
// passes through it.
func queryLines(cfg config) (int, error) {
	data, err := os.ReadFile(filepath.Join(cfg.testdata, "bench", "queries.txt"))
	if err != nil {
		return 0, err
	}
	return len(strings.Fields(string(data))) / 2, nil
}

// cachegrindTotal reads the "summary: N" line of a cachegrind output file.
func cachegrindTotal(path string) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "summary: "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no summary line", path)
}
