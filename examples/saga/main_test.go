package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/internal/testcluster"
)

// The example against a real in-process cluster: three orders complete,
// the fourth (above the payment limit) is compensated.
func TestSagaExample_CompletesOrdersAndCompensatesTheRefusedOne(t *testing.T) {
	cl := testcluster.New(t, 3)
	var eps []string
	for _, n := range cl.Nodes {
		eps = append(eps, n.HTTPAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out bytes.Buffer
	if err := run(ctx, c, &out, 4, "t"); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"order t-1 (amount 20): completed", "order t-2 (amount 40): completed",
		"order t-3 (amount 60): completed", "order t-4 (amount 500): compensated step 1 (payment): payment refused: amount above the limit of 100"} {
		if !strings.Contains(got, want) {
			t.Errorf("output does not say %q:\n%s", want, got)
		}
	}
}
