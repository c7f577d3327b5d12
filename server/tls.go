package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/internal/tlsutil"
)

// tlsHandshakeTimeout bounds the TLS handshake of an accepted Raft
// connection, and of a dialled one when Raft gives no shorter timeout.
const tlsHandshakeTimeout = 5 * time.Second

// maxPendingHandshakes bounds the accepted Raft connections whose TLS
// handshake is in progress; more are closed at once.
const maxPendingHandshakes = 64

// tlsEnabled reports whether the config turns TLS on.
func (c *Config) tlsEnabled() bool {
	return c.TLSCertFile != "" || c.TLSKeyFile != "" || c.TLSCAFile != ""
}

func (c *Config) validateTLS() error {
	set := 0
	for _, f := range []string{c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile} {
		if f != "" {
			set++
		}
	}
	switch {
	case set != 0 && set != 3:
		return fmt.Errorf("%w: TLS needs all three of the certificate, key and CA files (-tls-cert, -tls-key, -tls-ca), or none", ErrConfig)
	case set == 0 && c.TLSRequireClientCert:
		return fmt.Errorf("%w: -tls-require-client-cert needs TLS (-tls-cert, -tls-key, -tls-ca)", ErrConfig)
	}
	return nil
}

// tlsStreamLayer is mutual TLS over another stream layer: every accepted
// connection must present a node certificate of the cluster CA, and every
// dialled peer must present one valid for the address dialled. The
// handshake of an accepted connection runs in its own goroutine under a
// deadline, so a slow or hostile peer cannot stall Raft's accept loop.
type tlsStreamLayer struct {
	inner  raft.StreamLayer
	certs  *tlsutil.Reloader
	srvCfg *tls.Config
	log    hclog.Logger

	accepted chan acceptResult
	done     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup

	mu      sync.Mutex
	pending map[net.Conn]struct{} // handshakes in progress
}

type acceptResult struct {
	conn net.Conn
	err  error
}

func newTLSStreamLayer(inner raft.StreamLayer, certs *tlsutil.Reloader, log hclog.Logger) *tlsStreamLayer {
	t := &tlsStreamLayer{
		inner: inner,
		certs: certs,
		srvCfg: certs.ServerConfig(tlsutil.ServerOptions{
			ClientAuth:       tls.RequireAndVerifyClientCert,
			RequireServerEKU: true,
		}),
		log:      log,
		accepted: make(chan acceptResult),
		done:     make(chan struct{}),
		pending:  map[net.Conn]struct{}{},
	}
	t.wg.Add(1)
	go t.acceptLoop()
	return t
}

func (t *tlsStreamLayer) acceptLoop() {
	defer t.wg.Done()
	for {
		raw, err := t.inner.Accept()
		if err != nil {
			select {
			case t.accepted <- acceptResult{err: err}:
				continue
			case <-t.done:
				return
			}
		}
		if !t.track(raw) {
			t.log.Warn("refused raft connection: too many TLS handshakes in progress", "remote", raw.RemoteAddr().String())
			raw.Close()
			continue
		}
		t.wg.Add(1)
		go t.handshake(raw)
	}
}

// track records a connection whose handshake starts, unless too many are
// in progress or the layer is closed.
func (t *tlsStreamLayer) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending == nil || len(t.pending) >= maxPendingHandshakes {
		return false
	}
	t.pending[c] = struct{}{}
	return true
}

func (t *tlsStreamLayer) untrack(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending, c)
}

func (t *tlsStreamLayer) handshake(raw net.Conn) {
	defer t.wg.Done()
	defer t.untrack(raw)
	conn := tls.Server(raw, t.srvCfg)
	_ = conn.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	if err := conn.Handshake(); err != nil {
		select {
		case <-t.done:
		default:
			t.log.Warn("refused raft connection: TLS handshake failed", "remote", raw.RemoteAddr().String(), "error", err)
		}
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	select {
	case t.accepted <- acceptResult{conn: conn}:
	case <-t.done:
		conn.Close()
	}
}

// Accept implements net.Listener: it returns connections whose handshake
// succeeded.
func (t *tlsStreamLayer) Accept() (net.Conn, error) {
	select {
	case r := <-t.accepted:
		return r.conn, r.err
	case <-t.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener; it also ends handshakes in progress.
func (t *tlsStreamLayer) Close() error {
	var err error
	t.once.Do(func() {
		close(t.done)
		err = t.inner.Close()
		t.mu.Lock()
		for c := range t.pending {
			c.Close()
		}
		t.pending = nil
		t.mu.Unlock()
		t.wg.Wait()
	})
	return err
}

// Addr implements net.Listener.
func (t *tlsStreamLayer) Addr() net.Addr { return t.inner.Addr() }

// Dial implements raft.StreamLayer: a connection of the inner layer, then
// a TLS handshake with this node's certificate, within timeout in all.
func (t *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = tlsHandshakeTimeout
	}
	deadline := time.Now().Add(timeout)
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("server: raft dial %s: %w", address, err)
	}
	raw, err := t.inner.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, t.certs.ClientConfig(host))
	_ = conn.SetDeadline(deadline)
	if err := conn.Handshake(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("server: raft dial %s: TLS handshake: %w", address, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// peerTransport is the HTTP transport a TLS node uses for its calls to
// other nodes (forwarding to the leader, joining): https with this node's
// certificate as client certificate and the cluster CA as the only root. A
// request written with http:// is sent over https all the same: a TLS node
// never talks to its peers in plaintext.
//
// It offers HTTP/2 in ALPN: a peer that accepts it (this version) gets one
// multiplexed connection for all forwards, an older one HTTP/1.1.
func peerTransport(certs *tlsutil.Reloader) http.RoundTripper {
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	return httpsOnly{&http.Transport{
		DialContext: dialer.DialContext,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return certs.Dial(ctx, network, addr, tlsHandshakeTimeout, "h2", "http/1.1")
		},
		Protocols:           &protos,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		HTTP2: &http.HTTP2Config{
			// A dead peer's connection is found and closed, so that
			// requests to it fail instead of waiting on it.
			SendPingTimeout:  5 * time.Second,
			PingTimeout:      5 * time.Second,
			WriteByteTimeout: 5 * time.Second,
		},
	}}
}

// httpsOnly sends http:// requests as https://.
type httpsOnly struct{ rt http.RoundTripper }

func (h httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" {
		r2 := req.Clone(req.Context())
		r2.URL.Scheme = "https"
		req = r2
	}
	return h.rt.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (h httpsOnly) CloseIdleConnections() {
	if c, ok := h.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// httpScheme is the scheme of this node's HTTP API and its peers'.
func (s *Server) httpScheme() string {
	if s.tls != nil {
		return "https"
	}
	return "http"
}

// TLSEnabled reports whether this node serves TLS.
func (s *Server) TLSEnabled() bool { return s.tls != nil }

// ReloadTLS re-reads the certificate, key and CA files (on SIGHUP). New
// connections, Raft's and the HTTP API's, use the new set; established
// ones keep theirs. On error the previous set stays in use.
func (s *Server) ReloadTLS() error {
	if s.tls == nil {
		return errors.New("server: TLS is not configured")
	}
	if err := s.tls.Reload(); err != nil {
		return fmt.Errorf("server: reload TLS: %w", err)
	}
	leaf := s.tls.Leaf()
	s.log.Info("TLS certificates reloaded", "cert", s.cfg.TLSCertFile, "subject", leaf.Subject.CommonName,
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "cas", len(s.tls.CAs()))
	return nil
}

// peerHTTPClient is the client for this node's HTTP calls to other nodes;
// nil without TLS (callers then use their plaintext default) unless a
// timeout is asked for.
func (s *Server) peerHTTPClient(timeout time.Duration) *http.Client {
	if s.peerRT == nil && timeout == 0 {
		return nil
	}
	return &http.Client{Transport: s.peerRT, Timeout: timeout}
}

// httpListener is the HTTP API's listener: s.httpLn, under TLS when TLS is
// on, offering HTTP/2 and HTTP/1.1 in ALPN (peers forward over HTTP/2).
func (s *Server) httpListener() net.Listener {
	if s.tls == nil {
		return s.httpLn
	}
	auth := tls.VerifyClientCertIfGiven
	if s.cfg.TLSRequireClientCert {
		auth = tls.RequireAndVerifyClientCert
	}
	return tls.NewListener(s.httpLn, s.tls.ServerConfig(tlsutil.ServerOptions{ClientAuth: auth, NextProtos: []string{"h2", "http/1.1"}}))
}
