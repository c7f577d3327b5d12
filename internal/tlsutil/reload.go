package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MinVersion is the oldest TLS version coordd speaks.
const MinVersion = tls.VersionTLS12

// Files names a node's (or a tool's) certificate, its private key and the
// CA bundle that peers' certificates must chain to. All PEM.
type Files struct {
	Cert, Key, CA string
}

// Reloader holds a certificate, its key and a CA pool loaded from Files and
// swaps them atomically on Reload. The tls.Configs it returns look the
// current set up at every handshake, so a reload applies to every new
// connection (established ones keep what they negotiated).
type Reloader struct {
	files Files
	mu    sync.Mutex // serializes Reload
	cur   atomic.Pointer[material]
}

// material is one loaded set.
type material struct {
	cert tls.Certificate
	leaf *x509.Certificate
	pool *x509.CertPool
	cas  []*x509.Certificate
}

// NewReloader loads f. Every error names the file at fault.
func NewReloader(f Files) (*Reloader, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("tlsutil: certificate, key and CA files are all required")
	}
	r := &Reloader{files: f}
	m, err := load(f)
	if err != nil {
		return nil, err
	}
	r.cur.Store(m)
	return r, nil
}

// Files returns the files the Reloader reads.
func (r *Reloader) Files() Files { return r.files }

// Reload re-reads the files and, if they form a valid set, makes it the one
// new connections use. On error the previous set stays in use.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := load(r.files)
	if err != nil {
		return err
	}
	r.cur.Store(m)
	return nil
}

// Leaf is the certificate currently in use.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().leaf }

// CAs are the CA certificates currently trusted.
func (r *Reloader) CAs() []*x509.Certificate { return slices.Clone(r.cur.Load().cas) }

// load reads and checks one set: the key matches the certificate, the CA
// file holds at least one CA certificate, and the certificate chains to one
// of them and is valid now.
func load(f Files) (*material, error) {
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: read certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: read key file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tlsutil: parse certificate %s: %w", f.Cert, err)
		}
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	var cas []*x509.Certificate
	for rest := caPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tlsutil: parse CA file %s: %w", f.CA, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("tlsutil: CA file %s: %q is not a CA certificate", f.CA, c.Subject.CommonName)
		}
		pool.AddCert(c)
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("tlsutil: CA file %s holds no PEM certificate", f.CA)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("tlsutil: certificate %s does not verify against CA file %s: %w", f.Cert, f.CA, err)
	}
	cert.Leaf = leaf
	return &material{cert: cert, leaf: leaf, pool: pool, cas: cas}, nil
}

// ServerOptions shape a server-side tls.Config.
type ServerOptions struct {
	// ClientAuth is the client certificate policy; verification is
	// always against the current CA pool.
	ClientAuth tls.ClientAuthType
	// RequireServerEKU additionally demands that a client's certificate
	// be valid for server use too, i.e. be a node certificate: for
	// node-to-node traffic, so that a tool's client certificate cannot
	// speak Raft.
	RequireServerEKU bool
	// NextProtos is offered in ALPN.
	NextProtos []string
}

// ServerConfig returns a config for listeners. Each handshake gets the
// current certificate and CA pool.
func (r *Reloader) ServerConfig(o ServerOptions) *tls.Config {
	return &tls.Config{
		MinVersion: MinVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := r.cur.Load()
			c := &tls.Config{
				MinVersion:   MinVersion,
				Certificates: []tls.Certificate{m.cert},
				ClientCAs:    m.pool,
				ClientAuth:   o.ClientAuth,
				NextProtos:   o.NextProtos,
			}
			if o.RequireServerEKU {
				c.VerifyConnection = requireNodeCert
			}
			return c, nil
		},
	}
}

// requireNodeCert refuses a peer whose certificate is not valid for server
// use (the chain itself was verified by crypto/tls already).
func requireNodeCert(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tlsutil: the peer sent no certificate")
	}
	c := cs.PeerCertificates[0]
	if len(c.ExtKeyUsage) == 0 || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil
	}
	return fmt.Errorf("tlsutil: peer certificate %q is not a node certificate (no server use)", c.Subject.CommonName)
}

// ClientConfig returns a config for one connection to serverName (a host
// name or IP, which the server's certificate must be valid for) with the
// current certificate as client certificate and the current CA pool as
// the only roots.
func (r *Reloader) ClientConfig(serverName string) *tls.Config {
	m := r.cur.Load()
	return &tls.Config{
		MinVersion:   MinVersion,
		ServerName:   serverName,
		RootCAs:      m.pool,
		Certificates: []tls.Certificate{m.cert},
	}
}

// Dial connects to addr (host:port) and completes a TLS handshake with
// ClientConfig(host) before it returns, all within timeout. nextProtos,
// if any, are offered in ALPN.
func (r *Reloader) Dial(ctx context.Context, network, addr string, timeout time.Duration, nextProtos ...string) (*tls.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: dial %s: %w", addr, err)
	}
	cfg := r.ClientConfig(host)
	cfg.NextProtos = nextProtos
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}
