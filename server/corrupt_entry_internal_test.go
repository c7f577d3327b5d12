package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/coordd/coordd/fsm"
)

const corruptChildEnv = "COORDD_TEST_CORRUPT_ENTRY_CHILD"

// TestCorruptEntryAtRuntime_StopsTheNode_ThenRefusesToStart: a committed
// entry that fails its checksum when it is applied (damaged after the
// startup check: in memory, or on the wire) stops a real node: the process
// exits with Go's panic status, its last log line and the panic's first
// line name the entry and what to do. The entry is in the node's log, so
// the restarted node refuses to start.
func TestCorruptEntryAtRuntime_StopsTheNode_ThenRefusesToStart(t *testing.T) {
	if dir := os.Getenv(corruptChildEnv); dir != "" {
		runCorruptEntryChild(dir)
		return
	}
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCorruptEntryAtRuntime_StopsTheNode_ThenRefusesToStart$")
	cmd.Env = append(os.Environ(), corruptChildEnv+"="+dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("the node exited with %v, want Go's panic status 2:\n%s", err, out.String())
	}
	s := out.String()
	i := strings.Index(s, "\npanic: ")
	if i < 0 {
		t.Fatalf("no panic in the output:\n%s", s)
	}
	first := s[i+1:]
	first = first[:strings.IndexByte(first, '\n')]
	for _, want := range []string{"panic: coordd: cannot apply log entry", "checksum mismatch", "remove its data dir and rejoin"} {
		if !strings.Contains(first, want) {
			t.Errorf("the panic's first line does not say %q: %s", want, first)
		}
	}
	if !strings.Contains(s[:i], "stopping: a committed log entry cannot be applied") {
		t.Errorf("no error logged before the panic:\n%s", s[:i])
	}
	t.Logf("the operator sees: %s", first)

	// Restarted on the same data dir, it refuses to start.
	srv, err := Start(context.Background(), corruptChildConfig(t, dir, hclog.NewNullLogger()))
	if err == nil {
		srv.Abort()
		t.Fatal("a node started on a log with a corrupt entry")
	}
	if !errors.Is(err, ErrDataCorrupt) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("restart: %v, want ErrDataCorrupt with a checksum mismatch", err)
	}
}

func corruptChildConfig(t testing.TB, dir string, log hclog.Logger) Config {
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	raftLn, httpLn := listen(), listen()
	return Config{
		NodeID: "n1", DataDir: dir, Logger: log,
		RaftAddr: raftLn.Addr().String(), HTTPAddr: httpLn.Addr().String(),
		RaftListener: raftLn, HTTPListener: httpLn,
		Bootstrap: []Peer{{ID: "n1", RaftAddr: raftLn.Addr().String(), HTTPAddr: httpLn.Addr().String()}},
	}
}

// runCorruptEntryChild runs a one-node cluster and proposes an entry whose
// checksum fails, as if it had been damaged after it was encoded.
func runCorruptEntryChild(dir string) {
	log := hclog.New(&hclog.LoggerOptions{Name: "n1", Output: os.Stderr, Level: hclog.Info})
	s, err := Start(context.Background(), corruptChildConfig(&testing.T{}, dir, log))
	if err != nil {
		log.Error("start", "error", err)
		os.Exit(3)
	}
	for deadline := time.Now().Add(15 * time.Second); s.Ready() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			log.Error("never ready", "error", s.Ready())
			os.Exit(4)
		}
	}
	data := fsmCmd(fsm.KVPut{Key: "k", Value: []byte("a value")}).Encode()
	data[len(data)-6] ^= 0x01
	err = s.raft.Apply(data, 5*time.Second).Error()
	// Raft answers the future from a deferred call, so Apply can return
	// (with a nil response) while the FSM's panic is still unwinding: give
	// the panic the time to end the process before calling it a failure.
	time.Sleep(10 * time.Second)
	log.Error("the corrupt entry was applied and the node kept running", "error", err)
	os.Exit(5)
}
