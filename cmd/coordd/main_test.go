package main

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/coordd/coordd/server"
)

func TestParseFlags_EnvironmentFillsFlagsNotGivenOnTheCommandLine(t *testing.T) {
	t.Setenv("COORDD_ID", "from-env")
	t.Setenv("COORDD_DATA_DIR", "/env/dir")
	t.Setenv("COORDD_HEARTBEAT_TIMEOUT", "450ms")
	t.Setenv("COORDD_LOG_JSON", "true")
	t.Setenv("COORDD_BOOTSTRAP", "a=127.0.0.1:1,127.0.0.1:2;b=127.0.0.1:3,127.0.0.1:4")
	o, err := parseFlags([]string{"-id", "from-flag"}, io.Discard)
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if _, err := parseFlags(tc.args, io.Discard); err == nil {
				t.Fatal("expected an error")
			}
		})
	}
}

func TestRun_InvalidConfigExitsNonZeroWithoutStarting(t *testing.T) {
	// No -id: server.Start refuses the config before binding anything.
	if code := run([]string{"-data-dir", t.TempDir()}, io.Discard); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if code := run([]string{"-bogus"}, io.Discard); code != 2 {
		t.Fatalf("exit code %d for a bad flag, want 2", code)
	}
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
