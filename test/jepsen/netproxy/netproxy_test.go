package netproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// noReply is how long a cut must keep a call unanswered.
const noReply = 200 * time.Millisecond

func Test_Link_ForwardsBothWaysOverManyConnections(t *testing.T) {
	s := mustNewServer(t, "b")
	l, err := NewLink(s.Addr(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	if l.Target() != s.Addr() {
		t.Fatalf("Target = %q, want %q", l.Target(), s.Addr())
	}

	var wg sync.WaitGroup
	for i := range 4 {
		c := mustDial(t, l.Addr())
		wg.Go(func() {
			for j := range 20 {
				msg := fmt.Sprintf("conn%d-msg%d", i, j)
				if got, err := c.call(msg, 5*time.Second); err != nil || got != "b:"+msg {
					t.Errorf("call %q: got %q, %v", msg, got, err)
					return
				}
			}
		})
	}
	wg.Wait()

	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB in one line
	mustDial(t, l.Addr()).mustCall(t, "b", big)
	if st := l.Forward().Stats(); st.Delivered < int64(len(big)) || st.Dropped != 0 {
		t.Fatalf("forward stats %+v", st)
	}
	if st := l.Stats(); st.Accepted != 5 || st.BlackHoled != 0 {
		t.Fatalf("link stats %+v", st)
	}
}

func Test_Link_ForwardsHalfCloseAfterTheData(t *testing.T) {
	s := mustNewServer(t, "b")
	l, err := NewLink(s.Addr(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	c := mustDial(t, l.Addr())
	if _, err := c.Write([]byte("one\ntwo\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c.r)
	if err != nil || string(got) != "b:one\nb:two\n" {
		t.Fatalf("got %q, %v; want both replies then EOF", got, err)
	}
	poll(t, "the proxied connection to close", func() bool { return l.Stats().Active == 0 })
}

func Test_Link_ResetsConnectionsToADeadTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	l, err := NewLink(dead, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	// The reset may come so fast that even the connect fails.
	if c, err := net.DialTimeout("tcp", l.Addr(), 2*time.Second); err == nil {
		t.Cleanup(func() { _ = c.Close() })
		(&client{Conn: c, r: bufio.NewReader(c)}).mustBeReset(t)
	}
	poll(t, "the dial failure", func() bool { return l.Stats().DialFailures == 1 })
	if st := l.Stats(); st.DialFailures != 1 {
		t.Fatalf("link stats %+v, want one dial failure", st)
	}
}

func Test_New_RefusesNonLoopbackAddresses(t *testing.T) {
	for _, addr := range []string{"10.0.0.1:7000", "0.0.0.0:7000", "localhost:7000", ":7000", "127.0.0.1"} {
		if _, err := NewLink(addr, nil, nil); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("NewLink(%q): %v, want ErrNotLoopback", addr, err)
		}
		if _, err := New(map[string]string{"a": "127.0.0.1:7000", "b": addr}); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("New with %q: %v, want ErrNotLoopback", addr, err)
		}
	}
	if l, err := NewLink("[::1]:7000", nil, nil); err != nil {
		t.Errorf("NewLink([::1]): %v", err)
	} else {
		_ = l.Close()
	}
}

func Test_Net_PeerAddrs_LeadEachNodeToEachPeer(t *testing.T) {
	n, servers := mustNewNet(t, "n1", "n2", "n3")
	if got := n.Nodes(); fmt.Sprint(got) != "[n1 n2 n3]" {
		t.Fatalf("Nodes = %v", got)
	}
	seen := make(map[string]bool)
	for _, from := range n.Nodes() {
		addrs, err := n.PeerAddrs(from)
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) != 2 {
			t.Fatalf("PeerAddrs(%s) = %v", from, addrs)
		}
		for to, addr := range addrs {
			if addr == servers[to].Addr() || seen[addr] {
				t.Fatalf("PeerAddrs(%s)[%s] = %s: not a proxy of its own", from, to, addr)
			}
			seen[addr] = true
			if err := checkLoopback(addr); err != nil {
				t.Fatal(err)
			}
			mustDial(t, addr).mustCall(t, to, "hello from "+from)
		}
	}
	if _, err := n.PeerAddrs("n9"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("PeerAddrs(n9): %v", err)
	}
	if _, err := n.Link("n1", "n1"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("Link(n1, n1): %v", err)
	}
	if err := n.CutOneWay("n1", "n9"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("CutOneWay(n1, n9): %v", err)
	}
}

func Test_Net_CutBothWays_SilencesOldAndNewConnections_HealRestores(t *testing.T) {
	n, servers := mustNewNet(t, "a", "b", "c")
	ab := mustDialVia(t, n, "a", "b")
	ba := mustDialVia(t, n, "b", "a")
	ab.mustCall(t, "b", "before")
	ba.mustCall(t, "a", "before")

	if err := n.Cut("a", "b"); err != nil {
		t.Fatal(err)
	}
	recvA, recvB := servers["a"].received.Load(), servers["b"].received.Load()
	ab.mustGetNoReply(t, "during", noReply)
	ba.mustGetNoReply(t, "during", noReply)
	fresh := mustDialVia(t, n, "a", "b")
	fresh.mustGetNoReply(t, "fresh", noReply)
	if ra, rb := servers["a"].received.Load(), servers["b"].received.Load(); ra != recvA || rb != recvB {
		t.Fatalf("bytes crossed the cut: a got %d→%d, b got %d→%d", recvA, ra, recvB, rb)
	}
	if st := n.Stats(); st.Dropped == 0 {
		t.Fatalf("stats %+v: nothing dropped", st)
	}
	if l, _ := n.Link("a", "b"); l.Stats().BlackHoled != 1 {
		t.Fatalf("link a->b stats %+v, want one black-holed connection", l.Stats())
	}
	// The rest of the mesh is unaffected.
	mustDialVia(t, n, "a", "c").mustCall(t, "c", "around")
	mustDialVia(t, n, "c", "b").mustCall(t, "b", "around")
	if got := n.Describe(); got != "a->b: cut\nb->a: cut" {
		t.Fatalf("Describe = %q", got)
	}

	n.Heal()
	// Connections that lost bytes are reset rather than resumed with a hole.
	ab.mustBeReset(t)
	ba.mustBeReset(t)
	fresh.mustBeReset(t)
	mustDialVia(t, n, "a", "b").mustCall(t, "b", "after")
	mustDialVia(t, n, "b", "a").mustCall(t, "a", "after")
	if got := n.Describe(); got != "healthy" {
		t.Fatalf("Describe = %q", got)
	}
}

func Test_Net_ResetBetween_ResetsOnlyThatPair(t *testing.T) {
	n, _ := mustNewNet(t, "a", "b", "c")
	ab := mustDialVia(t, n, "a", "b")
	ba := mustDialVia(t, n, "b", "a")
	ac := mustDialVia(t, n, "a", "c")
	ab.mustCall(t, "b", "1")
	ba.mustCall(t, "a", "1")
	ac.mustCall(t, "c", "1")
	if err := n.ResetBetween("b", "a"); err != nil {
		t.Fatal(err)
	}
	ab.mustBeReset(t)
	ba.mustBeReset(t)
	ac.mustCall(t, "c", "2")
	mustDialVia(t, n, "a", "b").mustCall(t, "b", "2")
}

func Test_Net_CutOneWay_DropsOnlyThatDirection(t *testing.T) {
	n, servers := mustNewNet(t, "a", "b")
	if err := n.CutOneWay("a", "b"); err != nil {
		t.Fatal(err)
	}
	// a dials b: a's request never reaches b.
	recvB := servers["b"].received.Load()
	mustDialVia(t, n, "a", "b").mustGetNoReply(t, "a asks b", noReply)
	if got := servers["b"].received.Load(); got != recvB {
		t.Fatalf("b received %d bytes through a cut a->b", got-recvB)
	}
	// b dials a: b's request reaches a, a's answer is dropped.
	recvA := servers["a"].received.Load()
	ba := mustDialVia(t, n, "b", "a")
	ba.mustGetNoReply(t, "b asks a", noReply)
	poll(t, "a to receive b's request", func() bool {
		return servers["a"].received.Load() == recvA+int64(len("b asks a\n"))
	})
	if f, _ := n.Faults("b", "a"); !f.IsZero() {
		t.Fatalf("b->a faults %v", f)
	}
	if st := mustDirection(t, n, "b", "a").Stats(); st.Dropped != 0 || st.Delivered == 0 {
		t.Fatalf("b->a stats %+v, want delivered bytes and none dropped", st)
	}

	// The other way round.
	n.Heal()
	ba.mustBeReset(t)
	if err := n.CutOneWay("b", "a"); err != nil {
		t.Fatal(err)
	}
	recvB = servers["b"].received.Load()
	mustDialVia(t, n, "a", "b").mustGetNoReply(t, "a asks b", noReply)
	poll(t, "b to receive a's request", func() bool {
		return servers["b"].received.Load() == recvB+int64(len("a asks b\n"))
	})

	n.Heal()
	mustDialVia(t, n, "a", "b").mustCall(t, "b", "healed")
	mustDialVia(t, n, "b", "a").mustCall(t, "a", "healed")
}

func mustDirection(t *testing.T, n *Net, from, to string) *Direction {
	t.Helper()
	d, err := n.Direction(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func Test_Net_Delay_AddsAtLeastTheDelayAndKeepsOrder(t *testing.T) {
	n, _ := mustNewNet(t, "a", "b")
	const d = 100 * time.Millisecond
	atLeast := func(from, to string, min time.Duration) {
		t.Helper()
		c := mustDialVia(t, n, from, to)
		start := time.Now()
		c.mustCall(t, to, "ping")
		if took := time.Since(start); took < min {
			t.Fatalf("%s->%s round trip took %v, want at least %v", from, to, took, min)
		}
	}
	if err := n.Delay("a", "b", d, 0); err != nil {
		t.Fatal(err)
	}
	atLeast("a", "b", d) // the request is delayed
	atLeast("b", "a", d) // the answer is delayed
	if err := n.Delay("b", "a", d, 0); err != nil {
		t.Fatal(err)
	}
	atLeast("a", "b", 2*d)
	if err := n.SlowAll(d/2, 0); err != nil {
		t.Fatal(err)
	}
	atLeast("b", "a", d)

	// With jitter larger than the delay, chunks still arrive in order.
	if err := n.SlowAll(time.Millisecond, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c := mustDialVia(t, n, "a", "b")
	const count = 50
	for i := range count {
		if _, err := fmt.Fprintf(c, "m%d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range count {
		line, err := c.r.ReadString('\n')
		if want := fmt.Sprintf("b:m%d\n", i); err != nil || line != want {
			t.Fatalf("reply %d: got %q, %v; want %q", i, line, err, want)
		}
	}
	big := strings.Repeat("x", 1<<20)
	c.mustCall(t, "b", big)
}

func Test_Net_Loss_ResetsSomeConnections(t *testing.T) {
	n, _ := mustNewNet(t, "a", "b")
	if err := n.Loss("a", "b", 1); err != nil {
		t.Fatal(err)
	}
	c := mustDialVia(t, n, "a", "b")
	if got, err := c.call("lost", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("call through a fully lossy link: %q, %v; want a reset", got, err)
	}
	if st := mustDirection(t, n, "a", "b").Stats(); st.Resets != 1 {
		t.Fatalf("a->b stats %+v, want one reset", st)
	}

	if err := n.Loss("a", "b", 0.5); err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	for i := range 30 {
		got, err := mustDialVia(t, n, "a", "b").call(fmt.Sprint("m", i), 5*time.Second)
		switch {
		case err == nil && got == fmt.Sprint("b:m", i):
			ok++
		case err != nil && !isTimeout(err):
			failed++
		default:
			t.Fatalf("call %d: %q, %v", i, got, err)
		}
	}
	// Each outcome has probability 2^-30 of never happening.
	if ok == 0 || failed == 0 {
		t.Fatalf("%d calls went through and %d were reset; want some of each", ok, failed)
	}

	n.Heal()
	for range 5 {
		mustDialVia(t, n, "a", "b").mustCall(t, "b", "healed")
	}
}

func Test_Net_Partition_SetsTheCutsFromScratch(t *testing.T) {
	n, _ := mustNewNet(t, "a", "b", "c", "d")
	cuts := func() string {
		var s []string
		for _, x := range n.Nodes() {
			for _, y := range n.Nodes() {
				if f, err := n.Faults(x, y); err == nil && f.Cut {
					s = append(s, x+y)
				}
			}
		}
		return strings.Join(s, " ")
	}
	if err := n.Isolate("d"); err != nil {
		t.Fatal(err)
	}
	if got := cuts(); got != "ad bd cd da db dc" {
		t.Fatalf("after Isolate(d): %s", got)
	}
	if err := n.Delay("a", "b", time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}
	// c and d are listed nowhere: together they form one more group.
	if err := n.Partition([]string{"a"}, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if got := cuts(); got != "ab ac ad ba bc bd ca cb da db" {
		t.Fatalf("after Partition([a], [b]): %s", got)
	}
	if f, _ := n.Faults("a", "b"); f.Delay != time.Millisecond {
		t.Fatalf("Partition dropped a delay: %v", f)
	}
	if err := n.Partition(); err != nil {
		t.Fatal(err)
	}
	if got := cuts(); got != "" {
		t.Fatalf("after Partition(): %s", got)
	}
	if err := n.Partition([]string{"a", "b"}, []string{"b"}); !errors.Is(err, ErrInvalidPartition) {
		t.Fatalf("a node in two groups: %v", err)
	}
	if err := n.Partition([]string{"z"}); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("unknown node: %v", err)
	}
}

func Test_Faults_InvalidValuesAreRefusedAndNotApplied(t *testing.T) {
	n, _ := mustNewNet(t, "a", "b")
	for _, f := range []Faults{{Loss: 1.5}, {Loss: -0.1}, {Delay: -time.Second}, {Jitter: -1}} {
		if err := n.Set("a", "b", f); !errors.Is(err, ErrInvalidFaults) {
			t.Errorf("Set(%+v): %v, want ErrInvalidFaults", f, err)
		}
	}
	if err := n.LoseAll(2); !errors.Is(err, ErrInvalidFaults) {
		t.Errorf("LoseAll(2): %v", err)
	}
	if err := n.SlowAll(-time.Second, 0); !errors.Is(err, ErrInvalidFaults) {
		t.Errorf("SlowAll(-1s): %v", err)
	}
	if got := n.Describe(); got != "healthy" {
		t.Fatalf("invalid faults were applied: %s", got)
	}
	f := Faults{Cut: true, Delay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond, Loss: 0.1}
	if got := f.String(); got != "cut delay=50ms±10ms loss=0.1" {
		t.Fatalf("String = %q", got)
	}
}

func Test_Net_Close_StopsEverythingWithoutLeaks(t *testing.T) {
	servers := map[string]*lineServer{}
	addrs := map[string]string{}
	for _, id := range []string{"a", "b", "c"} {
		servers[id] = mustNewServer(t, id)
		addrs[id] = servers[id].Addr()
	}
	leaks := checkNoGoroutineLeak(t)
	n, err := New(addrs)
	if err != nil {
		t.Fatal(err)
	}
	// Open connections in every state: healthy, black-holed, holed by a
	// cut, and with chunks held by a long delay.
	mustDialVia(t, n, "a", "b").mustCall(t, "b", "idle")
	if err := n.Cut("a", "c"); err != nil {
		t.Fatal(err)
	}
	_, _ = mustDialVia(t, n, "a", "c").call("black-holed", 10*time.Millisecond)
	_, _ = mustDialVia(t, n, "c", "a").call("black-holed", 10*time.Millisecond)
	if err := n.Delay("b", "c", time.Hour, 0); err != nil {
		t.Fatal(err)
	}
	_, _ = mustDialVia(t, n, "b", "c").call("delayed", 10*time.Millisecond)
	addr := mustLinkAddr(t, n, "b", "c")

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Fatal("a closed link still accepts connections")
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	leaks()
}

func mustLinkAddr(t *testing.T, n *Net, from, to string) string {
	t.Helper()
	l, err := n.Link(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return l.Addr()
}

func Test_Net_ConcurrentFaultsAndTraffic_HealAfterwards(t *testing.T) {
	ids := []string{"a", "b", "c"}
	servers := map[string]*lineServer{}
	addrs := map[string]string{}
	for _, id := range ids {
		servers[id] = mustNewServer(t, id)
		addrs[id] = servers[id].Addr()
	}
	leaks := checkNoGoroutineLeak(t)
	n, err := New(addrs)
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	pick := func() (string, string) {
		i := rand.IntN(3)
		return ids[i], ids[(i+1+rand.IntN(2))%3]
	}
	for range 6 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				from, to := pick()
				l, err := n.Link(from, to)
				if err != nil {
					t.Error(err)
					return
				}
				conn, err := net.DialTimeout("tcp", l.Addr(), time.Second)
				if err != nil {
					continue // reset by a fault before the connect returned
				}
				c := &client{Conn: conn, r: bufio.NewReader(conn)}
				for range 5 {
					if _, err := c.call("x", 30*time.Millisecond); err != nil {
						break
					}
				}
				_ = conn.Close()
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			from, to := pick()
			var err error
			switch rand.IntN(9) {
			case 0:
				err = n.Cut(from, to)
			case 1:
				err = n.CutOneWay(from, to)
			case 2:
				err = n.Isolate(from)
			case 3:
				err = n.Partition([]string{from}, []string{to})
			case 4:
				err = n.Delay(from, to, time.Millisecond, 5*time.Millisecond)
			case 5:
				err = n.Loss(from, to, 0.3)
			case 6:
				n.ResetAll()
				_ = n.Describe()
				_ = n.Stats()
			default:
				n.Heal()
			}
			if err != nil {
				t.Error(err)
			}
		}
	})
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	n.Heal()
	for _, from := range ids {
		for _, to := range ids {
			if from != to {
				mustDialVia(t, n, from, to).mustCall(t, to, "after the storm")
			}
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	leaks()
}
