package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocs checks the repository's README.md and docs/: links, anchors,
// embedded tables, and that README.md links every page.
func TestDocs(t *testing.T) {
	root := filepath.Join("..", "..")
	pages, err := findPages(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) < 2 {
		t.Fatalf("pages: %v, want README.md and docs/", pages)
	}
	if err := check(root, pages); err != nil {
		t.Error(err)
	}
}

// Anchors as GitHub renders them for headings of this repository's kind.
func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Time to calm, and what to choose":       "time-to-calm-and-what-to-choose",
		"Compiling minttl into CoreDNS":          "compiling-minttl-into-coredns",
		"*minttl* in front of `cache`":           "minttl-in-front-of-cache",
		"The `serve_stale` case":                 "the-serve_stale-case",
		"RFC 2181 §5.2: one TTL per RRset":       "rfc-2181-52-one-ttl-per-rrset",
		"20 nodes × 10 pods":                     "20-nodes--10-pods",
		"Deploying to [Kubernetes](https://k8s)": "deploying-to-kubernetes",
		"Émile's _emphasis_ and **bold**":        "émiles-emphasis-and-bold",
		"v1.11.3 – v1.15.0":                      "v1113--v1150",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

func TestAnchorsNumberRepeats(t *testing.T) {
	got := anchors(strings.Split("# Lab\n## Run\n~~~\n# Run\n~~~\n## Run\n### Run", "\n"))
	want := []string{"lab", "run", "run-1", "run-2"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("anchors = %v, want %v", got, want)
	}
}

// TestCheckFindsEveryFault builds a repository with one fault of each kind
// and wants check to name each.
func TestCheckFindsEveryFault(t *testing.T) {
	root := t.TempDir()
	write := func(path, text string) {
		t.Helper()
		path = filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("results/table.md", "| a |\n|---|\n| 2 |\n")
	write("results/bench.txt", "fast\n")
	write("README.md", strings.Join([]string{
		"# Tool", "## Syntax",
		"[ok](docs/lab.md#how-to-run) [ok](#syntax) [ok](results) [web](https://example.com/x#y)",
		"[gone](docs/missing.md) [no heading](docs/lab.md#nowhere) [self](#nothing)",
		"~~~", "[in code](nowhere.md)", "~~~", "`[in a span](nowhere.md)`",
		"[ref]: docs/absent.md",
	}, "\n"))
	write("docs/lab.md", strings.Join([]string{
		"# Lab", "## How to run", "[up](../README.md#syntax)",
		"<!-- embed: ../results/table.md -->", "| a |", "|---|", "| 1 |", "<!-- /embed -->",
		"<!-- embed: ../results/bench.txt -->", "~~~ txt", "fast", "~~~", "<!-- /embed -->",
	}, "\n"))
	write("docs/orphan.md", "# Orphan\n")
	pages, err := findPages(root)
	if err != nil {
		t.Fatal(err)
	}
	err = check(root, pages)
	if err == nil {
		t.Fatal("check found nothing")
	}
	msg := err.Error()
	for _, want := range []string{
		"docs/missing.md: no such file", "no heading #nowhere in lab.md", "no heading #nothing in README.md",
		"docs/absent.md: no such file", "lab.md:4: the block differs from", "orphan.md: README.md links no page to it",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("check did not report %q:\n%s", want, msg)
		}
	}
	for _, unwanted := range []string{"nowhere.md", "how-to-run", "#syntax", "bench.txt", "example.com"} {
		if strings.Contains(msg, unwanted) {
			t.Errorf("check reported %q, which is fine:\n%s", unwanted, msg)
		}
	}
	if strings.Count(msg, "\n")+1 != 6 {
		t.Errorf("want 6 faults:\n%s", msg)
	}

	// embedAll refreshes the stale block, and then only the link faults remain.
	if err := embedAll(pages); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(root, "docs", "lab.md"))
	if !strings.Contains(string(data), "| 2 |") || strings.Contains(string(data), "| 1 |") {
		t.Errorf("embedAll did not refresh the block:\n%s", data)
	}
	if err := check(root, pages); err == nil || strings.Contains(err.Error(), "differs") {
		t.Errorf("after embedAll: %v", err)
	}
}
