package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coordd/coordd/api"
)

// Internal headers are trusted only from nodes. A request that carries
// X-Coordd-Forwarded-By skips the rate limit (it was limited where it
// entered the cluster) and is never forwarded again; a client could send
// the header to skip the limit. So a node trusts it only when the request
// comes from another node:
//
//   - under TLS, over a connection whose client certificate is a node
//     certificate of the cluster's CA (valid for server use: coordd certs
//     issues client certificates without it);
//   - in any case, when it carries X-Coordd-Peer-Auth, an HMAC of the
//     request line, the forwarding node and the time, keyed with the
//     cluster's peer secret (replicated: Node.PeerSecret, set by the
//     first leader), fresh within peerAuthWindow.
//
// Anything else loses the header before a handler sees it (the request is
// an ordinary client request) and is counted in
// coordd_http_untrusted_forwarded_total.

// peerAuthWindow bounds the age of a peer signature (and the clock skew
// between nodes it tolerates).
const peerAuthWindow = 5 * time.Minute

const peerAuthVersion = "v1"

// peerMAC is the signature of a forwarded request.
func peerMAC(secret []byte, method, uri, from string, unix int64) string {
	m := hmac.New(sha256.New, secret)
	for _, f := range []string{peerAuthVersion, method, uri, from, strconv.FormatInt(unix, 10)} {
		m.Write([]byte(f))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// signForward marks req, about to be forwarded, as sent by this node.
func (a *API) signForward(req *http.Request) {
	req.Header.Set(api.HeaderForwardedBy, a.node.ID())
	req.Header.Del(api.HeaderPeerAuth)
	secret := a.node.PeerSecret()
	if secret == nil {
		return // under TLS the node certificate speaks for it; else untrusted until the leader sets one
	}
	now := time.Now().Unix()
	req.Header.Set(api.HeaderPeerAuth, peerAuthVersion+" "+strconv.FormatInt(now, 10)+" "+
		peerMAC(secret, req.Method, req.URL.RequestURI(), a.node.ID(), now))
}

// fromPeer reports whether r was sent by a node of this cluster.
func (a *API) fromPeer(r *http.Request) bool {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && isNodeCert(r.TLS.VerifiedChains[0][0]) {
		return true
	}
	secret := a.node.PeerSecret()
	f := strings.Fields(r.Header.Get(api.HeaderPeerAuth))
	if secret == nil || len(f) != 3 || f[0] != peerAuthVersion {
		return false
	}
	unix, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return false
	}
	if age := time.Since(time.Unix(unix, 0)); age > peerAuthWindow || age < -peerAuthWindow {
		return false
	}
	want := peerMAC(secret, r.Method, r.URL.RequestURI(), r.Header.Get(api.HeaderForwardedBy), unix)
	return hmac.Equal([]byte(f[2]), []byte(want))
}

// isNodeCert reports whether a verified client certificate is a node's:
// valid for server use, as coordd certs issues node certificates.
func isNodeCert(c *x509.Certificate) bool {
	return len(c.ExtKeyUsage) == 0 || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) ||
		slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// trustForwarded removes the internal headers of a request that did not
// come from a node (counting it), so that every handler treats it as the
// client request it is. It runs before anything reads them (admit).
func (a *API) trustForwarded(r *http.Request) {
	if r.Header.Get(api.HeaderForwardedBy) == "" {
		r.Header.Del(api.HeaderPeerAuth)
		return
	}
	if a.fromPeer(r) {
		return
	}
	r.Header.Del(api.HeaderForwardedBy)
	r.Header.Del(api.HeaderPeerAuth)
	a.limits.untrusted.Inc()
}

func newUntrustedCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "coordd_http_untrusted_forwarded_total",
		Help: "Requests that carried X-Coordd-Forwarded-By without coming from a node of this cluster (the header was ignored).",
	})
}
