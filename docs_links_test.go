package chronicle

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// TestDocLinksStayInRepo: every relative link and image in README.md and docs/*.md names
// a file or directory of this repository (never a path outside it, such as ../shared), its
// #anchor, when it has one, names a heading of the target, and no backquoted path leads
// out of the repository either. Web links (http, https, mailto) are not followed.
func TestDocLinksStayInRepo(t *testing.T) {
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{"README.md"}, docs...)
	links := regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)|(?:href|src)="([^"]+)"|^\s*\[[^\]]+\]:\s*(\S+)`)
	spans := regexp.MustCompile("`(\\.\\./[^`\\s]*)")
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := stripFences(string(b))
		for i, line := range strings.Split(text, "\n") {
			for _, m := range links.FindAllStringSubmatch(line, -1) {
				target := m[1] + m[2] + m[3]
				checked++
				if msg := checkLink(root, f, target); msg != "" {
					t.Errorf("%s:%d: link %q: %s", f, i+1, target, msg)
				}
			}
			for _, m := range spans.FindAllStringSubmatch(line, -1) {
				if msg := checkPath(root, f, m[1]); msg != "" {
					t.Errorf("%s:%d: path %q: %s", f, i+1, m[1], msg)
				}
			}
		}
	}
	if checked < 5 {
		t.Fatalf("found only %d links in %v: is the pattern broken?", checked, files)
	}
}

// stripFences blanks fenced code blocks (keeping the line count): what they hold is code,
// not links.
func stripFences(s string) string {
	lines := strings.Split(s, "\n")
	in := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			in = !in
			lines[i] = ""
			continue
		}
		if in {
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}

func checkLink(root, from, target string) string {
	lower := strings.ToLower(target)
	if strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://") || strings.HasPrefix(lower, "mailto:") {
		return ""
	}
	if strings.Contains(target, "://") {
		return "not a web link and not a path in the repository"
	}
	path, anchor, _ := strings.Cut(target, "#")
	file := from
	if path != "" {
		if msg := checkPath(root, from, path); msg != "" {
			return msg
		}
		file = filepath.Join(filepath.Dir(from), filepath.FromSlash(path))
	}
	if anchor == "" || !strings.HasSuffix(file, ".md") {
		return ""
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	if !headingAnchors(string(b))[anchor] {
		return "no heading of " + file + " has the anchor #" + anchor
	}
	return ""
}

// checkPath resolves a relative path from the file that names it: it must stay inside
// root and exist.
func checkPath(root, from, path string) string {
	if filepath.IsAbs(path) || strings.HasPrefix(path, "/") {
		return "an absolute path: link to a file of the repository by a relative path"
	}
	abs, err := filepath.Abs(filepath.Join(filepath.Dir(from), filepath.FromSlash(path)))
	if err != nil {
		return err.Error()
	}
	if rel, err := filepath.Rel(root, abs); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "outside the repository"
	}
	if _, err := os.Stat(abs); err != nil {
		return "no such file in the repository"
	}
	return ""
}

// headingAnchors lists the anchors GitHub gives a Markdown file's headings: lower case,
// punctuation dropped, spaces as dashes, -1, -2... on repeats.
func headingAnchors(md string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range strings.Split(stripFences(md), "\n") {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var sb strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				sb.WriteRune(r)
			case r == ' ':
				sb.WriteRune('-')
			}
		}
		a := sb.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}
