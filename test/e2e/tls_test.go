package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tlsFiles is a certificate directory written by `coordd certs`.
type tlsFiles struct{ dir string }

func (f tlsFiles) path(name string) string { return filepath.Join(f.dir, name) }

// certs runs `coordd certs` with args into dir.
func certs(t *testing.T, dir string, args ...string) tlsFiles {
	t.Helper()
	cmd := exec.Command(coorddBin, append([]string{"certs", "-dir", dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("coordd certs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return tlsFiles{dir: dir}
}

// httpsClient trusts the CA of f now (read once) and presents f's client
// certificate.
func (f tlsFiles) httpsClient(t *testing.T) *http.Client {
	t.Helper()
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: f.clientConfig(t)}}
}

func (f tlsFiles) clientConfig(t *testing.T) *tls.Config {
	t.Helper()
	caPEM, err := os.ReadFile(f.path("ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in ca.pem")
	}
	cert, err := tls.LoadX509KeyPair(f.path("client.pem"), f.path("client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// startTLSProcs starts a bootstrapped 3-node cluster of coordd processes
// with certificates from f and waits until each is ready over https.
func startTLSProcs(t *testing.T, f tlsFiles) []*proc {
	t.Helper()
	procs := launchCluster(t, 3, "debug", func(p *proc) []string {
		return []string{"-tls-cert", f.path(p.id + ".pem"), "-tls-key", f.path(p.id + "-key.pem"), "-tls-ca", f.path("ca.pem")}
	})
	hc := f.httpsClient(t)
	for _, p := range procs {
		waitReadyTLS(t, hc, p, 20*time.Second)
	}
	return procs
}

func waitReadyTLS(t *testing.T, hc *http.Client, p *proc, timeout time.Duration) {
	t.Helper()
	waitReadyAt(t, hc, "https://"+p.httpAddr, p, timeout)
}

func tlsLeaderOf(t *testing.T, hc *http.Client, procs []*proc) (leader *proc, followers []*proc) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range procs {
			resp, err := hc.Get("https://" + p.httpAddr + "/v1/status")
			if err != nil {
				continue
			}
			var st status
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && st.State == "Leader" {
				for _, q := range procs {
					if q != p {
						followers = append(followers, q)
					}
				}
				return p, followers
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader found")
	return nil, nil
}

// putTLS writes key=value through p, retrying briefly while there is no
// leader.
func putTLS(t *testing.T, hc *http.Client, p *proc, key, value string) {
	t.Helper()
	putAt(t, hc, "https://"+p.httpAddr, p, key, value)
}

func getRawTLS(hc *http.Client, p *proc, key, query string) (string, error) {
	resp, err := hc.Get("https://" + p.httpAddr + "/v1/kv/" + key + "?raw" + query)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), nil
}

// servedCert is the certificate p's HTTP API presents, verified with cfg.
func servedCert(p *proc, cfg *tls.Config) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", p.httpAddr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func logHas(p *proc, s string) bool {
	b, _ := os.ReadFile(p.logPath)
	return bytes.Contains(b, []byte(s))
}

// Test_E2E_TLS_ClusterRefusesPlaintextAndReloadsCertificatesOnSIGHUP runs
// the TLS setup of docs/operations.md with real processes: certificates from `coordd
// certs`, mutual TLS between nodes, https for clients; plaintext HTTP and
// Raft are refused; SIGHUP with a broken file keeps the old certificates;
// SIGHUP after a rotation to a new CA serves the new ones, and a node
// restarted on them rejoins over mutual TLS.
func Test_E2E_TLS_ClusterRefusesPlaintextAndReloadsCertificatesOnSIGHUP(t *testing.T) {
	f := certs(t, filepath.Join(t.TempDir(), "tls"), "-nodes", "n1,n2,n3", "-hosts", "127.0.0.1,localhost")
	procs := startTLSProcs(t, f)
	hc := f.httpsClient(t)
	_, followers := tlsLeaderOf(t, hc, procs)

	putTLS(t, hc, followers[0], "tls/a", "1")
	if v, err := getRawTLS(hc, followers[1], "tls/a", ""); err != nil || v != "1" {
		t.Fatalf("read through a follower: %q %v", v, err)
	}

	// Plaintext HTTP is refused.
	plain := &http.Client{Timeout: 3 * time.Second}
	if resp, err := plain.Get("http://" + followers[0].httpAddr + "/v1/kv/tls/a?raw"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("plaintext HTTP answered: %s", b)
		}
	}
	// Plaintext Raft is refused: the node closes the connection.
	raw, err := net.DialTimeout("tcp", followers[0].raftAddr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = raw.Write([]byte{0, 0x81, 0xa4, 'T', 'e', 'r', 'm', 0x01})
	if n, err := raw.Read(make([]byte, 16)); err == nil {
		t.Fatalf("the Raft port answered %d bytes in plaintext", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the Raft port kept a plaintext connection open")
	}
	raw.Close()

	// SIGHUP with a broken key: logged, the node keeps running and
	// serving its current certificate.
	target := followers[0]
	keyFile := f.path(target.id + "-key.pem")
	goodKey, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	oldCfg := f.clientConfig(t)
	oldCert, err := servedCert(target, oldCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := target.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return logHas(target, "TLS reload failed") })
	if !target.running() {
		t.Fatal("a bad reload stopped the node")
	}
	if c, err := servedCert(target, oldCfg); err != nil || !c.Equal(oldCert) {
		t.Fatalf("after a failed reload: %v", err)
	}
	if err := os.WriteFile(keyFile, goodKey, 0o600); err != nil {
		t.Fatal(err)
	}

	// Rotate everything to a new CA and SIGHUP every node.
	certs(t, f.dir, "-nodes", "n1,n2,n3", "-hosts", "127.0.0.1,localhost", "-new-ca")
	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	newCfg := f.clientConfig(t)
	for _, p := range procs {
		waitFor(t, 10*time.Second, func() bool {
			c, err := servedCert(p, newCfg)
			return err == nil && c.Subject.CommonName == p.id && !c.Equal(oldCert)
		})
		if _, err := servedCert(p, oldCfg); err == nil {
			t.Fatalf("%s still serves a certificate of the old CA", p.id)
		}
		if !logHas(p, "TLS certificates reloaded") {
			t.Errorf("%s did not log the reload", p.id)
		}
	}
	hc = f.httpsClient(t)
	putTLS(t, hc, followers[1], "tls/b", "2")

	// A node restarted now dials and is dialled with the new certificates
	// only: it catches up over mutual TLS.
	target.term(t, 10*time.Second)
	putTLS(t, hc, followers[1], "tls/c", "3")
	target.start(t)
	waitReadyTLS(t, hc, target, 20*time.Second)
	waitFor(t, 10*time.Second, func() bool {
		v, err := getRawTLS(hc, target, "tls/c", "&stale")
		return err == nil && v == "3"
	})
	for _, p := range procs {
		if !p.running() {
			t.Fatalf("%s is not running", p.id)
		}
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
