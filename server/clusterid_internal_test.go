package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func testLayer(t *testing.T, id string) *clusterStreamLayer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	inner, err := newStreamLayer(ln, "")
	if err != nil {
		t.Fatal(err)
	}
	c := &clusterID{path: filepath.Join(t.TempDir(), clusterIDFile), log: hclog.NewNullLogger(), id: id}
	return newClusterStreamLayer(inner, c, hclog.NewNullLogger())
}

// exchange dials to from from, writes a message and returns what the
// accepting side read (or its error).
func exchange(t *testing.T, from, to *clusterStreamLayer) (string, error) {
	t.Helper()
	conn, err := from.Dial(raft.ServerAddress(to.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	in, err := to.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	buf := make([]byte, 5)
	_, err = io.ReadFull(in, buf)
	return string(buf), err
}

func TestClusterStreamLayer_SameIDPasses_OtherIDIsRefused(t *testing.T) {
	t.Parallel()
	a1, a2, b := testLayer(t, "aaaa"), testLayer(t, "aaaa"), testLayer(t, "bbbb")
	if got, err := exchange(t, a1, a2); err != nil || got != "hello" {
		t.Fatalf("same cluster: read %q, %v", got, err)
	}
	if _, err := exchange(t, b, a1); !errors.Is(err, ErrClusterMismatch) {
		t.Fatalf("other cluster: %v, want ErrClusterMismatch", err)
	}
	// A node that has an id refuses a peer without one.
	if _, err := exchange(t, testLayer(t, ""), a1); !errors.Is(err, ErrClusterMismatch) {
		t.Fatalf("peer without id: %v, want ErrClusterMismatch", err)
	}
	if a1.id.get() != "aaaa" {
		t.Fatalf("id changed to %q", a1.id.get())
	}
}

func TestClusterStreamLayer_NodeWithoutIDAdoptsTheFirstAndKeepsIt(t *testing.T) {
	t.Parallel()
	fresh, a, b := testLayer(t, ""), testLayer(t, "aaaa"), testLayer(t, "bbbb")
	// Two nodes without an id (an upgraded cluster) talk as before.
	if got, err := exchange(t, testLayer(t, ""), fresh); err != nil || got != "hello" {
		t.Fatalf("both without id: %q, %v", got, err)
	}
	if got, err := exchange(t, a, fresh); err != nil || got != "hello" {
		t.Fatalf("first cluster: %q, %v", got, err)
	}
	if fresh.id.get() != "aaaa" {
		t.Fatalf("adopted %q, want aaaa", fresh.id.get())
	}
	b2, err := os.ReadFile(fresh.id.path)
	if err != nil || string(b2) != "aaaa\n" {
		t.Fatalf("stored %q, %v", b2, err)
	}
	if _, err := exchange(t, b, fresh); !errors.Is(err, ErrClusterMismatch) {
		t.Fatalf("second cluster: %v, want ErrClusterMismatch", err)
	}
	// And it survives a restart.
	c, err := loadClusterID(filepath.Dir(fresh.id.path), hclog.NewNullLogger())
	if err != nil || c.get() != "aaaa" {
		t.Fatalf("reloaded %q, %v", c.get(), err)
	}
}

func TestClusterStreamLayer_RawConnectionWithoutPreambleIsRefused(t *testing.T) {
	t.Parallel()
	a := testLayer(t, "aaaa")
	// What a coordd without cluster ids sends first: a raft RPC type byte
	// and msgpack.
	conn, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("\x00\x81\xa4Term\x05............")); err != nil {
		t.Fatal(err)
	}
	in, err := a.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := in.Read(make([]byte, 1)); !errors.Is(err, ErrClusterMismatch) {
		t.Fatalf("read: %v, want ErrClusterMismatch", err)
	}
	// The refusing side closed the connection.
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after a refusal")
	}
}

// TestClusterStreamLayer_ConnectionClosedWithoutAWordIsPlainEOF: a port
// probe (make run's check for a busy port, a monitoring system) or a peer
// that dials and hangs up says nothing; hashicorp/raft logs every error of
// a connection's first read at ERROR unless it is io.EOF itself.
func TestClusterStreamLayer_ConnectionClosedWithoutAWordIsPlainEOF(t *testing.T) {
	t.Parallel()
	a := testLayer(t, "aaaa")
	conn, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	in, err := a.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := in.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read: %v, want io.EOF itself", err)
	}
}

// TestClusterStreamLayer_SlowPeerDoesNotBlockAccept: the preamble is read
// on the connection's first Read, not in Accept.
func TestClusterStreamLayer_SlowPeerDoesNotBlockAccept(t *testing.T) {
	t.Parallel()
	a := testLayer(t, "aaaa")
	silent, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	done := make(chan error, 1)
	go func() {
		c, err := a.Accept()
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept blocked on a peer that sent nothing")
	}
	if got, err := exchange(t, testLayer(t, "aaaa"), a); err != nil || got != "hello" {
		t.Fatalf("after a silent peer: %q, %v", got, err)
	}
}

// TestClusterStreamLayer_UnderNetworkTransport: Raft's transport pools
// connections and sends many RPCs over each; the preamble goes once per
// connection, so RPCs keep working, and a transport of another cluster
// gets errors only.
func TestClusterStreamLayer_UnderNetworkTransport(t *testing.T) {
	t.Parallel()
	newTransport := func(id string) *raft.NetworkTransport {
		tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: testLayer(t, id), MaxPool: 2, Timeout: 2 * time.Second, Logger: hclog.NewNullLogger(),
		})
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	server, client, stranger := newTransport("aaaa"), newTransport("aaaa"), newTransport("bbbb")
	go func() {
		for rpc := range server.Consumer() {
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
		}
	}()
	for i := range 50 {
		var resp raft.AppendEntriesResponse
		err := client.AppendEntries("s", server.LocalAddr(), &raft.AppendEntriesRequest{Term: uint64(i)}, &resp)
		if err != nil || !resp.Success || resp.Term != 7 {
			t.Fatalf("rpc %d: %+v, %v", i, resp, err)
		}
	}
	var resp raft.AppendEntriesResponse
	if err := stranger.AppendEntries("s", server.LocalAddr(), &raft.AppendEntriesRequest{Term: 1}, &resp); err == nil {
		t.Fatalf("a transport of another cluster got an answer: %+v", resp)
	}
}

func TestDeriveClusterID_SameListSameID_NameAndPeersChangeIt(t *testing.T) {
	t.Parallel()
	peers := []Peer{{ID: "n1", RaftAddr: "a:1", HTTPAddr: "a:2"}, {ID: "n2", RaftAddr: "b:1", HTTPAddr: "b:2"}}
	reversed := []Peer{peers[1], peers[0]}
	id := DeriveClusterID("", peers)
	if !validClusterID(id) || len(id) != 16 {
		t.Fatalf("id %q", id)
	}
	if DeriveClusterID("", reversed) != id {
		t.Fatal("the order of the bootstrap list changed the id")
	}
	if DeriveClusterID("prod", peers) == id {
		t.Fatal("the cluster name did not change the id")
	}
	other := []Peer{peers[0], {ID: "n2", RaftAddr: "c:1", HTTPAddr: "b:2"}}
	if DeriveClusterID("", other) == id {
		t.Fatal("another peer address did not change the id")
	}
}

func TestLoadClusterID_RefusesAGarbledFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, clusterIDFile), []byte("not an id!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadClusterID(dir, hclog.NewNullLogger()); !errors.Is(err, ErrDataCorrupt) {
		t.Fatalf("%v, want ErrDataCorrupt", err)
	}
}

// TestClusterStreamLayer_NodeWithoutIDTalksToOlderBuilds: in a rolling
// upgrade from a build without cluster ids, a node that has no id yet
// neither sends a preamble nor requires one, and passes the peer's bytes
// through untouched, even when they start like the preamble.
func TestClusterStreamLayer_NodeWithoutIDTalksToOlderBuilds(t *testing.T) {
	t.Parallel()
	upgraded := testLayer(t, "")
	for _, msg := range []string{"\x00\x81\xa4Term\x05", "coordinate", "coordd-cluster\x02xyz"} {
		conn, err := net.Dial("tcp", upgraded.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		in, err := upgraded.Accept()
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(in, got); err != nil || string(got) != msg {
			t.Fatalf("read %q, %v; want %q", got, err, msg)
		}
		in.Close()
		conn.Close()
	}
	// And what it dials carries nothing but the caller's bytes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, err := upgraded.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := out.Write([]byte{0x01}); err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(peer, first); err != nil || first[0] != 0x01 {
		t.Fatalf("an older build would read %x first, %v", first, err)
	}
	if upgraded.id.get() != "" {
		t.Fatalf("adopted %q from a peer without an id", upgraded.id.get())
	}
}

// TestPeerClusterID_ReadsTheHeaderOfAnyAnswer: a node's cluster id is read
// from the header of any answer (an ACL's 401 included), empty before it
// has one, and absent from a build without cluster ids.
func TestPeerClusterID_ReadsTheHeaderOfAnyAnswer(t *testing.T) {
	t.Parallel()
	s := &Server{log: hclog.NewNullLogger()}
	for _, tt := range []struct {
		id, want string
		status   int
		wrap     bool
		known    bool
	}{
		{"aaaa", "aaaa", http.StatusOK, true, true},
		{"aaaa", "aaaa", http.StatusUnauthorized, true, true},
		{"", "", http.StatusOK, true, true},
		{"", "", http.StatusOK, false, false},
	} {
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(tt.status) })
		if tt.wrap {
			h = withClusterID(h, &clusterID{id: tt.id})
		}
		srv := httptest.NewServer(h)
		id, known, err := s.peerClusterID(context.Background(), srv.Listener.Addr().String())
		srv.Close()
		if err != nil || id != tt.want || known != tt.known {
			t.Errorf("%+v: got %q, %v, %v", tt, id, known, err)
		}
	}
}

// TestClusterStreamLayer_CloseInboundWaitsForTheHandlers: hashicorp/raft
// serves an accepted connection on a goroutine of its own, which it does
// not stop on Shutdown, and which may be inside a heartbeat (writing the
// term to the stable store) when the node closes that store: Raft then
// panics ("failed to save current term: database not open", seen under
// load in make test). closeInbound closes every accepted connection and
// returns only once each handler has let go of its connection (Raft's
// handler closes it when it returns).
func TestClusterStreamLayer_CloseInboundWaitsForTheHandlers(t *testing.T) {
	t.Parallel()
	a := testLayer(t, "aaaa")
	var handlers []chan struct{}
	for range 2 {
		conn, err := a.Dial(raft.ServerAddress(a.Addr().String()), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		in, err := a.Accept()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		handlers = append(handlers, done)
		go func() { // as Raft's handleConn: read until an error, then close
			for {
				if _, err := in.Read(make([]byte, 1)); err != nil {
					if err != io.EOF { // Raft logs any other error at ERROR
						t.Errorf("read after closeInbound: %v, want io.EOF itself", err)
					}
					time.Sleep(200 * time.Millisecond) // a heartbeat being handled
					// done first: closeInbound may return as soon as
					// the connection is closed.
					close(done)
					in.Close()
					return
				}
			}
		}()
	}
	start := time.Now()
	a.closeInbound(10 * time.Second)
	for i, done := range handlers {
		select {
		case <-done:
		default:
			t.Fatalf("closeInbound returned after %s while handler %d still ran", time.Since(start), i)
		}
	}
	// Nothing accepted: it returns at once.
	start = time.Now()
	testLayer(t, "bbbb").closeInbound(10 * time.Second)
	if time.Since(start) > time.Second {
		t.Fatal("closeInbound without connections waited")
	}
}
