package client_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

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
