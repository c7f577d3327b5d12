package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/server"
)

// A leader loop: campaign, do fenced work while leading, and stop the
// moment leadership is lost. Here the loss is provoked by revoking the
// session's lease behind its back.
func Example_leaderLoop() {
	endpoints, stop := startExampleCluster()
	defer stop()
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	s, err := client.NewSession(ctx, c, 2*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	lead, err := client.NewElection(s, "report-writer").Campaign(ctx, "worker-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("leading with a fencing token:", lead.Token() > 0)

	go func() { time.Sleep(300 * time.Millisecond); c.Revoke(ctx, s.Lease()) }()
	for lead.Context().Err() == nil {
		// Fenced work: the token goes with every write, so a resource can
		// refuse this process once a newer leader exists.
		c.Put(lead.Context(), "report/owner", []byte(fmt.Sprint(lead.Token())))
		time.Sleep(50 * time.Millisecond)
	}
	cause := context.Cause(lead.Context())
	fmt.Println("stopped, leadership lost:", errors.Is(cause, client.ErrNotHolder) || errors.Is(cause, client.ErrLeaseLost))
	// Output:
	// leading with a fencing token: true
	// stopped, leadership lost: true
}

// A mutex held by a session: TryLock fails while another session holds it.
func ExampleMutex() {
	endpoints, stop := startExampleCluster()
	defer stop()
	ctx := context.Background()
	c, _ := client.New(ctx, client.Config{Endpoints: endpoints})
	a, _ := client.NewSession(ctx, c, 5*time.Second)
	b, _ := client.NewSession(ctx, c, 5*time.Second)
	defer a.Close(ctx)
	defer b.Close(ctx)

	ma, mb := client.NewMutex(a, "backup", client.LockOptions{}), client.NewMutex(b, "backup", client.LockOptions{})
	if err := ma.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("b:", mb.TryLock(ctx))
	first := ma.Token()
	ma.Unlock(ctx)
	fmt.Println("b:", mb.TryLock(ctx), "token increased:", mb.Token() > first)
	// Output:
	// b: coordd: lock held by another session
	// b: <nil> token increased: true
}

// startExampleCluster starts three coordd nodes in this process (real Raft
// and bbolt in a temp dir, HTTP on loopback) and returns their addresses.
func startExampleCluster() ([]string, func()) {
	dir, err := os.MkdirTemp("", "coordd-example-")
	if err != nil {
		log.Fatal(err)
	}
	var peers []server.Peer
	var lns [][2]net.Listener
	for i := range 3 {
		r, _ := net.Listen("tcp", "127.0.0.1:0")
		h, _ := net.Listen("tcp", "127.0.0.1:0")
		lns = append(lns, [2]net.Listener{r, h})
		peers = append(peers, server.Peer{ID: fmt.Sprintf("n%d", i+1), RaftAddr: r.Addr().String(), HTTPAddr: h.Addr().String()})
	}
	var nodes []*server.Server
	var endpoints []string
	for i, p := range peers {
		s, err := server.Start(context.Background(), server.Config{
			NodeID: p.ID, DataDir: fmt.Sprintf("%s/%s", dir, p.ID), RaftListener: lns[i][0], HTTPListener: lns[i][1],
			Bootstrap: peers, Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
		})
		if err != nil {
			log.Fatal(err)
		}
		nodes = append(nodes, s)
		endpoints = append(endpoints, p.HTTPAddr)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ready := 0
		for _, n := range nodes {
			if n.Ready() == nil {
				ready++
			}
		}
		if ready == len(nodes) {
			break
		}
		if time.Now().After(deadline) {
			log.Fatal("example cluster not ready")
		}
	}
	return endpoints, func() {
		for _, n := range nodes {
			n.Shutdown(context.Background())
		}
		os.RemoveAll(dir)
	}
}
