package tlsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names in a certificate directory written by GenerateCluster.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// ClusterOptions says what GenerateCluster writes.
type ClusterOptions struct {
	// Dir receives the files (created with mode 0700 if missing).
	Dir string
	// Nodes are node ids: each gets <id>.pem and <id>-key.pem, valid for
	// server and client use, for the id and Hosts.
	Nodes []string
	// Hosts are the DNS names and IPs every node certificate is valid
	// for besides the node's id (DefaultHosts when empty).
	Hosts []string
	// Clients are names of client-only certificates for tools (e.g.
	// "client" writes client.pem and client-key.pem).
	Clients []string
	// NewCA replaces an existing CA in Dir. Without it an existing CA is
	// reused to issue the certificates, and never overwritten.
	NewCA bool
	// ValidFor is the validity of node and client certificates (0:
	// DefaultCertValidity); a new CA is valid for DefaultCAValidity.
	ValidFor time.Duration
}

// ClusterResult reports what GenerateCluster did.
type ClusterResult struct {
	// CAReused is true when an existing CA in Dir issued the certificates.
	CAReused bool
	// Written lists every file written, the CA's first when it is new.
	Written []string
}

// GenerateCluster writes a cluster CA (unless one exists and NewCA is not
// set), a certificate for every node and every client into o.Dir.
func GenerateCluster(o ClusterOptions) (*ClusterResult, error) {
	if o.Dir == "" {
		return nil, errors.New("tlsutil: no directory given")
	}
	if len(o.Nodes) == 0 && len(o.Clients) == 0 {
		return nil, errors.New("tlsutil: no nodes or clients to issue certificates for")
	}
	names := map[string]bool{}
	for _, n := range append(append([]string(nil), o.Nodes...), o.Clients...) {
		switch {
		case n == "" || strings.ContainsAny(n, `/\`) || n == "." || n == "..":
			return nil, fmt.Errorf("tlsutil: %q cannot name a certificate file", n)
		case n == "ca" || strings.HasSuffix(n, "-key"):
			return nil, fmt.Errorf("tlsutil: %q is a reserved name", n)
		case names[n]:
			return nil, fmt.Errorf("tlsutil: %q given twice", n)
		}
		names[n] = true
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsutil: create %s: %w", o.Dir, err)
	}
	res := &ClusterResult{}
	caCert, caKey := filepath.Join(o.Dir, CAFile), filepath.Join(o.Dir, CAKeyFile)
	var ca *CA
	_, statErr := os.Stat(caCert)
	switch {
	case statErr == nil && !o.NewCA:
		var err error
		if ca, err = LoadCA(caCert, caKey); err != nil {
			return nil, fmt.Errorf("%w (an existing CA is reused to issue certificates; give NewCA to replace it)", err)
		}
		res.CAReused = true
	case statErr != nil && !errors.Is(statErr, fs.ErrNotExist):
		return nil, fmt.Errorf("tlsutil: %w", statErr)
	default:
		var err error
		if ca, err = NewCA("coordd cluster CA", 0); err != nil {
			return nil, err
		}
		c, k, err := WriteFiles(o.Dir, "ca", ca.CertPEM, ca.KeyPEM)
		if err != nil {
			return nil, err
		}
		res.Written = append(res.Written, c, k)
	}
	issue := func(name string, co CertOptions) error {
		certPEM, keyPEM, err := ca.Issue(co)
		if err != nil {
			return err
		}
		c, k, err := WriteFiles(o.Dir, name, certPEM, keyPEM)
		if err != nil {
			return err
		}
		res.Written = append(res.Written, c, k)
		return nil
	}
	for _, n := range o.Nodes {
		if err := issue(n, CertOptions{CommonName: n, Hosts: NodeHosts(n, o.Hosts), Server: true, Client: true, ValidFor: o.ValidFor}); err != nil {
			return nil, err
		}
	}
	for _, n := range o.Clients {
		if err := issue(n, CertOptions{CommonName: n, Client: true, ValidFor: o.ValidFor}); err != nil {
			return nil, err
		}
	}
	return res, nil
}
