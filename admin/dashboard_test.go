package admin_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/outboxgo/outbox/admin"
)

// get fetches path from c's server and returns the status, the headers and the body.
func (c client) get(path string) (int, http.Header, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.url+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// The page at / and its files at /ui/ answer with the strict headers, without a token even
// when reading needs one (the page holds no data; its API calls send the token); other paths
// and kinds of file are 404.
func TestDashboardServed(t *testing.T) {
	t.Parallel()
	s, table := newStore(t)
	c := serve(t, admin.Config{Store: s, Table: table, Token: adminToken, ReadToken: readToken})
	for path, ctype := range map[string]string{
		"/":                 "text/html; charset=utf-8",
		"/ui/dashboard.js":  "text/javascript; charset=utf-8",
		"/ui/chart.js":      "text/javascript; charset=utf-8",
		"/ui/dashboard.css": "text/css; charset=utf-8",
		"/ui/favicon.svg":   "image/svg+xml",
	} {
		code, header, body := c.get(path)
		if code != http.StatusOK || header.Get("Content-Type") != ctype || body == "" {
			t.Errorf("GET %s = %d %q (%d bytes), want 200 %q", path, code, header.Get("Content-Type"), len(body), ctype)
		}
		csp := header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: Content-Security-Policy %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-") {
			t.Errorf("GET %s: Content-Security-Policy %q allows unsafe sources", path, csp)
		}
		if got := header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("GET %s: X-Frame-Options %q", path, got)
		}
		if got := header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", path, got)
		}
	}
	for _, path := range []string{"/ui/", "/ui/index.html", "/ui/nothing.js", "/ui/../server.go", "/index.html", "/ui/.hidden.js", "/x"} {
		if code, _, _ := c.get(path); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, code)
		}
	}
	if code, _ := c.do("POST", "/", "", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", code)
	}
}

// The dashboard's files keep to what the CSP allows and to text-only rendering: no inline
// script, style or event handler in the page, nothing fetched from another origin, and no
// script API that parses a string as HTML or code (row data must reach the page as text; the
// browser test checks a topic named like an <img> tag).
func TestDashboardFilesSafe(t *testing.T) {
	t.Parallel()
	page := readUI(t, "index.html")
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`<script(\s[^>]*)?>[^<]+</script>`), // inline script
		regexp.MustCompile(`<script(?:\s[^>]*)?>`),             // checked below for src
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)<style`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?i)(href|src)\s*=\s*"(https?:)?//`),
		regexp.MustCompile(`(?i)javascript:`),
	} {
		for _, m := range re.FindAllString(page, -1) {
			if strings.HasPrefix(m, "<script") && !strings.Contains(m, "</script>") && strings.Contains(m, ` src="ui/`) {
				continue
			}
			t.Errorf("index.html: %q breaks the page's CSP or loads from elsewhere", m)
		}
	}
	entries, err := os.ReadDir("ui")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\s*\(|new Function|setAttribute\(\s*'style'|https?://`)
	scripts := 0
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".js" {
			continue
		}
		scripts++
		for i, line := range strings.Split(readUI(t, e.Name()), "\n") {
			if m := forbidden.FindString(line); m != "" && !strings.Contains(line, "http://www.w3.org/2000/svg") {
				t.Errorf("%s:%d: %q: row data must be inserted as text, and nothing fetched from elsewhere", e.Name(), i+1, m)
			}
		}
	}
	if scripts < 2 {
		t.Fatalf("%d scripts in ui/, want dashboard.js and chart.js", scripts)
	}
}

func readUI(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("ui", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
