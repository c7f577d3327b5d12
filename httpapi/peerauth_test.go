package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coordd/coordd/httpapi"
)

// TestPeerAuth_AClientSentForwardedByIsIgnoredAndCounted is the finding
// that any client could skip the rate limit by sending
// X-Coordd-Forwarded-By: a node trusts the header only from a node (a
// valid peer signature, or a node certificate under TLS). A client's is
// ignored (the client is limited as any other) and counted.
func TestPeerAuth_AClientSentForwardedByIsIgnoredAndCounted(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "L", &httpapi.Options{RateLimit: 0.01, RateBurst: 2})
	signed := forwardedBy("F", "PUT", "/v1/kv/k")
	stale := forwardedBy("F", "PUT", "/v1/kv/k")
	stale[3] = strings.Replace(stale[3], stale[3][3:13], "1000000000", 1) // 2001: long out of the window
	forged := append([]string(nil), signed...)
	forged[3] = forged[3][:len(forged[3])-4] + "0000"
	for name, hdr := range map[string][]string{
		"a bare header":                  {"X-Coordd-Forwarded-By", "F"},
		"a forged signature":             forged,
		"a signature of another request": forwardedBy("F", "PUT", "/v1/kv/other"),
		"a signature of another node":    append([]string{"X-Coordd-Forwarded-By", "G"}, signed[2:]...),
		"a stale signature":              stale,
	} {
		t.Run(name, func(t *testing.T) {
			before := metricValue(t, ta, "coordd_http_untrusted_forwarded_total")
			for i := range 4 { // twice the burst
				r := ta.do(t, "PUT", "/v1/kv/k", "v", hdr...)
				if r.status == http.StatusTooManyRequests {
					if got := metricValue(t, ta, "coordd_http_untrusted_forwarded_total"); got < before+1 {
						t.Fatalf("untrusted header not counted: %g, before %g", got, before)
					}
					return
				}
				if i == 3 {
					t.Fatalf("%d requests with %s were not rate limited", i+1, name)
				}
			}
		})
	}
	// A node's forward is not limited again.
	for i := range 10 {
		if r := ta.do(t, "PUT", "/v1/kv/k", "v", forwardedBy("F", "PUT", "/v1/kv/k")...); r.status != http.StatusOK {
			t.Fatalf("signed forward %d: %d %s", i, r.status, r.body)
		}
	}
}

// TestPeerAuth_UnderTLSANodeCertificateSpeaksForTheNode: over a connection
// whose verified client certificate is valid for server use (coordd certs'
// node certificates), the header is trusted without a signature; a client
// certificate (client use only) does not make it trusted.
func TestPeerAuth_UnderTLSANodeCertificateSpeaksForTheNode(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "L", &httpapi.Options{RateLimit: 0.01, RateBurst: 1})
	cert := func(usage ...x509.ExtKeyUsage) *x509.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "n"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: usage}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	send := func(c *x509.Certificate) int {
		req := httptest.NewRequest("PUT", "/v1/kv/k", strings.NewReader("v"))
		req.Header.Set("X-Coordd-Forwarded-By", "F")
		req.TLS = &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{c},
			VerifiedChains: [][]*x509.Certificate{{c}}}
		w := httptest.NewRecorder()
		ta.api.ServeHTTP(w, req)
		return w.Code
	}
	node := cert(x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	for i := range 5 {
		if code := send(node); code != http.StatusOK {
			t.Fatalf("forward %d with a node certificate: %d", i, code)
		}
	}
	client := cert(x509.ExtKeyUsageClientAuth)
	codes := []int{send(client), send(client), send(client)}
	if codes[2] != http.StatusTooManyRequests {
		t.Fatalf("a client certificate with X-Coordd-Forwarded-By was not limited: %v", codes)
	}
}
