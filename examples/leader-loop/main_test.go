package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/fencing"
	"github.com/coordd/coordd/internal/testcluster"
)

// The leader loop of docs/client.md, against a real in-process cluster and a fenced
// resource, through a Raft leader kill: the loop keeps writing with its
// token, no write of it is ever refused, and the tokens never go down.
func TestLeaderLoop_DoesFencedWorkAndSurvivesARaftLeaderKill(t *testing.T) {
	cl := testcluster.New(t, 3)
	guard := fencing.NewGuard(fencing.NewMemoryStore())
	var mu sync.Mutex
	var tokens []fencing.Token
	rejected := 0
	fenced := guard.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		_, tok, _ := fencing.TokenFromContext(r.Context())
		mu.Lock()
		tokens = append(tokens, tok)
		mu.Unlock()
	}))
	resource := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		fenced.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			mu.Lock()
			rejected++
			mu.Unlock()
		}
		w.WriteHeader(rec.Code)
	}))
	defer resource.Close()

	var eps []string
	for _, n := range cl.Nodes {
		eps = append(eps, n.HTTPAddr)
	}
	c, err := client.New(context.Background(), client.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, resource.URL+"/data/report", "worker-1") }()

	writes := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(tokens)
	}
	testcluster.Poll(t, 10*time.Second, func() error {
		if writes() < 3 {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	cl.Kill(cl.Leader())
	before := writes()
	testcluster.Poll(t, 15*time.Second, func() error {
		if writes() < before+5 {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(tokens); i++ {
		if tokens[i] < tokens[i-1] {
			t.Fatalf("token went down: %d after %d", tokens[i], tokens[i-1])
		}
	}
	if rejected != 0 {
		t.Fatalf("%d writes refused", rejected)
	}
	t.Logf("%d fenced writes across a Raft leader kill, tokens %d..%d", len(tokens), tokens[0], tokens[len(tokens)-1])
}
