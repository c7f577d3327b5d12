package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/internal/loopport"
	"github.com/coordd/coordd/server"
)

func TestParseFlags_EnvironmentFillsFlagsNotGivenOnTheCommandLine(t *testing.T) {
	t.Setenv("COORDD_ID", "from-env")
	t.Setenv("COORDD_DATA_DIR", "/env/dir")
	t.Setenv("COORDD_HEARTBEAT_TIMEOUT", "450ms")
	t.Setenv("COORDD_LOG_JSON", "true")
	t.Setenv("COORDD_BOOTSTRAP", "a=127.0.0.1:1,127.0.0.1:2;b=127.0.0.1:3,127.0.0.1:4")
	o, err := parseFlags([]string{"-id", "from-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.NodeID != "from-flag" {
		t.Errorf("flag should win over env: id = %q", o.cfg.NodeID)
	}
	if o.cfg.DataDir != "/env/dir" || o.cfg.HeartbeatTimeout != 450*time.Millisecond || !o.logJSON {
		t.Errorf("env not applied: %+v json=%v", o.cfg, o.logJSON)
	}
	want := []server.Peer{{ID: "a", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}, {ID: "b", RaftAddr: "127.0.0.1:3", HTTPAddr: "127.0.0.1:4"}}
	if len(o.cfg.Bootstrap) != 2 || o.cfg.Bootstrap[0] != want[0] || o.cfg.Bootstrap[1] != want[1] {
		t.Errorf("bootstrap = %+v", o.cfg.Bootstrap)
	}
}

func TestParseFlags_Limits(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := o.cfg; c.RateLimit != server.DefaultRateLimit || c.RateBurst != 0 || c.MaxWatchers != server.DefaultMaxWatchers || c.MaxHeaderBytes != server.DefaultMaxHeaderBytes {
		t.Errorf("defaults: rate %g burst %d watchers %d header bytes %d", c.RateLimit, c.RateBurst, c.MaxWatchers, c.MaxHeaderBytes)
	}
	t.Setenv("COORDD_RATE_LIMIT", "250.5")
	t.Setenv("COORDD_RATE_BURST", "40")
	t.Setenv("COORDD_MAX_WATCHERS", "0")
	o, err = parseFlags([]string{"-max-header-bytes", "8192"})
	if err != nil {
		t.Fatal(err)
	}
	// 0 means no limit, which the Config spells negative (its 0 is the default).
	if c := o.cfg; c.RateLimit != 250.5 || c.RateBurst != 40 || c.MaxWatchers >= 0 || c.MaxHeaderBytes != 8192 {
		t.Errorf("from env and flags: rate %g burst %d watchers %d header bytes %d", c.RateLimit, c.RateBurst, c.MaxWatchers, c.MaxHeaderBytes)
	}
	o, err = parseFlags([]string{"-rate-limit", "0"})
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.RateLimit >= 0 {
		t.Errorf("-rate-limit 0: Config.RateLimit %g, want negative (no limit)", o.cfg.RateLimit)
	}
}

func TestParseFlags_RejectsBadInputClearly(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"bad duration in env", nil, map[string]string{"COORDD_ELECTION_TIMEOUT": "soon"}},
		{"bad bootstrap", []string{"-bootstrap", "n1=127.0.0.1:1"}, nil},
		{"unknown log level", []string{"-log-level", "loud"}, nil},
		{"stray argument", []string{"extra"}, nil},
		{"unknown flag", []string{"-nope"}, nil},
		{"rate limit not a number", []string{"-rate-limit", "NaN"}, nil},
		{"negative burst", []string{"-rate-burst", "-1"}, nil},
		{"tiny header limit", []string{"-max-header-bytes", "10"}, nil},
		{"negative gc headroom", []string{"-gc-headroom-bytes", "-1"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if _, err := parseFlags(tc.args); err == nil {
				t.Fatal("expected an error")
			}
		})
	}
}

func TestRun_UsageErrorsAreOneLineAndPointAtHelp(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no arguments", nil, "coordd: -id and -data-dir are required to run a node (coordd -dev runs one for development)"},
		{"no id", []string{"-data-dir", t.TempDir()}, "coordd: -id and -data-dir are required"},
		{"unknown flag", []string{"-bogus"}, "coordd: flag provided but not defined: -bogus"},
		{"stray argument", []string{"-id", "n1", "extra"}, "coordd: unexpected arguments: extra"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != 2 {
				t.Fatalf("exit code %d, want 2; stderr %q", code, errb.String())
			}
			lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], tc.want) || lines[1] != "see coordd help" || out.Len() != 0 {
				t.Fatalf("stderr %q, stdout %q: want %q and \"see coordd help\"", errb.String(), out.String(), tc.want)
			}
		})
	}
}

func TestRun_HelpAndVersionGoToStdout(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"-help"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 || errb.Len() != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errb.String())
		}
		for _, want := range []string{"usage: coordd -id ID -data-dir DIR", "coordd -dev", "coordd certs", "coordd snapshot inspect",
			"coordd version", "COORDD_<FLAG>", "COORDD_DATA_DIR", "SIGUSR2", "-bootstrap", "-join", "-max-watchers", "-dev\n"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: help lacks %q:\n%s", args, want, out.String())
			}
		}
	}
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 || errb.Len() != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errb.String())
		}
		if got := out.String(); !strings.HasPrefix(got, "coordd ") || !strings.Contains(got, runtime.Version()) || strings.Count(got, "\n") != 1 {
			t.Errorf("%v: %q", args, got)
		}
	}
}

func TestRun_APortInUseNamesTheProcessHoldingIt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var errb bytes.Buffer
	code := run([]string{"-id", "n1", "-data-dir", t.TempDir(), "-raft-addr", "127.0.0.1:0", "-http-addr", ln.Addr().String()}, io.Discard, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, errb.String())
	}
	want := fmt.Sprintf("%s is held by pid %d (", ln.Addr(), os.Getpid())
	if !strings.Contains(errb.String(), "address already in use") || (runtime.GOOS == "linux" && !strings.Contains(errb.String(), want)) {
		t.Fatalf("stderr does not say who holds the port (want %q):\n%s", want, errb.String())
	}
}

func TestRun_DevNodeBootstrapsItselfAnnouncesItsURLAndRemovesItsData(t *testing.T) {
	ports, err := loopport.Free(2, rand.IntN)
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-dev", "-log-level", "warn", "-raft-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]), "-http-addr", httpAddr}, out, io.Discard)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops it.") {
		if time.Now().After(deadline) {
			t.Fatalf("no ready banner within 30 s: %q", out.String())
		}
		select {
		case code := <-done:
			t.Fatalf("exited with %d: %q", code, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	banner := out.String()
	if !strings.Contains(banner, "coordd dev node ready in ") || !strings.Contains(banner, "http://"+httpAddr) ||
		!strings.Contains(banner, "export COORDCTL_ENDPOINTS=http://"+httpAddr) {
		t.Fatalf("banner: %q", banner)
	}
	dataDir := regexp.MustCompile(`data in (\S+) \(removed on exit\)`).FindStringSubmatch(banner)
	if dataDir == nil {
		t.Fatalf("banner names no temporary data dir: %q", banner)
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+httpAddr+"/v1/kv/dev", strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("write to the dev node: %v %v", resp, err)
	}
	resp.Body.Close()
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after SIGTERM", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the dev node did not stop within 15 s of SIGTERM")
	}
	if _, err := os.Stat(dataDir[1]); !os.IsNotExist(err) {
		t.Fatalf("the temporary data dir %s is still there: %v", dataDir[1], err)
	}
	var errb bytes.Buffer
	if code := run([]string{"-dev", "-bootstrap", "a=127.0.0.1:1,127.0.0.1:2"}, io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), "drop -bootstrap and -join") {
		t.Fatalf("-dev with -bootstrap: exit %d, %q", code, errb.String())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestParsePeers_AcceptsEverySeparatorAndRejectsIncompletePeers(t *testing.T) {
	for _, s := range []string{
		"n1=127.0.0.1:1,127.0.0.1:2;n2=127.0.0.1:3,127.0.0.1:4",
		"n1=127.0.0.1:1,127.0.0.1:2,n2=127.0.0.1:3,127.0.0.1:4",
		"n1=127.0.0.1:1,127.0.0.1:2 n2=127.0.0.1:3,127.0.0.1:4;",
	} {
		peers, err := server.ParsePeers(s)
		if err != nil || len(peers) != 2 || peers[1].HTTPAddr != "127.0.0.1:4" {
			t.Errorf("ParsePeers(%q) = %+v, %v", s, peers, err)
		}
	}
	for _, s := range []string{"n1", "n1=127.0.0.1:1", "=a:1,b:2", "n1=a:1,n2=b:2", "n1=nohost,127.0.0.1:2"} {
		if _, err := server.ParsePeers(s); !errors.Is(err, server.ErrConfig) {
			t.Errorf("ParsePeers(%q) error = %v, want ErrConfig", s, err)
		}
	}
}

func TestSnapshotInspect_VerifiesAndSummarises(t *testing.T) {
	st := fsm.New().State()
	for i, c := range []fsm.Command{
		fsmCmd(fsm.KVPut{Key: "a", Value: []byte("1")}),
		fsmCmd(fsm.LeaseGrant{TTL: 5000}),
		fsmCmd(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 2}),
	} {
		st, _ = fsm.ApplyCommand(st, uint64(i+1), 3, c)
	}
	var buf bytes.Buffer
	if err := fsm.WriteState(&buf, st); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.snap")
	os.WriteFile(good, buf.Bytes(), 0o600)
	var out, errOut bytes.Buffer
	if code := runSnapshot([]string{"inspect", "-o", "json", good}, &out, &errOut); code != 0 {
		t.Fatalf("inspect: %d %s", code, errOut.String())
	}
	var sum snapshotSummary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Index != 3 || sum.Term != 3 || sum.Keys != 1 || sum.Leases != 1 || sum.Elections != 1 || sum.Bytes != int64(buf.Len()) ||
		sum.FormatVersion != 2 || sum.Records == 0 || sum.Digest != st.Digest() {
		t.Fatalf("summary: %+v", sum)
	}
	out.Reset()
	if code := runSnapshot([]string{"inspect", good}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "checksum") || !strings.Contains(out.String(), " ok\n") {
		t.Fatalf("table: %d %q", code, out.String())
	}
	out.Reset()
	if code := runSnapshot([]string{"inspect", "-o", "json", "-v", good}, &out, &errOut); code != 0 {
		t.Fatalf("inspect -v: %d %s", code, errOut.String())
	}
	sum = snapshotSummary{}
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil || len(sum.LeaseList) != 1 || len(sum.ElectionList) != 1 ||
		len(sum.ElectionList[0].Holders) != 1 || sum.ElectionList[0].Holders[0].Token == 0 {
		t.Fatalf("inspect -v: %+v %v", sum, err)
	}
	out.Reset()
	if code := runSnapshot([]string{"inspect", "-v", good}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "HOLDER LEASE:TOKEN") {
		t.Fatalf("table -v: %d %q", code, out.String())
	}
	// Truncated or corrupted: exit 1 with a clear message.
	for name, b := range map[string][]byte{
		"truncated": buf.Bytes()[:buf.Len()-3],
		"corrupted": append(append([]byte(nil), buf.Bytes()[:20]...), append([]byte{0xff}, buf.Bytes()[21:]...)...),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		errOut.Reset()
		if code := runSnapshot([]string{"inspect", p}, io.Discard, &errOut); code != 1 || !strings.Contains(errOut.String(), "not a sound snapshot") {
			t.Fatalf("%s: %d %q", name, code, errOut.String())
		}
	}
	if code := runSnapshot([]string{"inspect"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("usage: %d", code)
	}
	if code := run([]string{"snapshot", "nope"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("unknown subcommand: %d", code)
	}
}

// fsmCmd is fsm.NewCommand for a payload the test knows is valid.
func fsmCmd(p fsm.Payload) fsm.Command {
	c, err := fsm.NewCommand(p)
	if err != nil {
		panic(err)
	}
	return c
}
