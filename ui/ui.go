// Package ui serves coordd's read-only web console at /ui/ on every node.
//
// The console is three static files embedded in the binary (no CDN, no
// external fonts or scripts: it works on an offline machine). Everything it
// shows it reads in the browser through the public HTTP API — /v1/status of
// every member, /v1/elections, /v1/locks, /v1/leases, the elections' Server-
// Sent Events streams and /v1/acl/token/self — so the page is also a worked
// example of the API. The static files carry no cluster data and are served
// without a token; every data call carries the token the user typed (kept
// in the tab's session storage) and is checked by the API like any other.
//
// When the node that served the page dies, the page keeps reading from the
// other members. Those are other origins (another host or port), so Wrap
// also answers the browser's CORS checks: read-only requests (GET, HEAD and
// their preflight) from the origin of a cluster member's advertised HTTP
// address, or from a loopback origin, may read the answer. (A page with a
// loopback origin was served by a process of the browser's own machine,
// which can reach the API directly anyway; the loopback rule is what lets
// the console of a container whose port is published on localhost reach
// the other containers' published ports.) Nothing else is allowed across
// origins, so another web site cannot read the cluster through a visitor's
// browser.
package ui

import (
	"embed"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

//go:embed assets
var assets embed.FS

// Prefix is the path the console is served under.
const Prefix = "/ui/"

// contentSecurityPolicy lets the page run only its own script and style
// and talk (connect-src) to any member over http or https.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// exposedHeaders are the API's answer headers a cross-origin page may read.
var exposedHeaders = strings.Join([]string{"X-Coordd-Served-By", "X-Coordd-Index", "X-Coordd-Known-Leader",
	"X-Coordd-Last-Contact", "X-Coordd-Consistency", "X-Coordd-Cluster-Id", "Retry-After"}, ", ")

// Options configures Wrap.
type Options struct {
	// TLS is true when the node serves HTTPS: member origins are then
	// https://host:port.
	TLS bool
	// Members returns the advertised HTTP addresses (host:port) of the
	// cluster's members. It is called only for cross-origin requests.
	Members func() []string
}

// Wrap serves the console under /ui/ (and sends a browser asking for / to
// it) and otherwise hands requests to api, adding the CORS headers that let
// the console of another member read them.
func Wrap(api http.Handler, opts Options) http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic("ui: embedded assets: " + err.Error()) // cannot happen: the directory is embedded
	}
	files := http.StripPrefix(Prefix, http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, Prefix):
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "the console is read-only: GET only", http.StatusMethodNotAllowed)
				return
			}
			h := w.Header()
			h.Set("Content-Security-Policy", contentSecurityPolicy)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("Cache-Control", "no-cache")
			files.ServeHTTP(w, r)
			return
		case r.URL.Path == "/ui" || (r.URL.Path == "/" && r.Method == http.MethodGet &&
			strings.Contains(r.Header.Get("Accept"), "text/html")):
			http.Redirect(w, r, Prefix, http.StatusFound)
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			h := w.Header()
			h.Add("Vary", "Origin")
			if allowedOrigin(origin, opts) {
				if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
					preflight(w, r, origin)
					return
				}
				if r.Method == http.MethodGet || r.Method == http.MethodHead {
					h.Set("Access-Control-Allow-Origin", origin)
					h.Set("Access-Control-Expose-Headers", exposedHeaders)
				}
			}
		}
		api.ServeHTTP(w, r)
	})
}

// preflight answers a CORS preflight: only GET and HEAD, with the headers
// the console sends.
func preflight(w http.ResponseWriter, r *http.Request, origin string) {
	switch r.Header.Get("Access-Control-Request-Method") {
	case http.MethodGet, http.MethodHead:
	default:
		// No CORS headers: the browser refuses the request.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", "GET, HEAD")
	h.Set("Access-Control-Allow-Headers", "Authorization, Accept, Last-Event-ID")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// allowedOrigin reports whether a page of origin may read this node's
// answers: it is a member's advertised HTTP address, or a loopback address
// (the console of a node published on localhost, as in deploy/compose.yaml),
// with this node's scheme.
func allowedOrigin(origin string, opts Options) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" {
		return false
	}
	scheme := "http"
	if opts.TLS {
		scheme = "https"
	}
	if u.Scheme != scheme {
		return false
	}
	if isLoopback(u.Hostname()) {
		return true
	}
	if opts.Members == nil {
		return false
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[scheme])
	}
	return slices.ContainsFunc(opts.Members(), func(addr string) bool { return strings.EqualFold(addr, host) })
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
