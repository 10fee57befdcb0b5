// Command docs keeps README.md and docs/ honest: every relative link resolves
// to a file, every #anchor to a heading of it (GitHub's rules), and every table
// a make target writes under results/ is embedded from its file, never copied
// by hand.
//
//	docs -root ..          check (what make test runs, through docs_test.go)
//	docs -root .. -embed   refresh every embedded block from its file, then check
//
// An embedded block is
//
//	<!-- embed: ../results/storm/table.md -->
//	...the file's text...
//	<!-- /embed -->
//
// with the path relative to the page. A file that is not Markdown is embedded
// inside a ~~~ txt fence.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

func main() {
	root := flag.String("root", ".", "the repository")
	embed := flag.Bool("embed", false, "refresh the embedded blocks before checking")
	flag.Parse()
	pages, err := findPages(*root)
	if err == nil && *embed {
		err = embedAll(pages)
	}
	if err == nil {
		err = check(*root, pages)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "docs:", err)
		os.Exit(1)
	}
}

// findPages is README.md and every Markdown file under docs/.
func findPages(root string) ([]string, error) {
	pages := []string{filepath.Join(root, "README.md")}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	return append(pages, more...), err
}

var (
	embedStart = regexp.MustCompile(`^<!-- embed: (\S+) -->$`)
	embedEnd   = "<!-- /embed -->"
)

// block is an embedded block of a page: lines [start, end) lie between its markers.
type block struct {
	source     string // absolute path of the embedded file
	start, end int
}

func blocks(page string, lines []string) ([]block, error) {
	var out []block
	for i := 0; i < len(lines); i++ {
		m := embedStart.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		j := slices.Index(lines[i+1:], embedEnd)
		if j < 0 {
			return nil, fmt.Errorf("%s:%d: embed without %s", page, i+1, embedEnd)
		}
		out = append(out, block{source: filepath.Join(filepath.Dir(page), m[1]), start: i + 1, end: i + 1 + j})
		i += j + 1
	}
	return out, nil
}

// embedded is the text a block of source holds.
func embedded(source string) ([]string, error) {
	data, err := os.ReadFile(source)
	if err != nil {
		return nil, err
	}
	text := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if strings.HasSuffix(source, ".md") {
		return text, nil
	}
	return slices.Concat([]string{"~~~ txt"}, text, []string{"~~~"}), nil
}

func embedAll(pages []string) error {
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			return err
		}
		lines := strings.Split(string(data), "\n")
		bs, err := blocks(page, lines)
		if err != nil {
			return err
		}
		for k := len(bs) - 1; k >= 0; k-- {
			text, err := embedded(bs[k].source)
			if err != nil {
				return fmt.Errorf("%s: %w", page, err)
			}
			lines = slices.Concat(lines[:bs[k].start], text, lines[bs[k].end:])
		}
		if err := os.WriteFile(page, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// check returns every broken link, anchor and stale embedded block of pages,
// and every page under docs/ that README.md does not link.
func check(root string, pages []string) error {
	var errs []error
	linked := map[string]bool{}
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			return err
		}
		lines := strings.Split(string(data), "\n")
		errs = append(errs, checkEmbeds(page, lines)...)
		for _, l := range links(lines) {
			target, err := resolve(page, l.target)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: %s: %w", page, l.line, l.target, err))
			}
			if filepath.Base(page) == "README.md" {
				linked[target] = true
			}
		}
	}
	for _, page := range pages[1:] {
		if !linked[filepath.Clean(page)] {
			errs = append(errs, fmt.Errorf("%s: README.md links no page to it", page))
		}
	}
	return errors.Join(errs...)
}

func checkEmbeds(page string, lines []string) []error {
	bs, err := blocks(page, lines)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, b := range bs {
		text, err := embedded(b.source)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", page, b.start, err))
		} else if !slices.Equal(text, lines[b.start:b.end]) {
			errs = append(errs, fmt.Errorf("%s:%d: the block differs from %s: run make docs", page, b.start, b.source))
		}
	}
	return errs
}

// link is a link target found on a line of a page.
type link struct {
	line   int
	target string
}

var (
	inline    = regexp.MustCompile(`\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
	reference = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s+(\S+)`)
	codeSpan  = regexp.MustCompile("`[^`]*`")
)

// links returns the link targets of a page outside code.
func links(lines []string) []link {
	var out []link
	code := codeLines(lines)
	for i, line := range lines {
		if code[i] {
			continue
		}
		line = codeSpan.ReplaceAllString(line, "")
		for _, m := range inline.FindAllStringSubmatch(line, -1) {
			out = append(out, link{i + 1, m[1]})
		}
		if m := reference.FindStringSubmatch(line); m != nil {
			out = append(out, link{i + 1, m[1]})
		}
	}
	return out
}

var fence = regexp.MustCompile("^\\s{0,3}(~~~|```)")

// codeLines tells which lines of a page are fences or inside fenced blocks.
func codeLines(lines []string) []bool {
	code := make([]bool, len(lines))
	inside := ""
	for i, line := range lines {
		m := fence.FindStringSubmatch(line)
		switch {
		case m != nil && inside == "":
			inside = m[1]
		case m != nil && m[1] == inside:
			inside = ""
			code[i] = true
		}
		code[i] = code[i] || inside != ""
	}
	return code
}

// resolve checks a link of page and returns the file it names (page itself
// for a bare #anchor; "" for a link that leaves the repository).
func resolve(page, target string) (string, error) {
	if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
		return "", nil
	}
	path, anchor, _ := strings.Cut(target, "#")
	file := filepath.Clean(page)
	if path != "" {
		file = filepath.Join(filepath.Dir(page), path)
	}
	st, err := os.Stat(file)
	if err != nil {
		return file, errors.New("no such file")
	}
	if anchor == "" {
		return file, nil
	}
	if st.IsDir() || !strings.HasSuffix(file, ".md") {
		return file, errors.New("an anchor into a file that is not Markdown")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return file, err
	}
	if !slices.Contains(anchors(strings.Split(string(data), "\n")), anchor) {
		return file, fmt.Errorf("no heading #%s in %s", anchor, filepath.Base(file))
	}
	return file, nil
}

var (
	heading   = regexp.MustCompile(`^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$`)
	linkText  = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	htmlTag   = regexp.MustCompile(`<[^>]+>`)
	emphasis  = regexp.MustCompile(`[*]+|\b_+|_+\b`)
	backticks = regexp.MustCompile("`")
)

// anchors returns the anchors GitHub gives the headings of a page: the
// heading's text as rendered, lower-cased, without punctuation but - and _,
// spaces turned into -; a repeated one gets -1, -2, ...
func anchors(lines []string) []string {
	var out []string
	seen := map[string]int{}
	code := codeLines(lines)
	for i, line := range lines {
		m := heading.FindStringSubmatch(line)
		if m == nil || code[i] {
			continue
		}
		a := slug(m[1])
		if n := seen[a]; n > 0 {
			out = append(out, fmt.Sprintf("%s-%d", a, n))
		} else {
			out = append(out, a)
		}
		seen[a]++
	}
	return out
}

func slug(text string) string {
	text = linkText.ReplaceAllString(text, "$1")
	text = htmlTag.ReplaceAllString(text, "")
	text = backticks.ReplaceAllString(text, "")
	text = emphasis.ReplaceAllString(text, "")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
