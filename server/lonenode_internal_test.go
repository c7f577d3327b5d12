package server

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// lockedWriter is a bytes.Buffer for a logger and a test reading it.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestLoneNode_SaysWhatToAdd: a node with an empty data dir and neither a
// bootstrap list nor a join address waits forever for a cluster to add it,
// and Raft itself only logs "no known peers, aborting election". It says,
// once, what to add; a node given either says nothing of the kind.
func TestLoneNode_SaysWhatToAdd(t *testing.T) {
	const hint = "this node has no Raft state and neither -bootstrap nor -join"
	for _, tc := range []struct {
		name      string
		bootstrap bool
		want      bool
	}{{"alone", false, true}, {"bootstrapped", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var logs lockedWriter
			cfg := corruptChildConfig(t, t.TempDir(), hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}))
			if !tc.bootstrap {
				cfg.Bootstrap = nil
			}
			s, err := Start(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Abort()
			got := logs.String() // Start logs it before it returns
			if strings.Contains(got, hint) != tc.want || strings.Count(got, hint) > 1 {
				t.Fatalf("hint %q expected %v:\n%s", hint, tc.want, got)
			}
			if tc.want && !strings.Contains(got, "-bootstrap '"+cfg.NodeID+"="+cfg.RaftAddr+","+cfg.HTTPAddr+"'") {
				t.Fatalf("the hint does not give the -bootstrap for this node alone:\n%s", got)
			}
		})
	}
}
