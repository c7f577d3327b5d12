package server_test

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/server"
)

// relay accepts connections and forwards them to the address target
// returns at that moment, counting them.
type relay struct {
	ln    net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
}

func newRelay(t *testing.T, target func() string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns.Add(1)
			up, err := net.Dial("tcp", target())
			if err != nil {
				c.Close()
				continue
			}
			r.wg.Add(2)
			go func() { defer r.wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer r.wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return r
}

func Test_PeerRaftAddrs_NodesDialPeersThroughTheGivenAddresses(t *testing.T) {
	t.Parallel()
	var targets sync.Map // node id -> its real raft address
	relays := map[string]*relay{}
	addrs := map[string]string{}
	for _, id := range []string{"n1", "n2", "n3"} {
		r := newRelay(t, func() string { a, _ := targets.Load(id); s, _ := a.(string); return s })
		relays[id], addrs[id] = r, r.ln.Addr().String()
	}
	c := testcluster.New(t, 3, func(cfg *server.Config) {
		targets.Store(cfg.NodeID, cfg.RaftAddr)
		cfg.PeerRaftAddrs = addrs
	})
	if r := putRetry(t, c, c.Followers()[0], "through", "relays"); r.Status != http.StatusOK {
		t.Fatalf("put: %d %s", r.Status, r.Body)
	}
	used := 0
	for id, r := range relays {
		if r.conns.Load() > 0 {
			used++
		} else {
			t.Logf("relay of %s unused", id)
		}
	}
	// The leader dials both followers; followers dial each other when they
	// campaign. At least the leader's two links go through relays.
	if used < 2 {
		t.Fatalf("only %d relays carried connections", used)
	}
}
