package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coordd/coordd/client"
)

// printJSON writes v as one compact JSON document and a newline.
func (e *env) printJSON(v any) {
	enc := json.NewEncoder(e.stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		e.warnf("encode output: %v", err)
	}
}

// printTable writes aligned columns under a header.
func (e *env) printTable(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

// show prints v as JSON, or as the table that rows builds.
func (e *env) show(v any, header []string, rows func() [][]string) {
	if e.json {
		e.printJSON(v)
		return
	}
	e.printTable(header, rows())
}

// printLine writes one line of a streaming command in table mode.
func (e *env) printLine(format string, a ...any) {
	fmt.Fprintf(e.stdout, format+"\n", a...)
}

// display renders a value for a table cell or a line: as is when it is
// printable UTF-8 without spaces that would break the columns, quoted
// otherwise.
func display(b []byte) string {
	s := string(b)
	if s == "" || !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || r == '"' {
			return strconv.Quote(s)
		}
	}
	return s
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

func ms(n int64) string { return (time.Duration(n) * time.Millisecond).String() }

// fail reports err on stderr and returns the exit code for it: the
// interruption, the server's refusals, a lost lease and timeouts each have
// their own.
func (e *env) fail(err error) int {
	code, msg := classify(err)
	if e.ctx.Err() != nil {
		code, msg = exitInterrupted, "interrupted"
	}
	fmt.Fprintf(e.stderr, "coordctl: %s: %s\n", e.cmd, msg)
	if hint := tlsHint(err); hint != "" && code != exitInterrupted {
		fmt.Fprintf(e.stderr, "coordctl: hint: %s\n", hint)
	}
	return code
}

// tlsHint says what to change when err shows that this client and a node
// do not agree about TLS, and "" otherwise.
func tlsHint(err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
	)
	msg := err.Error()
	switch {
	case strings.Contains(msg, "HTTP request to an HTTPS server"):
		return "the node speaks https: give -ca FILE, the cluster's CA certificate (make run-tls: -ca data-tls/tls/ca.pem), or set COORDD_CA"
	case errors.As(err, &unknownCA):
		return "the node's certificate is not signed by a CA this client trusts: give -ca FILE, the cluster's CA certificate (make run-tls: -ca data-tls/tls/ca.pem), or set COORDD_CA"
	case errors.As(err, &hostname):
		return "the node's certificate is not valid for the address in -endpoints: use a host name or IP it was made for (coordd certs -hosts)"
	case errors.As(err, &invalid):
		return "the node's certificate is not valid (expired, or not a server certificate): make new ones with coordd certs"
	case strings.Contains(msg, "remote error: tls: certificate required"), strings.Contains(msg, "remote error: tls: bad certificate"),
		strings.Contains(msg, "remote error: tls: unknown certificate authority"):
		return "the node wants a client certificate signed by its CA: give -cert FILE -key FILE (make run-tls: data-tls/tls/client.pem and client-key.pem), or set COORDD_CERT and COORDD_KEY"
	case errors.As(err, &record):
		return "the node speaks plain http: drop -ca, -cert and -key (and COORDD_CA, COORDD_CERT, COORDD_KEY), or write the endpoint as http://HOST:PORT"
	}
	return ""
}

// classify maps an error of package client to an exit code and a message.
func classify(err error) (int, string) {
	var se *client.Error
	hasSE := errors.As(err, &se)
	detail := err.Error()
	if hasSE {
		detail = se.Message
	}
	switch {
	case errors.Is(err, client.ErrLeaseLost), errors.Is(err, client.ErrSessionClosed):
		return exitLost, "lost: " + detail
	case errors.Is(err, client.ErrNoLeader), errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrNotLeader):
		return exitFailed, "cluster unavailable: " + err.Error()
	case errors.Is(err, client.ErrOutcomeUnknown):
		return exitFailed, "outcome unknown: the write may or may not have been applied (" + err.Error() + ")"
	case errors.Is(err, client.ErrKeyNotFound):
		return exitFailed, "key not found"
	case errors.Is(err, client.ErrCASConflict):
		if hasSE && se.CurrentIndex == 0 {
			return exitFailed, "compare-and-swap failed: the key does not exist"
		}
		if hasSE {
			return exitFailed, fmt.Sprintf("compare-and-swap failed: the key's modify index is %d", se.CurrentIndex)
		}
		return exitFailed, "compare-and-swap failed"
	case errors.Is(err, client.ErrLeaseNotFound):
		return exitFailed, "lease not found (expired or revoked)"
	case errors.Is(err, client.ErrStaleToken):
		if hasSE && se.CurrentToken != 0 {
			return exitFailed, fmt.Sprintf("stale token: the current token is %d", se.CurrentToken)
		}
		return exitFailed, "stale token: " + detail
	case errors.Is(err, client.ErrNotHolder):
		return exitFailed, "not the holder: " + detail
	case errors.Is(err, client.ErrBadRequest):
		if hasSE && (se.Status == 400 || se.Status == 413) {
			return exitUsage, "refused by the server: " + detail
		}
		return exitFailed, "refused by the server: " + detail
	case errors.Is(err, client.ErrUnknownMember), errors.Is(err, client.ErrConflict):
		return exitFailed, "refused by the server: " + detail
	case errors.Is(err, client.ErrBadConfig):
		return exitUsage, err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return exitTimeout, "timed out (" + err.Error() + ")"
	}
	return exitFailed, err.Error()
}
