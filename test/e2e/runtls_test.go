package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Test_E2E_RunTLS_SecureClusterFromTheREADME runs what `make run-tls` runs
// (scripts/run-cluster.sh with TLS=1 ACL=1) on free loopback ports and
// checks the promises of docs/operations.md: https only, mutual TLS between nodes, a
// bootstrapped management token in management.token, and no request
// served without a token.
func Test_E2E_RunTLS_SecureClusterFromTheREADME(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("skipped: scripts/run-cluster.sh waits for readiness with curl, which is not installed")
	}
	dir := t.TempDir()
	ctl := filepath.Join(filepath.Dir(coorddBin), "coordctl")
	if _, err := os.Stat(ctl); err != nil {
		build := exec.Command("go", "build", "-o", ctl, "github.com/coordd/coordd/cmd/coordctl")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building coordctl: %v\n%s", err, out)
		}
	}
	var http3, raft3 []string
	for range 3 {
		http3 = append(http3, strings.TrimPrefix(freePort(t), "127.0.0.1:"))
		raft3 = append(raft3, strings.TrimPrefix(freePort(t), "127.0.0.1:"))
	}
	data := filepath.Join(dir, "data-tls")
	cmd := exec.Command("bash", "../../scripts/run-cluster.sh")
	cmd.Env = append(os.Environ(), "COORDD="+coorddBin, "COORDCTL="+ctl, "TLS=1", "ACL=1", "DATA_DIR="+data,
		"HTTP_PORTS="+strings.Join(http3, " "), "RAFT_PORTS="+strings.Join(raft3, " "), "MAX_RESTARTS=0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	ready := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Ctrl-C stops") {
				ready <- all.String()
			}
		}
		ready <- all.String()
	}()
	var banner string
	select {
	case banner = <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("run-cluster.sh did not report a running cluster within 60 s")
	}
	if !strings.Contains(banner, "running with TLS") || !strings.Contains(banner, "ACLs bootstrapped") {
		t.Fatalf("unexpected banner:\n%s", banner)
	}
	token, err := os.ReadFile(filepath.Join(data, "management.token"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(data, "management.token")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("management.token has mode %v", fi.Mode().Perm())
	}
	caPEM, err := os.ReadFile(filepath.Join(data, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	do := func(method, url, tok, body string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	secret := strings.TrimSpace(string(token))
	for _, p := range http3 {
		base := "https://127.0.0.1:" + p
		if st := do("PUT", base+"/v1/kv/readme", "", "x"); st != http.StatusUnauthorized {
			t.Errorf("%s: write without a token: %d", p, st)
		}
		if st := do("PUT", base+"/v1/kv/readme", "cdt_not-a-token-0000000000", "x"); st != http.StatusUnauthorized {
			t.Errorf("%s: write with a wrong token: %d", p, st)
		}
		if st := do("PUT", base+"/v1/kv/readme", secret, "x"); st != http.StatusOK {
			t.Errorf("%s: write with the management token: %d", p, st)
		}
		resp, err := httpc.Get("http://127.0.0.1:" + p + "/v1/status")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("%s: plaintext request answered %d", p, resp.StatusCode)
			}
		}
	}
	// coordctl as docs/coordctl.md shows it.
	c := exec.Command(ctl, "-endpoints", "https://127.0.0.1:"+http3[0], "-ca", filepath.Join(data, "tls", "ca.pem"),
		"-token-file", filepath.Join(data, "management.token"), "kv", "get", "readme", "-raw")
	if b, err := c.CombinedOutput(); err != nil || strings.TrimSpace(string(b)) != "x" {
		t.Fatalf("coordctl kv get: %v: %s", err, b)
	}
	c = exec.Command(ctl, "-endpoints", "https://127.0.0.1:"+http3[0], "-ca", filepath.Join(data, "tls", "ca.pem"), "kv", "get", "readme")
	if b, err := c.CombinedOutput(); err == nil {
		t.Fatalf("coordctl without a token succeeded: %s", b)
	}
}
