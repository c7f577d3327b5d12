package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/internal/tlsutil"
)

func TestTLSConfig_LoadsCAAndClientCertificate(t *testing.T) {
	dir := t.TempDir()
	if _, err := tlsutil.GenerateCluster(tlsutil.ClusterOptions{Dir: dir, Clients: []string{"client"}}); err != nil {
		t.Fatal(err)
	}
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	cfg, err := client.TLSConfig(ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs == nil || len(cfg.Certificates) != 1 {
		t.Fatalf("config = %+v", cfg)
	}
	if cfg, err = client.TLSConfig(ca, "", ""); err != nil || len(cfg.Certificates) != 0 {
		t.Fatalf("CA only: %v", err)
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][3]string{{bad, "", ""}, {ca, cert, ""}, {ca, cert, ca}, {filepath.Join(dir, "none.pem"), "", ""}} {
		if _, err := client.TLSConfig(args[0], args[1], args[2]); !errors.Is(err, client.ErrBadConfig) {
			t.Errorf("%q: err = %v, want ErrBadConfig", args, err)
		}
	}
}

// TestTLSMismatch_FailsFastAndSaysWhy: a node whose certificate the client
// does not trust will not become trusted by retrying, and a failed
// handshake sent nothing. The call used to retry until its deadline and
// end as "no node reachable" (a write: "outcome unknown"), which hid the
// reason.
func TestTLSMismatch_FailsFastAndSaysWhy(t *testing.T) {
	var eps []string
	for range 2 {
		ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Errorf("a request reached the server: %s %s", r.Method, r.URL)
		}))
		defer ts.Close()
		eps = append(eps, ts.URL)
	}
	c, err := client.New(context.Background(), client.Config{Endpoints: eps, RetryTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Put(context.Background(), "k", []byte("v"))
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) || errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("Put: %v, want the certificate verification error (not outcome unknown)", err)
	}
	// Every endpoint was tried once or twice: far below the 30 s deadline.
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Put failed after %s", took)
	}
}
