package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// genDir writes a CA, node n1 and client "client" into a fresh directory.
func genDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := GenerateCluster(ClusterOptions{Dir: dir, Nodes: []string{"n1"}, Clients: []string{"client"}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func nodeFiles(dir, name string) Files {
	return Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(dir, CAFile)}
}

func TestGenerateCluster_WritesCAAndCertsWithPrivateKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	res, err := GenerateCluster(ClusterOptions{Dir: dir, Nodes: []string{"n1", "n2"}, Hosts: []string{"db.example", "10.1.2.3"}, Clients: []string{"client"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.CAReused || len(res.Written) != 8 {
		t.Fatalf("result = %+v", res)
	}
	for _, f := range res.Written {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if strings.HasSuffix(f, "-key.pem") {
			want = 0o600
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", f, st.Mode().Perm(), want)
		}
	}
	r, err := NewReloader(nodeFiles(dir, "n2"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := r.Leaf()
	if leaf.Subject.CommonName != "n2" {
		t.Errorf("CN = %q", leaf.Subject.CommonName)
	}
	for _, h := range []string{"n2", "db.example", "10.1.2.3"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("node certificate not valid for %s: %v", h, err)
		}
	}
	if err := leaf.VerifyHostname("localhost"); err == nil {
		t.Error("explicit hosts should replace the defaults")
	}
	if !hasEKU(leaf, x509.ExtKeyUsageServerAuth) || !hasEKU(leaf, x509.ExtKeyUsageClientAuth) {
		t.Errorf("node EKUs = %v", leaf.ExtKeyUsage)
	}
	cr, err := NewReloader(nodeFiles(dir, "client"))
	if err != nil {
		t.Fatal(err)
	}
	if hasEKU(cr.Leaf(), x509.ExtKeyUsageServerAuth) || !hasEKU(cr.Leaf(), x509.ExtKeyUsageClientAuth) {
		t.Errorf("client EKUs = %v", cr.Leaf().ExtKeyUsage)
	}
}

func hasEKU(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, e := range c.ExtKeyUsage {
		if e == u {
			return true
		}
	}
	return false
}

func TestGenerateCluster_ReusesAnExistingCAUnlessNewCA(t *testing.T) {
	dir := genDir(t)
	ca0, _ := os.ReadFile(filepath.Join(dir, CAFile))
	res, err := GenerateCluster(ClusterOptions{Dir: dir, Nodes: []string{"n4"}})
	if err != nil {
		t.Fatal(err)
	}
	ca1, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if !res.CAReused || string(ca0) != string(ca1) {
		t.Fatal("the existing CA was not reused")
	}
	// n4's certificate chains to the old CA: n1 and n4 trust each other.
	if _, err := NewReloader(nodeFiles(dir, "n4")); err != nil {
		t.Fatal(err)
	}
	res, err = GenerateCluster(ClusterOptions{Dir: dir, Nodes: []string{"n1"}, NewCA: true})
	if err != nil {
		t.Fatal(err)
	}
	ca2, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if res.CAReused || string(ca2) == string(ca0) {
		t.Fatal("NewCA did not replace the CA")
	}
	if _, err := NewReloader(nodeFiles(dir, "n4")); err == nil {
		t.Fatal("n4's certificate from the old CA verified against the new CA")
	}
	if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateCluster(ClusterOptions{Dir: dir, Nodes: []string{"n5"}}); err == nil || !strings.Contains(err.Error(), CAKeyFile) {
		t.Fatalf("CA without its key: err = %v", err)
	}
}

func TestGenerateCluster_RejectsBadNames(t *testing.T) {
	for _, names := range [][]string{{"../x"}, {"ca"}, {"n1", "n1"}, {"a-key"}, {""}} {
		if _, err := GenerateCluster(ClusterOptions{Dir: t.TempDir(), Nodes: names}); err == nil {
			t.Errorf("%q: no error", names)
		}
	}
}

func TestNewReloader_ErrorsNameTheFile(t *testing.T) {
	dir := genDir(t)
	other := genDir(t)
	f := nodeFiles(dir, "n1")
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not pem\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		files Files
		want  string
	}{
		{"missing cert", Files{Cert: filepath.Join(dir, "nope.pem"), Key: f.Key, CA: f.CA}, "nope.pem"},
		{"missing key", Files{Cert: f.Cert, Key: filepath.Join(dir, "nokey.pem"), CA: f.CA}, "nokey.pem"},
		{"missing CA", Files{Cert: f.Cert, Key: f.Key, CA: filepath.Join(dir, "noca.pem")}, "noca.pem"},
		{"key of another cert", Files{Cert: f.Cert, Key: filepath.Join(dir, "client-key.pem"), CA: f.CA}, "client-key.pem"},
		{"CA file without certificates", Files{Cert: f.Cert, Key: f.Key, CA: empty}, "empty.pem"},
		{"cert of another CA", Files{Cert: f.Cert, Key: f.Key, CA: filepath.Join(other, CAFile)}, "does not verify"},
		{"leaf as CA", Files{Cert: f.Cert, Key: f.Key, CA: f.Cert}, "not a CA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReloader(tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := NewReloader(Files{Cert: f.Cert, Key: f.Key}); err == nil {
		t.Error("no CA file: no error")
	}
}

// serve accepts TLS connections with cfg and answers each with "ok" after
// a successful handshake.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				_, _ = c.Write([]byte("ok"))
			}()
		}
	}()
	return ln.Addr().String()
}

// talk dials with cfg and reads the answer.
func talk(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != "ok" {
		return errors.New("no answer")
	}
	return nil
}

func TestReloader_MutualTLS(t *testing.T) {
	dir := genDir(t)
	if _, err := GenerateCluster(ClusterOptions{Dir: dir, Nodes: []string{"n2"}}); err != nil {
		t.Fatal(err)
	}
	n1, err := NewReloader(nodeFiles(dir, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	n2, _ := NewReloader(nodeFiles(dir, "n2"))
	cl, _ := NewReloader(nodeFiles(dir, "client"))
	stranger, _ := NewReloader(nodeFiles(genDir(t), "n1"))

	raft := serve(t, n1.ServerConfig(ServerOptions{ClientAuth: tls.RequireAndVerifyClientCert, RequireServerEKU: true}))
	if err := talk(raft, n2.ClientConfig("127.0.0.1")); err != nil {
		t.Fatalf("node to node: %v", err)
	}
	if err := talk(raft, n2.ClientConfig("localhost")); err != nil {
		t.Fatalf("node to node by name: %v", err)
	}
	if err := talk(raft, n2.ClientConfig("n1")); err != nil {
		t.Fatalf("node to node by node id: %v", err)
	}
	if err := talk(raft, n2.ClientConfig("elsewhere.example")); err == nil {
		t.Error("a certificate not valid for the dialled name was accepted")
	}
	if err := talk(raft, cl.ClientConfig("127.0.0.1")); err == nil {
		t.Error("a client-only certificate was accepted where node certificates are required")
	}
	if err := talk(raft, stranger.ClientConfig("127.0.0.1")); err == nil {
		t.Error("a node of another CA was accepted")
	}
	noCert := n2.ClientConfig("127.0.0.1")
	noCert.Certificates = nil
	if err := talk(raft, noCert); err == nil {
		t.Error("a client without a certificate was accepted")
	}

	api := serve(t, n1.ServerConfig(ServerOptions{ClientAuth: tls.VerifyClientCertIfGiven}))
	if err := talk(api, noCert); err != nil {
		t.Errorf("optional client cert, none given: %v", err)
	}
	if err := talk(api, cl.ClientConfig("127.0.0.1")); err != nil {
		t.Errorf("optional client cert, client cert given: %v", err)
	}
	if err := talk(api, stranger.ClientConfig("127.0.0.1")); err == nil {
		t.Error("a client certificate of another CA was accepted")
	}
}

func TestReloader_ReloadSwapsAndAFailedReloadKeepsTheOldSet(t *testing.T) {
	dir := genDir(t)
	r, err := NewReloader(nodeFiles(dir, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	old := r.Leaf()
	addr := serve(t, r.ServerConfig(ServerOptions{ClientAuth: tls.RequireAndVerifyClientCert}))
	oldClient, _ := NewReloader(nodeFiles(dir, "client"))
	if err := talk(addr, oldClient.ClientConfig("127.0.0.1")); err != nil {
		t.Fatal(err)
	}

	// A broken key file: the reload fails and the old set stays.
	if err := os.WriteFile(filepath.Join(dir, "n1-key.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "n1-key.pem") {
		t.Fatalf("reload of a broken key: err = %v", err)
	}
	if !r.Leaf().Equal(old) {
		t.Fatal("a failed reload replaced the certificate")
	}
	if err := talk(addr, oldClient.ClientConfig("127.0.0.1")); err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}

	// A new CA for everything: new connections use it at once.
	if _, err := GenerateCluster(ClusterOptions{Dir: dir, Nodes: []string{"n1"}, Clients: []string{"client"}, NewCA: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if r.Leaf().Equal(old) {
		t.Fatal("reload kept the old certificate")
	}
	if err := talk(addr, oldClient.ClientConfig("127.0.0.1")); err == nil {
		t.Fatal("a client of the old CA was accepted after the reload")
	}
	newClient, _ := NewReloader(nodeFiles(dir, "client"))
	cfg := newClient.ClientConfig("127.0.0.1")
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("client of the new CA: %v", err)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0]; !got.Equal(r.Leaf()) {
		t.Fatal("the server does not present the reloaded certificate")
	}
}

func TestReloader_DialHandshakesWithinTimeout(t *testing.T) {
	dir := genDir(t)
	r, _ := NewReloader(nodeFiles(dir, "n1"))
	// A listener that accepts and never speaks TLS.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	_, err = r.Dial(context.Background(), "tcp", ln.Addr().String(), 300*time.Millisecond)
	if err == nil {
		t.Fatal("dial to a silent peer succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("dial took %s", d)
	}
}

func TestReloader_CABundleTrustsEitherCA(t *testing.T) {
	oldDir, newDir := genDir(t), genDir(t)
	oldCA, _ := os.ReadFile(filepath.Join(oldDir, CAFile))
	newCA, _ := os.ReadFile(filepath.Join(newDir, CAFile))
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(bundle, append(append([]byte(nil), oldCA...), newCA...), 0o644); err != nil {
		t.Fatal(err)
	}
	f := nodeFiles(oldDir, "n1")
	f.CA = bundle
	r, err := NewReloader(f)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.CAs()); n != 2 {
		t.Fatalf("%d CAs loaded, want 2", n)
	}
	addr := serve(t, r.ServerConfig(ServerOptions{ClientAuth: tls.RequireAndVerifyClientCert}))
	for _, dir := range []string{oldDir, newDir} {
		c, _ := NewReloader(nodeFiles(dir, "client"))
		cfg := c.ClientConfig("127.0.0.1")
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AppendCertsFromPEM(oldCA)
		if err := talk(addr, cfg); err != nil {
			t.Errorf("client of %s: %v", dir, err)
		}
	}
}
