package e2e

// Tests that mostly wait. Go runs a package's tests in the order of its files
// and a test that calls t.Parallel pauses until the others have run, so these
// start first and spend their waiting beside the rest.

import (
	"syscall"
	"testing"
	"time"
)

// TestE2EQuietMinuteAfterReload: 4 queries, a reload at once (SIGUSR1), 90
// quiet seconds, 1 query: the histogram's _sum grows by the 5 queries and its
// _count by the seconds served (before: _sum by 2, _count by 3 of 93).
func TestE2EQuietMinuteAfterReload(t *testing.T) {
	s := startCoreDNS(t, "quiet.Corefile", "PORT", "METRICS")
	first := scrape(t, s.ports["METRICS"])
	start := time.Now()
	for i := 0; i < 4; i++ {
		ask(t, s.ports["PORT"])
	}
	if err := s.proc.Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitForLog(t, s, "Reloading complete", 1)
	// A paused parallel test holds no slot: the quiet stretch passes while
	// the package's other tests run.
	t.Parallel()
	time.Sleep(time.Until(start.Add(90 * time.Second)))
	ask(t, s.ports["PORT"])
	var sum, count float64
	var end time.Time
	for i := 0; i < 50 && sum < 5; i++ {
		time.Sleep(100 * time.Millisecond)
		last := scrape(t, s.ports["METRICS"])
		end = time.Now()
		sum, count = series(last, "_sum")-series(first, "_sum"), series(last, "_count")-series(first, "_count")
	}
	served := end.Sub(start).Seconds()
	if sum != 5 || count < served-2 || count > served+2 {
		t.Errorf("queries_per_second grew by %v queries in %v seconds; 5 were asked over %.0f s", sum, count, served)
	}
	t.Logf("5 queries over %.0f s and a reload: %v counted, %v seconds observed", served, sum, count)
}
