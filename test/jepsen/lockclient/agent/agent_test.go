package agent

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
)

// session runs Serve over pipes and sends requests to it.
type session struct {
	t    *testing.T
	in   *io.PipeWriter
	dec  *json.Decoder
	done chan error
	id   uint64
}

func newSession(t *testing.T) *session {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &session{t: t, in: inW, dec: json.NewDecoder(outR), done: make(chan error, 1)}
	go func() {
		err := Serve(inR, outW)
		outW.Close()
		s.done <- err
	}()
	t.Cleanup(func() { s.close() })
	return s
}

func (s *session) call(req Request) Answer {
	s.t.Helper()
	s.id++
	req.ID = s.id
	if err := json.NewEncoder(s.in).Encode(req); err != nil {
		s.t.Fatalf("sending %+v: %v", req, err)
	}
	var a Answer
	if err := s.dec.Decode(&a); err != nil {
		s.t.Fatalf("reading the answer to %+v: %v", req, err)
	}
	if a.ID != req.ID {
		s.t.Fatalf("answer %d to request %d", a.ID, req.ID)
	}
	return a
}

// close ends the agent's input and waits until Serve returned.
func (s *session) close() error {
	s.in.Close()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(10 * time.Second):
		s.t.Fatal("Serve did not return within 10 s of the end of its input")
		return nil
	}
}

func TestServe_RelaysHTTPAndClassifiesTransportErrors(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Content-Type", r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	// A port that refuses connections.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	s := newSession(t)
	if a := s.call(Request{Op: OpPing}); a.PID != os.Getpid() || a.Invalid != "" {
		t.Errorf("ping: %+v, want pid %d", a, os.Getpid())
	}
	a := s.call(Request{Op: OpHTTP, Method: http.MethodPost, URL: srv.URL + "/echo", TimeoutMs: 2000,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"token":7}`)})
	if a.Status != http.StatusCreated || string(a.Body) != `{"token":7}` || a.Header.Get("X-Content-Type") != "application/json" || a.Transport != "" {
		t.Errorf("echo: %+v", a)
	}
	start := time.Now()
	a = s.call(Request{Op: OpHTTP, Method: http.MethodGet, URL: srv.URL + "/slow", TimeoutMs: 200})
	if a.Transport != TransportTimeout || a.Status != 0 {
		t.Errorf("slow: %+v, want a timeout", a)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a request with a 200 ms timeout took %s", d)
	}
	if a = s.call(Request{Op: OpHTTP, Method: http.MethodGet, URL: closed + "/x", TimeoutMs: 2000}); a.Transport != TransportRefused {
		t.Errorf("closed port: %+v, want refused", a)
	}
	for _, bad := range []Request{{Op: "dance"}, {Op: OpHTTP, URL: srv.URL}, {Op: OpKeepAlive, Lease: 1}} {
		if a := s.call(bad); a.Invalid == "" {
			t.Errorf("%+v: answered %+v, want invalid", bad, a)
		}
	}
	if err := s.close(); err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestServe_KeepsTheLeaseAliveUntilHaltOrLost(t *testing.T) {
	t.Parallel()
	var alive, lost atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/leases/7/keepalive", func(w http.ResponseWriter, r *http.Request) {
		alive.Add(1)
		w.Write([]byte(`{"id":7,"ttl_ms":300}`))
	})
	mux.HandleFunc("POST /v1/leases/8/keepalive", func(w http.ResponseWriter, r *http.Request) {
		lost.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeLeaseNotFound}})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	s := newSession(t)
	if a := s.call(Request{Op: OpHalt}); a.KeepAlives != (KeepAliveStats{}) {
		t.Errorf("halt without keepalives: %+v", a)
	}
	// TTL 300 ms: a keepalive every 100 ms.
	if a := s.call(Request{Op: OpKeepAlive, Lease: 7, TTLMs: 300, Nodes: []string{srv.URL, srv.URL}, Seed: 1}); a.Invalid != "" {
		t.Fatalf("keepalive: %+v", a)
	}
	time.Sleep(550 * time.Millisecond)
	a := s.call(Request{Op: OpHalt})
	st := a.KeepAlives
	if st.Sent < 4 || st.Sent > 8 || st.OK != st.Sent || st.Lost || int64(st.Sent) != alive.Load() {
		t.Errorf("after 550 ms at TTL 300 ms: %+v (server saw %d), want about 6 ok", st, alive.Load())
	}
	time.Sleep(250 * time.Millisecond)
	if n := alive.Load(); n != int64(st.Sent) {
		t.Errorf("%d keepalives after halt", n-int64(st.Sent))
	}

	if a := s.call(Request{Op: OpKeepAlive, Lease: 8, TTLMs: 300, Nodes: []string{srv.URL}}); a.Invalid != "" {
		t.Fatalf("keepalive: %+v", a)
	}
	time.Sleep(300 * time.Millisecond)
	if a := s.call(Request{Op: OpHalt}); a.KeepAlives != (KeepAliveStats{Sent: 1, Lost: true}) {
		t.Errorf("lost lease: %+v, want one keepalive, lost", a.KeepAlives)
	}
	if n := lost.Load(); n != 1 {
		t.Errorf("%d keepalives of a lost lease, want 1", n)
	}

	// The end of the input stops running keepalives.
	if a := s.call(Request{Op: OpKeepAlive, Lease: 7, TTLMs: 300, Nodes: []string{srv.URL}}); a.Invalid != "" {
		t.Fatalf("keepalive: %+v", a)
	}
	if err := s.close(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	// One keepalive in flight when the input ended may still reach the
	// server after Serve returned (its cancel cuts the answer, not the
	// request); none may be sent after.
	n := alive.Load()
	time.Sleep(250 * time.Millisecond)
	if m := alive.Load(); m > n+1 {
		t.Errorf("%d keepalives after the end of the input", m-n)
	}
}
