package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Perf is what one dnsperf run reports.
type Perf struct {
	Completed, Lost int
	QPS             float64
	Avg, P99        time.Duration // P99 only when dnsperf ran with -v
}

// Dnsperf runs the command line argv (dnsperf, or dnsperf behind taskset) and
// reads dnsperf's summary.
func Dnsperf(ctx context.Context, argv ...string) (Perf, error) {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
	if err != nil {
		return Perf{}, fmt.Errorf("%v: %w", argv, err)
	}
	return parseDnsperf(string(out))
}

// parseDnsperf reads dnsperf's summary and, with -v, the latency of every answer
// ("> NOERROR name TYPE 0.000123"), for the 99th percentile.
func parseDnsperf(out string) (Perf, error) {
	var r Perf
	var latencies []time.Duration
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "> ") && len(fields) >= 2:
			if f, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
				latencies = append(latencies, time.Duration(f*float64(time.Second)))
			}
		case strings.HasPrefix(line, "Queries completed:"):
			r.Completed, _ = strconv.Atoi(fields[2])
		case strings.HasPrefix(line, "Queries lost:"):
			r.Lost, _ = strconv.Atoi(fields[2])
		case strings.HasPrefix(line, "Queries per second:"):
			r.QPS, _ = strconv.ParseFloat(fields[3], 64)
		case strings.HasPrefix(line, "Average Latency (s):"):
			f, _ := strconv.ParseFloat(fields[3], 64)
			r.Avg = time.Duration(f * float64(time.Second))
		}
	}
	if r.Completed == 0 {
		return r, fmt.Errorf("dnsperf completed no query:\n%s", out)
	}
	if len(latencies) > 0 {
		slices.Sort(latencies)
		r.P99 = latencies[len(latencies)*99/100]
	}
	return r, nil
}

// CPUTime is the user + system CPU time of pid, from /proc/PID/stat.
func CPUTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it do not.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// RSS is the resident memory of pid in bytes, from /proc/PID/status.
func RSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

// WriteCorefile fills the Corefile template: ZONE becomes the absolute path of
// zonefile and each placeholder in pairs its value. It writes dir/Corefile and
// returns its path.
func WriteCorefile(template, zonefile, dir string, pairs ...string) (string, error) {
	zone, err := filepath.Abs(zonefile)
	if err != nil {
		return "", err
	}
	text, err := os.ReadFile(template)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "Corefile")
	filled := Placeholders(slices.Concat(pairs, []string{"ZONE", zone})...).Replace(string(text))
	return path, os.WriteFile(path, []byte(filled), 0o600)
}

// Placeholders replaces each placeholder of pairs (placeholder, value, ...)
// with its value. Where one placeholder begins another (NODE, NODE_FLOOR), the
// longer one wins, wherever the pairs list it: a strings.Replacer takes the
// first of its arguments that matches.
func Placeholders(pairs ...string) *strings.Replacer {
	ordered := make([][2]string, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		ordered = append(ordered, [2]string{pairs[i], pairs[i+1]})
	}
	slices.SortStableFunc(ordered, func(a, b [2]string) int { return len(b[0]) - len(a[0]) })
	flat := make([]string, 0, len(pairs))
	for _, p := range ordered {
		flat = append(flat, p[0], p[1])
	}
	return strings.NewReplacer(flat...)
}

// Process is a server started by Start.
type Process struct {
	Cmd    *exec.Cmd
	Log    string        // the file holding its output
	Exited chan struct{} // closed when it has exited
}

// Start runs argv (with env added to this process's environment) and sends its
// output to logPath.
func Start(ctx context.Context, logPath string, env []string, argv ...string) (*Process, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child has its own descriptor
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, Log: logPath, Exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.Exited) }()
	return p, nil
}

// Stop kills the process and waits until it has exited.
func (p *Process) Stop() {
	p.Cmd.Process.Kill()
	<-p.Exited
}
