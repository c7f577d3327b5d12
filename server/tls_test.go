package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/internal/tlsutil"
	"github.com/coordd/coordd/server"
)

// tlsNode is one in-process node of a TLS cluster.
type tlsNode struct {
	id, raftAddr, httpAddr string
	srv                    *server.Server
	logs                   *tlsLogs
}

func (n *tlsNode) url() string { return "https://" + n.httpAddr }

// tlsLogs is a log sink safe for concurrent writers.
type tlsLogs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *tlsLogs) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *tlsLogs) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// tlsCerts writes a CA, certificates for n1..n<nodes> (and n<nodes+1> for
// a joiner) and a client certificate into a fresh directory.
func tlsCerts(t *testing.T, nodes int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	var ids []string
	for i := range nodes + 1 {
		ids = append(ids, fmt.Sprintf("n%d", i+1))
	}
	if _, err := tlsutil.GenerateCluster(tlsutil.ClusterOptions{Dir: dir, Nodes: ids, Clients: []string{"client"}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func certFiles(dir, name string) tlsutil.Files {
	return tlsutil.Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(dir, tlsutil.CAFile)}
}

// tlsClient is an https client with the named certificate of dir (no
// client certificate if name is "") trusting dir's CA.
func tlsClient(t *testing.T, dir, name string) *http.Client {
	t.Helper()
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS(t, dir, name)}}
}

func clientTLS(t *testing.T, dir, name string) *tls.Config {
	t.Helper()
	who := name
	if who == "" {
		who = "client"
	}
	r, err := tlsutil.NewReloader(certFiles(dir, who))
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.ClientConfig("127.0.0.1")
	if name == "" {
		cfg.Certificates = nil
	}
	return cfg
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func tlsConfigFor(dir string, n *tlsNode, raftLn, httpLn net.Listener) server.Config {
	f := certFiles(dir, n.id)
	return server.Config{
		NodeID: n.id, DataDir: filepath.Join(filepath.Dir(dir), n.id),
		RaftListener: raftLn, HTTPListener: httpLn,
		TLSCertFile: f.Cert, TLSKeyFile: f.Key, TLSCAFile: f.CA,
		Logger:             hclog.New(&hclog.LoggerOptions{Name: n.id, Level: hclog.Debug, Output: n.logs}),
		HeartbeatTimeout:   2 * server.DefaultHeartbeatTimeout,
		ElectionTimeout:    2 * server.DefaultElectionTimeout,
		LeaderLeaseTimeout: server.DefaultLeaderLeaseTimeout,
	}
}

// startTLSCluster starts n bootstrapped TLS nodes with certificates from
// dir, tune adjusting each config, and waits until each is ready.
func startTLSCluster(t *testing.T, dir string, n int, tune func(*server.Config)) []*tlsNode {
	t.Helper()
	var nodes []*tlsNode
	var peers []server.Peer
	var lns [][2]net.Listener
	for i := range n {
		node := &tlsNode{id: fmt.Sprintf("n%d", i+1), logs: &tlsLogs{}}
		rl, hl := listen(t), listen(t)
		node.raftAddr, node.httpAddr = rl.Addr().String(), hl.Addr().String()
		peers = append(peers, server.Peer{ID: node.id, RaftAddr: node.raftAddr, HTTPAddr: node.httpAddr})
		nodes = append(nodes, node)
		lns = append(lns, [2]net.Listener{rl, hl})
	}
	t.Cleanup(func() {
		for _, node := range nodes {
			if node.srv != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = node.srv.Shutdown(ctx)
				cancel()
			}
		}
		if t.Failed() {
			for _, node := range nodes {
				s := node.logs.String()
				if len(s) > 32<<10 {
					s = s[len(s)-32<<10:]
				}
				t.Logf("---- logs of %s ----\n%s", node.id, s)
			}
		}
	})
	for i, node := range nodes {
		cfg := tlsConfigFor(dir, node, lns[i][0], lns[i][1])
		cfg.Bootstrap = peers
		if tune != nil {
			tune(&cfg)
		}
		srv, err := server.Start(context.Background(), cfg)
		if err != nil {
			t.Fatalf("start %s: %v", node.id, err)
		}
		node.srv = srv
	}
	hc := tlsClient(t, dir, "client")
	for _, node := range nodes {
		waitReadyTLS(t, hc, node)
	}
	return nodes
}

func waitReadyTLS(t *testing.T, hc *http.Client, node *tlsNode) {
	t.Helper()
	testcluster.Poll(t, 20*time.Second, func() error {
		resp, err := hc.Get(node.url() + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("%s not ready: %s", node.id, b)
		}
		return nil
	})
}

func tlsLeader(t *testing.T, nodes []*tlsNode) (leader *tlsNode, followers []*tlsNode) {
	t.Helper()
	testcluster.Poll(t, 20*time.Second, func() error {
		leader, followers = nil, nil
		for _, n := range nodes {
			if n.srv.IsLeader() && n.srv.Ready() == nil {
				leader = n
			} else {
				followers = append(followers, n)
			}
		}
		if leader == nil {
			return errors.New("no ready leader")
		}
		return nil
	})
	return leader, followers
}

// do sends one request and returns status and body.
func do(hc *http.Client, method, url, body string) (int, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func putTLS(t *testing.T, hc *http.Client, n *tlsNode, key, value string) {
	t.Helper()
	testcluster.Poll(t, 15*time.Second, func() error {
		st, body, err := do(hc, http.MethodPut, n.url()+"/v1/kv/"+key, value)
		if err != nil {
			return err
		}
		if st != http.StatusOK {
			return fmt.Errorf("PUT via %s: %d %s", n.id, st, body)
		}
		return nil
	})
}

func getTLS(t *testing.T, hc *http.Client, n *tlsNode, key string) string {
	t.Helper()
	st, body, err := do(hc, http.MethodGet, n.url()+"/v1/kv/"+key+"?raw", "")
	if err != nil || st != http.StatusOK {
		t.Fatalf("GET %s via %s: %d %s %v", key, n.id, st, body, err)
	}
	return body
}

func Test_TLS_Cluster_ElectsForwardsOverTLSAndServesTheGoClient(t *testing.T) {
	dir := tlsCerts(t, 3)
	nodes := startTLSCluster(t, dir, 3, nil)
	hc := tlsClient(t, dir, "client")
	leader, followers := tlsLeader(t, nodes)
	if !leader.srv.TLSEnabled() {
		t.Fatal("TLS not enabled")
	}

	// A write sent to a follower is forwarded to the leader over https.
	putTLS(t, hc, followers[0], "greeting", "hello")
	if got := getTLS(t, hc, followers[1], "greeting"); got != "hello" {
		t.Fatalf("read %q", got)
	}
	// No client certificate: the API still answers (access tokens, not
	// certificates, authenticate API users by default).
	if st, body, err := do(tlsClient(t, dir, ""), http.MethodGet, followers[1].url()+"/v1/kv/greeting?raw", ""); err != nil || st != http.StatusOK || body != "hello" {
		t.Fatalf("without a client certificate: %d %q %v", st, body, err)
	}

	// The Go client over https.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var eps []string
	for _, n := range nodes {
		eps = append(eps, n.url())
	}
	c, err := client.New(ctx, client.Config{Endpoints: eps, TLS: clientTLS(t, dir, "client")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, "from-go", []byte("v1")); err != nil {
		t.Fatalf("client put: %v", err)
	}
	kv, err := c.Get(ctx, "from-go")
	if err != nil || string(kv.Value) != "v1" {
		t.Fatalf("client get: %+v %v", kv, err)
	}

	// A node joins through a follower: the join is forwarded to the
	// leader over TLS, and the new node replicates over mutual TLS.
	j := &tlsNode{id: "n4", logs: &tlsLogs{}}
	rl, hl := listen(t), listen(t)
	j.raftAddr, j.httpAddr = rl.Addr().String(), hl.Addr().String()
	cfg := tlsConfigFor(dir, j, rl, hl)
	cfg.Join = followers[0].httpAddr
	cfg.NonVoter = true
	if j.srv, err = server.Start(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = j.srv.Shutdown(ctx)
		if t.Failed() {
			t.Logf("---- logs of n4 ----\n%s", j.logs.String())
		}
	})
	testcluster.Poll(t, 20*time.Second, func() error {
		st, body, err := do(hc, http.MethodGet, j.url()+"/v1/kv/greeting?raw&stale", "")
		if err != nil {
			return err
		}
		if st != http.StatusOK || body != "hello" {
			return fmt.Errorf("joined node: %d %s", st, body)
		}
		return nil
	})
}

func Test_TLS_PlaintextAndForeignConnectionsAreRefused(t *testing.T) {
	dir := tlsCerts(t, 3)
	nodes := startTLSCluster(t, dir, 3, nil)
	hc := tlsClient(t, dir, "client")
	_, followers := tlsLeader(t, nodes)
	target := followers[0]

	t.Run("plaintext HTTP", func(t *testing.T) {
		plain := &http.Client{Timeout: 5 * time.Second}
		st, body, err := do(plain, http.MethodGet, "http://"+target.httpAddr+"/v1/status", "")
		if err == nil && (st != http.StatusBadRequest || strings.Contains(body, `"leader"`)) {
			t.Fatalf("plaintext request answered: %d %s", st, body)
		}
		st, body, err = do(plain, http.MethodPut, "http://"+target.httpAddr+"/v1/kv/plain", "x")
		if err == nil && st == http.StatusOK {
			t.Fatalf("plaintext write accepted: %s", body)
		}
	})
	t.Run("https with a certificate of another CA", func(t *testing.T) {
		other := tlsCerts(t, 1)
		cfg := clientTLS(t, other, "client")
		cfg.RootCAs = clientTLS(t, dir, "client").RootCAs // trusts the server, but is not trusted
		hcOther := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		if st, body, err := do(hcOther, http.MethodGet, target.url()+"/v1/status", ""); err == nil {
			t.Fatalf("foreign client certificate accepted: %d %s", st, body)
		}
	})
	t.Run("https trusting another CA", func(t *testing.T) {
		other := tlsCerts(t, 1)
		hcOther := tlsClient(t, other, "client")
		if st, body, err := do(hcOther, http.MethodGet, target.url()+"/v1/status", ""); err == nil {
			t.Fatalf("server certificate verified against a foreign CA: %d %s", st, body)
		}
	})

	// expectRefused dials the Raft port, runs speak, and expects the node
	// to close the connection.
	expectRefused := func(t *testing.T, speak func(net.Conn) net.Conn) {
		t.Helper()
		raw, err := net.DialTimeout("tcp", target.raftAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		c := speak(raw)
		if c == nil {
			return
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err == nil {
			t.Fatalf("the node answered %d bytes: %q", n, buf[:n])
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the node kept the connection open: %v", err)
		}
	}
	t.Run("plaintext raft", func(t *testing.T) {
		expectRefused(t, func(c net.Conn) net.Conn {
			// A Raft RPC type byte and msgpack, as hashicorp/raft sends.
			_, _ = c.Write([]byte{0, 0x85, 0xa4, 'T', 'e', 'r', 'm', 0x01})
			return c
		})
	})
	t.Run("raw tcp that says nothing is closed after the handshake deadline", func(t *testing.T) {
		if testing.Short() {
			t.Skip("waits for the handshake timeout")
		}
		expectRefused(t, func(c net.Conn) net.Conn { return c })
	})
	tlsRaft := func(t *testing.T, cfg *tls.Config) {
		t.Helper()
		expectRefused(t, func(raw net.Conn) net.Conn {
			c := tls.Client(raw, cfg)
			if err := c.Handshake(); err != nil {
				return nil // refused during the handshake
			}
			return c // TLS 1.3: the server's verdict on our certificate comes with the first read
		})
	}
	t.Run("raft with a node certificate of another CA", func(t *testing.T) {
		other := tlsCerts(t, 1)
		cfg := clientTLS(t, other, "n1")
		cfg.RootCAs = clientTLS(t, dir, "client").RootCAs
		tlsRaft(t, cfg)
	})
	t.Run("raft with a client-only certificate of the cluster CA", func(t *testing.T) {
		tlsRaft(t, clientTLS(t, dir, "client"))
	})
	t.Run("raft without a client certificate", func(t *testing.T) {
		tlsRaft(t, clientTLS(t, dir, ""))
	})

	logs := target.logs.String()
	if !strings.Contains(logs, "refused raft connection") {
		t.Errorf("the node did not log the refused Raft connections")
	}
	// The cluster is unaffected.
	putTLS(t, hc, followers[1], "after", "ok")
	for _, n := range nodes {
		if got := getTLS(t, hc, n, "after"); got != "ok" {
			t.Fatalf("%s: %q", n.id, got)
		}
	}
}

func Test_TLS_RequireClientCert_RefusesHTTPSWithoutOne(t *testing.T) {
	dir := tlsCerts(t, 1)
	nodes := startTLSCluster(t, dir, 1, func(c *server.Config) { c.TLSRequireClientCert = true })
	if st, body, err := do(tlsClient(t, dir, ""), http.MethodGet, nodes[0].url()+"/v1/status", ""); err == nil {
		t.Fatalf("https without a client certificate answered: %d %s", st, body)
	}
	putTLS(t, tlsClient(t, dir, "client"), nodes[0], "k", "v")
}

func Test_TLS_ReloadTLS_ServesTheNewCertificatesAndKeepsTheOldOnError(t *testing.T) {
	dir := tlsCerts(t, 3)
	nodes := startTLSCluster(t, dir, 3, nil)
	_, followers := tlsLeader(t, nodes)

	served := func(n *tlsNode, cfg *tls.Config) (*tls.ConnectionState, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.httpAddr, cfg)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		st := c.ConnectionState()
		return &st, nil
	}
	oldCA := clientTLS(t, dir, "client")

	// A broken CA file: the reload fails, the old certificates stay.
	if err := writeFile(filepath.Join(dir, tlsutil.CAFile), "not a certificate"); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].srv.ReloadTLS(); err == nil || !strings.Contains(err.Error(), tlsutil.CAFile) {
		t.Fatalf("reload with a broken CA file: %v", err)
	}
	if _, err := served(nodes[0], oldCA); err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}

	// A new CA and new certificates for everyone, reloaded on every node.
	if _, err := tlsutil.GenerateCluster(tlsutil.ClusterOptions{Dir: dir, Nodes: []string{"n1", "n2", "n3"}, Clients: []string{"client"}, NewCA: true}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.srv.ReloadTLS(); err != nil {
			t.Fatal(err)
		}
	}
	newCA := clientTLS(t, dir, "client")
	for _, n := range nodes {
		st, err := served(n, newCA)
		if err != nil {
			t.Fatalf("%s with the new CA: %v", n.id, err)
		}
		if cn := st.PeerCertificates[0].Subject.CommonName; cn != n.id {
			t.Fatalf("%s serves %q", n.id, cn)
		}
		if _, err := served(n, oldCA); err == nil {
			t.Fatalf("%s still verifies against the old CA", n.id)
		}
	}
	hc := tlsClient(t, dir, "client")
	putTLS(t, hc, followers[0], "rotated", "yes")
	if got := getTLS(t, hc, followers[1], "rotated"); got != "yes" {
		t.Fatalf("read %q", got)
	}
}

func writeFile(path, s string) error {
	return os.WriteFile(path, []byte(s), 0o644)
}

func Test_TLS_Config_AllThreeFilesOrNone(t *testing.T) {
	dir := tlsCerts(t, 1)
	f := certFiles(dir, "n1")
	base := func() server.Config {
		return server.Config{NodeID: "n1", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: hclog.NewNullLogger()}
	}
	cases := map[string]func(*server.Config){
		"cert only":             func(c *server.Config) { c.TLSCertFile = f.Cert },
		"no CA":                 func(c *server.Config) { c.TLSCertFile, c.TLSKeyFile = f.Cert, f.Key },
		"require without files": func(c *server.Config) { c.TLSRequireClientCert = true },
	}
	for name, tune := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := base()
			tune(&cfg)
			srv, err := server.Start(context.Background(), cfg)
			if err == nil {
				srv.Abort()
				t.Fatal("started")
			}
			if !errors.Is(err, server.ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
	t.Run("missing file is named", func(t *testing.T) {
		cfg := base()
		cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSCAFile = f.Cert, filepath.Join(dir, "missing-key.pem"), f.CA
		srv, err := server.Start(context.Background(), cfg)
		if err == nil {
			srv.Abort()
			t.Fatal("started")
		}
		if !strings.Contains(err.Error(), "missing-key.pem") {
			t.Fatalf("err = %v", err)
		}
	})
}
