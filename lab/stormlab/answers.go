package main

// With -answers the lab keeps every answer each proxy got and writes them,
// one row per query, to answers-SCENARIO.csv: which proxy asked which name
// when (seconds into the run, and the wall clock, whose second minttl's
// jitter reads), which replica answered, how fast, with what TTL, and how old
// the zone's data was when the answer arrived (a cache that answers from an
// expired item hands out data older than the zone's TTL).

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// answersFile is the file a unit's answers go to: its label with the
// characters a file name should not carry replaced.
func answersFile(label string) string {
	return "answers-" + strings.NewReplacer("×", "x", "/", "-", " ", "_").Replace(label) + ".csv"
}

// writeAnswers writes the answers of every result that kept them into dir.
func writeAnswers(dir string, results []result) error {
	for _, r := range results {
		if r.answers == nil {
			continue
		}
		if err := writeAnswersOf(filepath.Join(dir, answersFile(r.Scenario)), r.answers); err != nil {
			return err
		}
	}
	return nil
}

func writeAnswersOf(path string, t *tally) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "proxy,name,sent_s,unix_s,replica,rtt_ms,ttl,age_s,failed")
	for i := range t.loops {
		l := &t.loops[i]
		l.mu.Lock()
		name, _, _ := strings.Cut(l.qname, ".")
		for _, a := range l.seq {
			age, failed := "", 0
			if !a.stamp.IsZero() {
				age = fmt.Sprintf("%.3f", a.at.Add(a.rtt).Sub(a.stamp).Seconds())
			}
			if a.failed {
				failed = 1
			}
			fmt.Fprintf(w, "%s,%s,%.3f,%.3f,%d,%.1f,%d,%s,%d\n", l.src, name, a.at.Sub(t.start).Seconds(),
				float64(a.at.UnixMicro())/1e6, a.replica, ms(a.rtt), a.ttl, age, failed)
		}
		l.mu.Unlock()
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
