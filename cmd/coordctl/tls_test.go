package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/internal/tlsutil"
	"github.com/coordd/coordd/server"
)

// TestCoordctl_TLS runs coordctl against a one-node TLS cluster that
// requires client certificates on its HTTP API.
func TestCoordctl_TLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := tlsutil.GenerateCluster(tlsutil.ClusterOptions{Dir: dir, Nodes: []string{"n1"}, Clients: []string{"client"}}); err != nil {
		t.Fatal(err)
	}
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	srv, err := server.Start(context.Background(), server.Config{
		NodeID: "n1", DataDir: filepath.Join(t.TempDir(), "n1"), RaftListener: rl, HTTPListener: hl,
		Bootstrap:   []server.Peer{{ID: "n1", RaftAddr: rl.Addr().String(), HTTPAddr: hl.Addr().String()}},
		TLSCertFile: filepath.Join(dir, "n1.pem"), TLSKeyFile: filepath.Join(dir, "n1-key.pem"), TLSCAFile: filepath.Join(dir, "ca.pem"),
		TLSRequireClientCert: true,
		Logger:               hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: &logs}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	testcluster.Poll(t, 20*time.Second, func() error { return srv.Ready() })

	ep := hl.Addr().String()
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	ctl := func(args ...string) result {
		var out, errb syncBuffer
		code := run(context.Background(), append([]string{"-endpoints", ep, "-timeout", "5s"}, args...), strings.NewReader(""), &out, &errb)
		return result{code, out.String(), errb.String()}
	}

	if r := ctl("-ca", ca, "-cert", cert, "-key", key, "kv", "put", "k", "v"); r.code != exitOK {
		t.Fatalf("put with client certificate: %v", r)
	}
	if r := ctl("-ca", ca, "-cert", cert, "-key", key, "status"); r.code != exitOK || !strings.Contains(r.stdout, "https://") {
		t.Fatalf("status: %v", r)
	}
	// The environment works like the flags.
	t.Setenv("COORDD_CA", ca)
	t.Setenv("COORDD_CERT", cert)
	t.Setenv("COORDD_KEY", key)
	if r := ctl("kv", "get", "k", "-raw"); r.code != exitOK || r.stdout != "v" {
		t.Fatalf("get with env: %v", r)
	}
	// Each mismatch fails at once (not after -timeout) and says what to
	// change: no client certificate where the node requires one,
	// plaintext to a TLS node, https without the cluster's CA.
	otherCA := filepath.Join(t.TempDir(), "other")
	if _, err := tlsutil.GenerateCluster(tlsutil.ClusterOptions{Dir: otherCA, Clients: []string{"client"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		hint string
	}{
		{[]string{"-cert", "", "-key", "", "kv", "get", "k"}, "hint: the node wants a client certificate signed by its CA: give -cert FILE -key FILE"},
		{[]string{"-ca", "", "-cert", "", "-key", "", "kv", "get", "k"}, "hint: the node speaks https: give -ca FILE"},
		{[]string{"-ca", "", "-cert", "", "-key", "", "status"}, "hint: the node speaks https: give -ca FILE"},
		{[]string{"-endpoints", "https://" + ep, "-ca", "", "-cert", "", "-key", "", "kv", "put", "k", "v"}, "hint: the node's certificate is not signed by a CA this client trusts: give -ca FILE"},
		{[]string{"-ca", filepath.Join(otherCA, "ca.pem"), "kv", "get", "k"}, "hint: the node's certificate is not signed by a CA this client trusts"},
	} {
		start := time.Now()
		r := ctl(append([]string{"-timeout", "30s"}, tc.args...)...)
		if r.code != exitFailed || strings.Count(r.stderr, tc.hint) != 1 || strings.Contains(r.stderr, "outcome unknown") {
			t.Errorf("coordctl %q: want exit 1 and %q once on stderr, got %v", tc.args, tc.hint, r)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("coordctl %q took %s (the deadline was 30 s): a mismatch should fail at once", tc.args, took)
		}
	}
	if r := ctl("-cert", cert, "-key", "", "kv", "get", "k"); r.code != exitUsage {
		t.Fatalf("certificate without key: %v", r)
	}
}
