package netproxy

import (
	"bufio"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lineServer stands in for a node: it answers every line "x" with "id:x"
// and closes a connection when the client half-closes it.
type lineServer struct {
	id       string
	ln       net.Listener
	received atomic.Int64 // bytes read from clients

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func mustNewServer(t *testing.T, id string) *lineServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &lineServer{id: id, ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

func (s *lineServer) Addr() string { return s.ln.Addr().String() }

func (s *lineServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

func (s *lineServer) handle(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		s.received.Add(int64(len(line)))
		if err != nil {
			return
		}
		if _, err := c.Write([]byte(s.id + ":" + line)); err != nil {
			return
		}
	}
}

func (s *lineServer) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	_ = s.ln.Close()
	s.wg.Wait()
}

// client is a connection to a lineServer, possibly through a proxy.
type client struct {
	net.Conn
	r *bufio.Reader
}

func mustDial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{Conn: c, r: bufio.NewReader(c)}
}

// call sends msg as a line and returns the reply line without its newline.
func (c *client) call(msg string, timeout time.Duration) (string, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

// mustCall fails the test unless msg is answered by server id.
func (c *client) mustCall(t *testing.T, id, msg string) {
	t.Helper()
	got, err := c.call(msg, 5*time.Second)
	if err != nil {
		t.Fatalf("call %q: %v", msg, err)
	}
	if want := id + ":" + msg; got != want {
		t.Fatalf("call %q: got %q, want %q", msg, got, want)
	}
}

// mustGetNoReply fails the test unless msg gets no reply at all within wait
// (the connection stays open and silent).
func (c *client) mustGetNoReply(t *testing.T, msg string, wait time.Duration) {
	t.Helper()
	got, err := c.call(msg, wait)
	if !isTimeout(err) {
		t.Fatalf("call %q through a cut: got %q, %v; want a timeout", msg, got, err)
	}
}

// mustBeReset fails the test unless the connection is closed by the proxy
// (a read error that is not a timeout) within a generous time.
func (c *client) mustBeReset(t *testing.T) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := c.r.ReadString('\n')
	if err == nil || isTimeout(err) {
		t.Fatalf("connection was not closed by the proxy: %v", err)
	}
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// mustNewNet starts a lineServer per id and a Net between them.
func mustNewNet(t *testing.T, ids ...string) (*Net, map[string]*lineServer) {
	t.Helper()
	servers := make(map[string]*lineServer)
	addrs := make(map[string]string)
	for _, id := range ids {
		servers[id] = mustNewServer(t, id)
		addrs[id] = servers[id].Addr()
	}
	n, err := New(addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n, servers
}

// mustDialVia dials, as node from, the proxy to node to.
func mustDialVia(t *testing.T, n *Net, from, to string) *client {
	t.Helper()
	l, err := n.Link(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return mustDial(t, l.Addr())
}

// poll fails the test unless cond holds within 5s.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkNoGoroutineLeak returns a func that polls until the goroutine count
// is back to at most what it is now.
func checkNoGoroutineLeak(t *testing.T) func() {
	t.Helper()
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			now := runtime.NumGoroutine()
			if now <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines, %d before:\n%s", now, before, buf[:runtime.Stack(buf, true)])
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
