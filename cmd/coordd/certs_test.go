package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coordd/coordd/internal/tlsutil"
)

func TestCerts_WritesACAAndCertificatesAndNeverReplacesTheCAUnlessAsked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	var errb bytes.Buffer
	if code := run([]string{"certs", "-dir", dir, "-nodes", "n1,n2,n3", "-hosts", "127.0.0.1,localhost,db.internal"}, io.Discard, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, name := range []string{"ca", "n1", "n2", "n3", "client"} {
		for _, f := range []string{name + ".pem", name + "-key.pem"} {
			st, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			want := os.FileMode(0o644)
			if strings.HasSuffix(f, "-key.pem") {
				want = 0o600
			}
			if st.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", f, st.Mode().Perm(), want)
			}
		}
	}
	r, err := tlsutil.NewReloader(tlsutil.Files{Cert: filepath.Join(dir, "n2.pem"), Key: filepath.Join(dir, "n2-key.pem"), CA: filepath.Join(dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"n2", "127.0.0.1", "localhost", "db.internal"} {
		if err := r.Leaf().VerifyHostname(h); err != nil {
			t.Errorf("n2's certificate: %v", err)
		}
	}

	ca, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	var o2 bytes.Buffer
	if code := runCerts([]string{"-dir", dir, "-nodes", "n4", "-clients", ""}, &o2, io.Discard); code != 0 {
		t.Fatalf("second run: exit %d", code)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Equal(ca, again) {
		t.Fatal("the existing CA was replaced without -new-ca")
	}
	if !strings.Contains(o2.String(), "using the existing CA") {
		t.Errorf("output %q does not say the CA was reused", o2.String())
	}
	if code := runCerts([]string{"-dir", dir, "-nodes", "n1", "-new-ca"}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("-new-ca: exit %d", code)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); bytes.Equal(ca, again) {
		t.Fatal("-new-ca kept the CA")
	}
	if code := runCerts([]string{"-dir", dir, "-nodes", "bad/name"}, io.Discard, io.Discard); code == 0 {
		t.Error("a node id with a slash was accepted")
	}
	if code := runCerts([]string{"-dir", dir, "stray"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("stray argument: exit %d, want 2", code)
	}
}

func TestParseFlags_TLSFlagsComeTogetherAndFromTheEnvironment(t *testing.T) {
	t.Setenv("COORDD_TLS_CERT", "/c.pem")
	t.Setenv("COORDD_TLS_KEY", "/k.pem")
	t.Setenv("COORDD_TLS_CA", "/ca.pem")
	t.Setenv("COORDD_TLS_REQUIRE_CLIENT_CERT", "true")
	o, err := parseFlags([]string{"-id", "n1", "-data-dir", "d"})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.TLSCertFile != "/c.pem" || c.TLSKeyFile != "/k.pem" || c.TLSCAFile != "/ca.pem" || !c.TLSRequireClientCert {
		t.Fatalf("env not applied: %q %q %q %v", c.TLSCertFile, c.TLSKeyFile, c.TLSCAFile, c.TLSRequireClientCert)
	}
	t.Setenv("COORDD_TLS_CA", "")
	os.Unsetenv("COORDD_TLS_CA")
	if _, err := parseFlags([]string{"-id", "n1", "-data-dir", "d"}); err == nil || !strings.Contains(err.Error(), "together") {
		t.Fatalf("cert and key without CA: err = %v", err)
	}
	os.Unsetenv("COORDD_TLS_CERT")
	os.Unsetenv("COORDD_TLS_KEY")
	if _, err := parseFlags([]string{"-id", "n1", "-data-dir", "d"}); err == nil || !strings.Contains(err.Error(), "-tls-require-client-cert") {
		t.Fatalf("require without TLS: err = %v", err)
	}
}
