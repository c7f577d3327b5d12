package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/coordd/coordd/internal/tlsutil"
	"github.com/coordd/coordd/server"
)

const certsUsage = `usage: coordd certs [-dir DIR] [-nodes n1,n2,n3] [-hosts H,...] [-clients client] [-valid-for D] [-new-ca]

Writes a cluster CA (ca.pem, ca-key.pem), a certificate for each node
(<id>.pem, <id>-key.pem: server and client use, valid for the node id and
-hosts) and for each client (client.pem, client-key.pem: client use only)
into DIR. Keys are written with mode 0600. An existing CA in DIR is reused
to issue the certificates (to add a node later) and never overwritten
unless -new-ca is given. Start each node with
  -tls-cert DIR/<id>.pem -tls-key DIR/<id>-key.pem -tls-ca DIR/ca.pem

flags:
`

// runCerts is `coordd certs`.
func runCerts(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("coordd certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), certsUsage)
		fs.PrintDefaults()
	}
	dir := fs.String("dir", "tls", "directory to write the files into (created with mode 0700)")
	nodes := fs.String("nodes", "n1,n2,n3", "comma-separated node ids to issue node certificates for")
	hosts := fs.String("hosts", strings.Join(tlsutil.DefaultHosts, ","), "comma-separated DNS names and IPs every node certificate is valid for, besides the node id")
	clients := fs.String("clients", "client", "comma-separated names of client certificates for tools (empty: none)")
	validFor := fs.Duration("valid-for", tlsutil.DefaultCertValidity, "validity of node and client certificates (a new CA is valid for 10 years)")
	newCA := fs.Bool("new-ca", false, "replace an existing CA in -dir (certificates it issued stop being trusted)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "coordd certs: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	res, err := tlsutil.GenerateCluster(tlsutil.ClusterOptions{
		Dir: *dir, Nodes: splitList(*nodes), Hosts: splitList(*hosts), Clients: splitList(*clients),
		NewCA: *newCA, ValidFor: *validFor,
	})
	if err != nil {
		fmt.Fprintln(stderr, "coordd certs:", err)
		return 1
	}
	if res.CAReused {
		fmt.Fprintf(stdout, "using the existing CA %s (-new-ca replaces it)\n", filepath.Join(*dir, tlsutil.CAFile))
	}
	for _, f := range res.Written {
		fmt.Fprintln(stdout, "wrote", f)
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// checkTLSFlags: -tls-cert, -tls-key and -tls-ca come together, and
// -tls-require-client-cert needs them.
func checkTLSFlags(c *server.Config) error {
	n := 0
	for _, f := range []string{c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile} {
		if f != "" {
			n++
		}
	}
	switch {
	case n != 0 && n != 3:
		return errors.New("-tls-cert, -tls-key and -tls-ca must be given together (or none, for plaintext)")
	case n == 0 && c.TLSRequireClientCert:
		return errors.New("-tls-require-client-cert needs -tls-cert, -tls-key and -tls-ca")
	}
	return nil
}

// reloadOnSIGHUP re-reads the TLS files on every SIGHUP while TLS is on. A
// failed reload is logged and the node keeps its current certificates. The
// returned function stops it.
func reloadOnSIGHUP(srv *server.Server, logger hclog.Logger) (stop func()) {
	if !srv.TLSEnabled() {
		return func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-hup:
				if err := srv.ReloadTLS(); err != nil {
					logger.Error("SIGHUP: TLS reload failed; keeping the current certificates", "error", err)
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-exited
	}
}
