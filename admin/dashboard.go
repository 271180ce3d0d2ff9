package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// The dashboard: one page (ui/index.html) with its script, styles and icon, embedded in the
// binary and served at / and /ui/. It reads the JSON API of the same server with the
// browser's fetch, relative to the page, so the Server works mounted under a prefix too.
//
//go:embed ui
var uiFiles embed.FS

// dashboardCSP is the Content-Security-Policy of the dashboard's page and files: only this
// server's own scripts, styles, images and API (no inline script or style, no other origin),
// no plugins, no forms posted anywhere, and no framing (clickjacking).
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'"

// dashboardRoutes registers the page at / (exactly) and its files at /ui/{file}.
func (s *Server) dashboardRoutes() {
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { serveUI(w, r, "index.html") })
	s.mux.HandleFunc("GET /ui/{file}", func(w http.ResponseWriter, r *http.Request) {
		if name := r.PathValue("file"); name != "index.html" { // the page's relative links work at / only
			serveUI(w, r, name)
			return
		}
		http.NotFound(w, r)
	})
}

// uiType is the content type of a dashboard file by its extension (not the system's MIME
// table, which differs between machines); "" for any other kind of file.
func uiType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return ""
}

// serveUI writes the embedded file ui/name with the dashboard's security headers, or 404.
func serveUI(w http.ResponseWriter, r *http.Request, name string) {
	ct := uiType(name)
	if ct == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(uiFiles, "ui/"+name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Content-Type", ct)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}
