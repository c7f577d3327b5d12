package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coordd/coordd/test/jepsen/lockclient/agent"
)

// The lock clients' agent processes (command test/jepsen/lockclient).
const (
	lockAgentPackage = "github.com/coordd/coordd/test/jepsen/lockclient"
	// lockAgentBuildTimeout bounds the build of the agent (a cold build
	// cache compiles net/http).
	lockAgentBuildTimeout = 3 * time.Minute
	// lockAgentStartTimeout bounds the start of an agent: until it
	// answers its first ping.
	lockAgentStartTimeout = 10 * time.Second
	// lockAgentMargin is how long past the timeout of its request an agent
	// may take to answer before it is given up as lost (and killed).
	lockAgentMargin = 3 * time.Second
	// lockAgentReapTimeout bounds the wait for a killed agent's exit.
	lockAgentReapTimeout = 10 * time.Second
)

// errAgentLost is the error of a request to an agent that is lost: it
// exited, did not answer in time or was killed. A request it had been sent
// may still have been sent on by it.
var errAgentLost = errors.New("lock client agent lost")

// buildLockAgent builds the agent command into a new temporary folder,
// which cleanup removes.
func buildLockAgent(ctx context.Context) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "coordd-jepsen-lockclient-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "lockclient")
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	out, err := exec.CommandContext(ctx, gobin, "build", "-o", bin, lockAgentPackage).CombinedOutput()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go build %s: %v\n%s", lockAgentPackage, err, out)
	}
	return bin, cleanup, nil
}

// lockAgent is the agent process of one lock client. It is an
// http.RoundTripper: an http.Client with a lockAgent as its Transport sends
// its requests from the agent's process, so that the workload's do and
// outcome apply unchanged. Requests are served one at a time; a request
// that the agent does not answer within its timeout plus lockAgentMargin
// makes the agent lost, and it is killed.
type lockAgent struct {
	p       int
	cmd     *exec.Cmd
	enc     *json.Encoder
	answers chan agent.Answer
	exited  chan struct{} // closed when the process was reaped
	logf    func(format string, args ...any)

	mu     sync.Mutex // held by each request, and by a pause
	nextID uint64

	lostMu sync.Mutex
	lost   string // why the agent is lost; "": it is not
}

// startLockAgent starts the agent of lock client p from bin and waits
// until it answers. The agent is in a process group of its own, and is
// killed if the thread that started it dies.
func startLockAgent(bin string, p int, logf func(format string, args ...any)) (*lockAgent, error) {
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = &lineLogger{logf: logf, prefix: fmt.Sprintf("lock client p%d: agent: ", p)}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lock client p%d: starting the agent: %w", p, err)
	}
	a := &lockAgent{p: p, cmd: cmd, enc: json.NewEncoder(stdin), answers: make(chan agent.Answer, 1),
		exited: make(chan struct{}), logf: logf}
	go a.read(stdout)
	ans, err := a.call(agent.Request{Op: agent.OpPing}, lockAgentStartTimeout)
	if err == nil && ans.PID != cmd.Process.Pid {
		err = fmt.Errorf("it says its pid is %d", ans.PID)
	}
	if err != nil {
		a.kill()
		return nil, fmt.Errorf("lock client p%d: agent process %d: %w", p, cmd.Process.Pid, err)
	}
	return a, nil
}

// read passes on the agent's answers until its stdout ends, then reaps
// it.
func (a *lockAgent) read(stdout io.Reader) {
	dec := json.NewDecoder(stdout)
	for {
		var ans agent.Answer
		if err := dec.Decode(&ans); err != nil {
			if !errors.Is(err, io.EOF) {
				a.lose("unreadable answer: " + err.Error())
			}
			break
		}
		select {
		case a.answers <- ans:
		default:
			a.lose(fmt.Sprintf("answer %d to no request", ans.ID))
		}
	}
	err := a.cmd.Wait()
	a.lose(fmt.Sprintf("exited (%v)", err))
	close(a.exited)
}

// pid is the agent's process id.
func (a *lockAgent) pid() int { return a.cmd.Process.Pid }

// lose marks the agent lost (the first reason is kept, and logged unless
// the workload killed it) and kills it. Signals go through os.Process,
// which does not signal a process already reaped.
func (a *lockAgent) lose(why string) {
	a.lostMu.Lock()
	first := a.lost == ""
	if first {
		a.lost = why
	}
	a.lostMu.Unlock()
	if first && why != "killed" {
		a.logf("lock client p%d: agent process %d lost: %s", a.p, a.pid(), why)
	}
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
}

// lostReason says why the agent is lost, or "" if it is not.
func (a *lockAgent) lostReason() string {
	a.lostMu.Lock()
	defer a.lostMu.Unlock()
	return a.lost
}

// kill kills the agent (SIGKILL works on a stopped process too) and waits
// until it was reaped.
func (a *lockAgent) kill() {
	a.lose("killed")
	select {
	case <-a.exited:
	case <-time.After(lockAgentReapTimeout):
		a.logf("lock client p%d: agent process %d not reaped within %s of its SIGKILL", a.p, a.pid(), lockAgentReapTimeout)
	}
}

// call sends req and waits up to wait for its answer.
func (a *lockAgent) call(req agent.Request, wait time.Duration) (agent.Answer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if why := a.lostReason(); why != "" {
		return agent.Answer{}, fmt.Errorf("%w: %s", errAgentLost, why)
	}
	a.nextID++
	req.ID = a.nextID
	if err := a.enc.Encode(req); err != nil {
		a.lose("sending a request: " + err.Error())
		return agent.Answer{}, fmt.Errorf("%w: %v", errAgentLost, err)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case ans := <-a.answers:
			if ans.ID != req.ID {
				continue // cannot happen: a late answer makes the agent lost
			}
			if ans.Invalid != "" {
				return ans, fmt.Errorf("lock client agent: invalid %s request: %s", req.Op, ans.Invalid)
			}
			return ans, nil
		case <-a.exited:
			return agent.Answer{}, fmt.Errorf("%w: %s", errAgentLost, a.lostReason())
		case <-t.C:
			a.lose(fmt.Sprintf("no answer to a %s request within %s", req.Op, wait))
			return agent.Answer{}, fmt.Errorf("%w: no answer within %s", errAgentLost, wait)
		}
	}
}

// RoundTrip sends r from the agent's process, with the time left before
// r's deadline (requestTimeout if it has none) as its timeout. A
// transport error of the agent comes back as an error that errors.Is
// syscall.ECONNREFUSED or context.DeadlineExceeded, as a direct request's
// would; a lost agent's as errAgentLost.
func (a *lockAgent) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	timeout := requestTimeout
	if dl, ok := r.Context().Deadline(); ok {
		timeout = time.Until(dl)
	}
	if timeout <= 0 {
		return nil, context.DeadlineExceeded
	}
	ans, err := a.call(agent.Request{Op: agent.OpHTTP, Method: r.Method, URL: r.URL.String(), Header: r.Header, Body: body,
		TimeoutMs: (timeout + time.Millisecond - 1).Milliseconds()}, timeout+lockAgentMargin)
	if err != nil {
		return nil, err
	}
	if ans.Transport != "" {
		return nil, &agentTransportError{class: ans.Transport, detail: ans.Detail}
	}
	return &http.Response{
		Status:     fmt.Sprintf("%d %s", ans.Status, http.StatusText(ans.Status)),
		StatusCode: ans.Status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: ans.Header, Body: io.NopCloser(bytes.NewReader(ans.Body)), ContentLength: int64(len(ans.Body)),
		Request: r,
	}, nil
}

// agentTransportError is a transport error of a request the agent sent.
type agentTransportError struct{ class, detail string }

func (e *agentTransportError) Error() string { return "lock client agent: " + e.detail }

func (e *agentTransportError) Timeout() bool { return e.class == agent.TransportTimeout }

func (e *agentTransportError) Unwrap() error {
	switch e.class {
	case agent.TransportRefused:
		return syscall.ECONNREFUSED
	case agent.TransportTimeout:
		return context.DeadlineExceeded
	}
	return nil
}

// keepAlive has the agent keep lease alive at ttl/3 through random nodes
// until halt.
func (a *lockAgent) keepAlive(lease uint64, ttl time.Duration, nodes []string, seed uint64) error {
	_, err := a.call(agent.Request{Op: agent.OpKeepAlive, Lease: lease, TTLMs: ttl.Milliseconds(), Nodes: nodes, Seed: seed},
		lockAgentMargin)
	return err
}

// halt stops the agent's keepalives and returns their counts.
func (a *lockAgent) halt() (agent.KeepAliveStats, error) {
	// The agent waits for a keepalive in flight (at most requestTimeout).
	ans, err := a.call(agent.Request{Op: agent.OpHalt}, requestTimeout+lockAgentMargin)
	return ans.KeepAlives, err
}

// pause stops the agent's process with SIGSTOP, sleeps d and resumes it
// with SIGCONT: no request is in flight from the workload (pause waits for
// it), but the agent's keepalives stop wherever they are.
func (a *lockAgent) pause(d time.Duration) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if why := a.lostReason(); why != "" {
		return fmt.Errorf("%w: %s", errAgentLost, why)
	}
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		a.lose("SIGSTOP: " + err.Error())
		return err
	}
	time.Sleep(d)
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		a.lose("SIGCONT: " + err.Error())
		return err
	}
	return nil
}

// lineLogger logs what is written to it, line by line, with a prefix.
type lineLogger struct {
	logf   func(format string, args ...any)
	prefix string
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(l.buf[:i])); line != "" && l.logf != nil {
			l.logf("%s%s", l.prefix, line)
		}
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}
