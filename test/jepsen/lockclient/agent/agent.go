// Package agent is the body of the lock-client agent (command
// test/jepsen/lockclient) and its protocol: one client of the fenced-lock
// workload (test/jepsen/workload) runs in an agent process of its own, so
// that a pause of that client is a real SIGSTOP of a process, keepalives
// and all.
//
// The workload drives its agent over the agent's stdin and stdout, one JSON
// Request per line in, one JSON Answer per line out, in order (the agent
// serves one request at a time, and answers each one). The requests:
//
//   - "ping": the agent answers with its process id.
//   - "http": the agent sends one HTTP request (Method, URL, Header, Body)
//     within TimeoutMs and answers with what it got: Status, Header, Body,
//     or a Transport error class and its Detail. The agent does not judge
//     the outcome: the workload does, as for its own requests.
//   - "keepalive": the agent keeps Lease alive in a goroutine of its own,
//     a keepalive every TTLMs/3 through a random node of Nodes, until
//     "halt", a lease_not_found answer or the end of its stdin. A
//     keepalive already running is halted first.
//   - "halt": the agent stops the keepalives, waits until they stopped and
//     answers with their counts.
//
// A request the agent cannot serve is answered with Invalid set. The agent
// exits when its stdin ends.
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/coordd/coordd/api"
)

// Request ops.
const (
	OpPing      = "ping"
	OpHTTP      = "http"
	OpKeepAlive = "keepalive"
	OpHalt      = "halt"
)

// Transport error classes of an Answer to an "http" request.
const (
	// TransportRefused: the connection was refused; the request was
	// certainly not sent.
	TransportRefused = "refused"
	// TransportTimeout: the request timed out (TimeoutMs).
	TransportTimeout = "timeout"
	// TransportError: any other transport error (a cut connection, a body
	// that could not be read); the request may have been sent.
	TransportError = "error"
)

// Request is one request of the workload to its agent.
type Request struct {
	// ID is echoed in the Answer.
	ID uint64 `json:"id"`
	Op string `json:"op"`

	// "http": the request to send, and its timeout.
	Method    string      `json:"method,omitempty"`
	URL       string      `json:"url,omitempty"`
	Header    http.Header `json:"header,omitempty"`
	Body      []byte      `json:"body,omitempty"`
	TimeoutMs int64       `json:"timeout_ms,omitempty"`

	// "keepalive": the lease, its TTL, the nodes' base URLs and a seed for
	// the choice of nodes.
	Lease uint64   `json:"lease,omitempty"`
	TTLMs int64    `json:"ttl_ms,omitempty"`
	Nodes []string `json:"nodes,omitempty"`
	Seed  uint64   `json:"seed,omitempty"`
}

// Answer is the agent's answer to one Request.
type Answer struct {
	ID uint64 `json:"id"`
	// Invalid says why the request could not be served.
	Invalid string `json:"invalid,omitempty"`

	// "ping": the agent's process id.
	PID int `json:"pid,omitempty"`

	// "http": the answer (Status 0 if there was none), or the class of the
	// transport error and its text.
	Status    int         `json:"status,omitempty"`
	Header    http.Header `json:"header,omitempty"`
	Body      []byte      `json:"body,omitempty"`
	Transport string      `json:"transport,omitempty"`
	Detail    string      `json:"detail,omitempty"`

	// "halt": what the keepalives did.
	KeepAlives KeepAliveStats `json:"keepalives,omitzero"`
}

// KeepAliveStats counts the keepalives of one lease.
type KeepAliveStats struct {
	Sent int `json:"sent,omitempty"`
	OK   int `json:"ok,omitempty"`
	// Lost: a keepalive was answered lease_not_found (and the keepalives
	// stopped).
	Lost bool `json:"lost,omitempty"`
}

// maxKeepAliveTimeout bounds one keepalive request (and TTL/3 too).
const maxKeepAliveTimeout = 2 * time.Second

// Serve serves the requests read from in, writing the answers to out,
// until in ends (it then returns nil) or cannot be decoded, or out cannot
// be written.
func Serve(in io.Reader, out io.Writer) error {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	tr.IdleConnTimeout = 30 * time.Second
	s := &server{c: &http.Client{Transport: tr}}
	defer tr.CloseIdleConnections()
	defer s.halt()
	dec := json.NewDecoder(in)
	enc := json.NewEncoder(out)
	for {
		var req Request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading a request: %w", err)
		}
		a := s.serve(req)
		a.ID = req.ID
		if err := enc.Encode(a); err != nil {
			return fmt.Errorf("writing an answer: %w", err)
		}
	}
}

type server struct {
	c    *http.Client
	keep *keeper // nil: no keepalives running
}

func (s *server) serve(req Request) Answer {
	switch req.Op {
	case OpPing:
		return Answer{PID: os.Getpid()}
	case OpHTTP:
		if req.Method == "" || req.URL == "" || req.TimeoutMs <= 0 {
			return Answer{Invalid: "http: method, url and timeout_ms are required"}
		}
		return s.http(req)
	case OpKeepAlive:
		if req.Lease == 0 || req.TTLMs <= 0 || len(req.Nodes) == 0 {
			return Answer{Invalid: "keepalive: lease, ttl_ms and nodes are required"}
		}
		s.halt()
		s.keep = startKeeper(s.c, req)
		return Answer{}
	case OpHalt:
		return Answer{KeepAlives: s.halt()}
	default:
		return Answer{Invalid: fmt.Sprintf("unknown op %q", req.Op)}
	}
}

// http sends one request and reads the whole answer within its timeout.
func (s *server) http(req Request) Answer {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(req.TimeoutMs)*time.Millisecond)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, req.Method, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return Answer{Invalid: "http: " + err.Error()}
	}
	for k, vs := range req.Header {
		hr.Header[k] = vs
	}
	resp, err := s.c.Do(hr)
	if err != nil {
		return Answer{Transport: Classify(err), Detail: err.Error()}
	}
	defer resp.Body.Close()
	a := Answer{Status: resp.StatusCode, Header: resp.Header}
	a.Body, err = io.ReadAll(resp.Body)
	if err != nil {
		a.Transport, a.Detail = Classify(err), err.Error()
	}
	return a
}

// Classify is the class of a transport error: TransportRefused,
// TransportTimeout or TransportError.
func Classify(err error) string {
	var t interface{ Timeout() bool }
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return TransportRefused
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &t) && t.Timeout():
		return TransportTimeout
	default:
		return TransportError
	}
}

// halt stops the keepalives, if any run, and returns their counts.
func (s *server) halt() KeepAliveStats {
	if s.keep == nil {
		return KeepAliveStats{}
	}
	st := s.keep.halt()
	s.keep = nil
	return st
}

// keeper keeps one lease alive until halted or the lease is lost.
type keeper struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	st KeepAliveStats
}

func startKeeper(c *http.Client, req Request) *keeper {
	ctx, cancel := context.WithCancel(context.Background())
	k := &keeper{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		k.loop(ctx, c, req)
	}()
	return k
}

func (k *keeper) halt() KeepAliveStats {
	k.cancel()
	<-k.done
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.st
}

// loop sends a keepalive every TTL/3 (sooner, through another node, after
// a failure) until ctx is done or the lease is lost.
func (k *keeper) loop(ctx context.Context, c *http.Client, req Request) {
	interval := time.Duration(req.TTLMs) * time.Millisecond / 3
	timeout := min(maxKeepAliveTimeout, interval)
	g := rand.New(rand.NewPCG(req.Seed, req.Lease))
	path := fmt.Sprintf("/v1/leases/%d/keepalive", req.Lease)
	for ctx.Err() == nil {
		sent := time.Now()
		status, code := keepAlive(ctx, c, req.Nodes[g.IntN(len(req.Nodes))]+path, timeout)
		k.mu.Lock()
		k.st.Sent++
		if status/100 == 2 {
			k.st.OK++
		}
		if code == api.CodeLeaseNotFound {
			k.st.Lost = true
		}
		k.mu.Unlock()
		var next time.Duration
		switch {
		case status/100 == 2:
			next = interval - time.Since(sent)
		case code == api.CodeLeaseNotFound:
			return
		default:
			next = 50 * time.Millisecond
		}
		if !sleep(ctx, next) {
			return
		}
	}
}

// keepAlive sends one keepalive; it returns the status (0: no answer) and
// the API's error code, if any.
func keepAlive(ctx context.Context, c *http.Client, url string, timeout time.Duration) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return 0, ""
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, ""
	}
	var eb api.ErrorBody
	if resp.StatusCode/100 != 2 && json.Unmarshal(data, &eb) == nil {
		return resp.StatusCode, eb.Error.Code
	}
	return resp.StatusCode, ""
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
