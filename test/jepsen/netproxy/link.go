package netproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// bufSize is the largest chunk: one read from a sending socket.
	bufSize = 32 << 10
	// queueLen is how many chunks of one stream may be in flight (read,
	// not yet delivered) while a delay holds them.
	queueLen = 1024
	// dialTimeout bounds the dial to the target; on loopback a dead target
	// refuses at once.
	dialTimeout = 2 * time.Second
)

// LinkStats count the connections a link accepted.
type LinkStats struct {
	Accepted     int64 // connections accepted
	BlackHoled   int64 // accepted while the forward direction was cut: never dialed onwards
	DialFailures int64 // the target could not be dialed (e.g. the node is down)
	Active       int   // connections open now
}

// Link is a TCP proxy from one node to one peer: it listens on 127.0.0.1 on
// an ephemeral port and forwards each accepted connection to the peer's real
// address. The forward stream (dialer→target) obeys the forward Direction,
// the backward stream (target→dialer) the backward one. It is safe for
// concurrent use.
type Link struct {
	target   string
	fwd, bwd *Direction
	ln       net.Listener
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[*pconn]struct{}
	closed bool

	accepted, blackHoled, dialFailures atomic.Int64
}

// NewLink starts a proxy to target, which must be a loopback IP:port. A nil
// direction gets a fresh healthy one of its own.
func NewLink(target string, forward, backward *Direction) (*Link, error) {
	if err := checkLoopback(target); err != nil {
		return nil, err
	}
	if forward == nil {
		forward = NewDirection("forward")
	}
	if backward == nil {
		backward = NewDirection("backward")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{target: target, fwd: forward, bwd: backward, ln: ln, ctx: ctx, cancel: cancel,
		conns: make(map[*pconn]struct{})}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr is the address to dial instead of the target.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Target is the real address connections are forwarded to.
func (l *Link) Target() string { return l.target }

// Forward is the direction of the bytes from dialer to target.
func (l *Link) Forward() *Direction { return l.fwd }

// Backward is the direction of the bytes from target to dialer.
func (l *Link) Backward() *Direction { return l.bwd }

// Stats returns the connection counts so far.
func (l *Link) Stats() LinkStats {
	l.mu.Lock()
	active := len(l.conns)
	l.mu.Unlock()
	return LinkStats{Accepted: l.accepted.Load(), BlackHoled: l.blackHoled.Load(),
		DialFailures: l.dialFailures.Load(), Active: active}
}

// Reset resets every connection open now (both sides get an RST). New
// connections are accepted as usual.
func (l *Link) Reset() {
	for _, c := range l.snapshot() {
		c.close(true)
	}
}

// Close stops listening, resets every connection and waits until all of the
// link's goroutines have returned.
func (l *Link) Close() error {
	l.mu.Lock()
	already := l.closed
	l.closed = true
	l.mu.Unlock()
	if already {
		l.wg.Wait()
		return nil
	}
	err := l.ln.Close()
	l.cancel()
	l.Reset()
	l.wg.Wait()
	return err
}

func (l *Link) snapshot() []*pconn {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := make([]*pconn, 0, len(l.conns))
	for c := range l.conns {
		cs = append(cs, c)
	}
	return cs
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		src, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: back off like net/http.
			select {
			case <-time.After(5 * time.Millisecond):
				continue
			case <-l.ctx.Done():
				return
			}
		}
		l.accepted.Add(1)
		c := &pconn{l: l, src: src, done: make(chan struct{})}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = src.Close()
			return
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(c)
	}
}

func (l *Link) remove(c *pconn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// serve runs one proxied connection; it is the forward stream's reader.
func (l *Link) serve(c *pconn) {
	defer l.wg.Done()
	fwd := &stream{c: c, dir: l.fwd, q: make(chan chunk, queueLen)}
	cut, ok := c.register(fwd, true)
	if !ok {
		return
	}
	if cut {
		l.blackHoled.Add(1)
		fwd.discard(c.src)
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	dst, err := d.DialContext(l.ctx, "tcp", l.target)
	if err != nil {
		l.dialFailures.Add(1)
		c.close(true)
		return
	}
	if !c.setDst(dst) {
		return
	}
	bwd := &stream{c: c, dir: l.bwd, q: make(chan chunk, queueLen)}
	if _, ok := c.register(bwd, false); !ok {
		return
	}
	c.pending.Store(2)
	l.wg.Add(3)
	go func() { defer l.wg.Done(); fwd.write(dst) }()
	go func() { defer l.wg.Done(); bwd.read(dst) }()
	go func() { defer l.wg.Done(); bwd.write(c.src) }()
	fwd.read(c.src)
}

// pconn is one proxied connection: src was accepted, dst dialed.
type pconn struct {
	l       *Link
	src     net.Conn
	done    chan struct{} // closed when the connection closes
	pending atomic.Int32  // streams not yet ended

	mu      sync.Mutex
	dst     net.Conn
	streams []*stream
	closed  bool
}

// register registers s with its direction unless c is already closed (lock
// order: pconn.mu, then Direction.mu).
func (c *pconn) register(s *stream, holeIfCut bool) (cut, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false, false
	}
	c.streams = append(c.streams, s)
	return s.dir.register(s, holeIfCut), true
}

// setDst records the dialed conn, or closes it if c closed meanwhile.
func (c *pconn) setDst(dst net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = dst.Close()
		return false
	}
	c.dst = dst
	return true
}

// streamEnded is called when a stream has delivered its EOF; the second
// one closes the connection.
func (c *pconn) streamEnded() {
	if c.pending.Add(-1) == 0 {
		c.close(false)
	}
}

// close closes both sides, with an RST if reset, and forgets c. Idempotent.
func (c *pconn) close(reset bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.done)
	streams := c.streams
	conns := []net.Conn{c.src, c.dst}
	c.mu.Unlock()
	for _, nc := range conns {
		if nc == nil {
			continue
		}
		if tc, ok := nc.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0)
		}
		_ = nc.Close()
	}
	for _, s := range streams {
		s.dir.unregister(s)
	}
	c.l.remove(c)
}

type chunk struct {
	data []byte
	due  time.Time // zero: at once
}

// stream is one direction of one proxied connection: a reader that queues
// chunks with their due time, and a writer that delivers them in order.
type stream struct {
	c     *pconn
	dir   *Direction
	q     chan chunk // closed by the reader at EOF
	holed bool       // guarded by dir.mu: bytes were discarded, never deliver again
}

func (s *stream) read(in net.Conn) {
	buf := make([]byte, bufSize)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			ch := chunk{data: bytes.Clone(buf[:n])}
			if f := s.dir.Faults(); f.Delay > 0 || f.Jitter > 0 {
				d := f.Delay
				if f.Jitter > 0 {
					d += rand.N(f.Jitter)
				}
				ch.due = time.Now().Add(d)
			}
			select {
			case s.q <- ch:
			case <-s.c.done:
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				close(s.q)
			} else {
				s.c.close(true)
			}
			return
		}
	}
}

func (s *stream) write(out net.Conn) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var ch chunk
		var more bool
		select {
		case ch, more = <-s.q:
		case <-s.c.done:
			return
		}
		if !more {
			s.eof(out)
			return
		}
		if !ch.due.IsZero() {
			if d := time.Until(ch.due); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-s.c.done:
					return
				}
			}
		}
		f, holed := s.dir.admit(s)
		switch {
		case f.Cut:
			s.dir.dropped.Add(int64(len(ch.data)))
			continue
		case holed:
			s.c.close(true)
			return
		case f.Loss > 0 && rand.Float64() < f.Loss:
			s.dir.resets.Add(1)
			s.c.close(true)
			return
		}
		if _, err := out.Write(ch.data); err != nil {
			s.c.close(true)
			return
		}
		s.dir.delivered.Add(int64(len(ch.data)))
	}
}

// eof forwards the sender's half-close, unless it is lost to a cut (then
// the connection stays open, holed, until the cut heals or it is closed).
func (s *stream) eof(out net.Conn) {
	f, holed := s.dir.admit(s)
	switch {
	case f.Cut:
		return
	case holed:
		s.c.close(true)
		return
	}
	if cw, ok := out.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			s.c.close(true)
			return
		}
	}
	s.c.streamEnded()
}

// discard black-holes a connection accepted while its forward direction
// was cut: it reads and drops everything until the connection closes (the
// stream is holed, so a heal resets it).
func (s *stream) discard(in net.Conn) {
	buf := make([]byte, bufSize)
	for {
		n, err := in.Read(buf)
		s.dir.dropped.Add(int64(n))
		if err != nil {
			s.c.close(true)
			return
		}
	}
}
