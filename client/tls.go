package client

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSConfig builds a Config.TLS for a TLS cluster from PEM files: caFile
// holds the CA certificate(s) the nodes' certificates must chain to (empty:
// the system roots); certFile and keyFile, both or neither, are a client
// certificate for clusters that require one (-tls-require-client-cert).
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%w: read CA file: %v", ErrBadConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrBadConfig, caFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate %s with key %s: %v", ErrBadConfig, certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "" || keyFile != "":
		return nil, fmt.Errorf("%w: a client certificate needs both the certificate and the key file", ErrBadConfig)
	}
	return cfg, nil
}
