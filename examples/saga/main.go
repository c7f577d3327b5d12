// Command saga runs orders as sagas over three small fenced services:
// reserve stock (inventory), charge the card (payment), book a courier
// (shipping). Each step has a compensation (release, refund, cancel).
//
// The services run here on loopback. Each deduplicates calls by the step's
// idempotency key, refuses a stale fencing token (fencing.Guard), and keeps
// a tombstone for a compensated key so that a late call cannot take effect
// after its compensation. Payment refuses orders above 100: those sagas
// are compensated.
//
// The saga runner is whoever leads the election "saga/shop" in coordd:
// start this program twice and kill the first one in the middle; the
// second resumes every unfinished order without running a step twice.
//
//	make run                       # a local 3-node cluster
//	go run ./examples/saga         # or: -endpoints H:P,... -orders 5
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/client/saga"
	"github.com/coordd/coordd/fencing"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103", "coordd HTTP addresses")
	orders := flag.Int("orders", 4, "orders to place (every fourth is above the payment limit)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := client.New(ctx, client.Config{Endpoints: strings.Split(*endpoints, ",")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "saga:", err)
		os.Exit(1)
	}
	defer c.Close()
	if err := run(ctx, c, os.Stdout, *orders, fmt.Sprint("run-", time.Now().Unix())); err != nil {
		fmt.Fprintln(os.Stderr, "saga:", err)
		os.Exit(1)
	}
}

// run starts the services and a runner, places n orders (ids prefix-1..n)
// and prints how each ended.
func run(ctx context.Context, c *client.Client, out io.Writer, n int, prefix string) error {
	base, stopServices, err := startServices()
	if err != nil {
		return err
	}
	defer stopServices()
	r, err := saga.NewRunner(c, "shop", saga.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, orderSaga(base))
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- r.Run(runCtx) }()

	for i := 1; i <= n; i++ {
		amount := 20 * i
		if i%4 == 0 {
			amount = 500 // above the payment limit: compensated
		}
		id := fmt.Sprintf("%s-%d", prefix, i)
		if err := r.Submit(ctx, "order", id, []byte(strconv.Itoa(amount))); err != nil {
			return err
		}
	}
	for i := 1; i <= n; i++ {
		rec, err := r.Wait(ctx, fmt.Sprintf("%s-%d", prefix, i))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "order %s (amount %s): %s %s\n", rec.ID, rec.Input, rec.Status, rec.Error)
	}
	cancel()
	<-ran
	return nil
}

func orderSaga(base string) saga.Definition {
	step := func(svc string) saga.Step {
		return saga.Step{Name: svc, Action: call(base, svc, "do"), Compensate: call(base, svc, "undo")}
	}
	return saga.Definition{Type: "order", Steps: []saga.Step{step("inventory"), step("payment"), step("shipping")}}
}

// call sends a step to a service with the runner's fencing token and the
// step's idempotency key. A refusal is permanent; anything else that is
// not 200 is retried by the runner.
func call(base, svc, op string) func(ctx context.Context, sc saga.StepContext) error {
	return func(ctx context.Context, sc saga.StepContext) error {
		u := fmt.Sprintf("%s/%s/%s?key=%s&amount=%s", base, svc, op, sc.Key, sc.Input)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set(fencing.HeaderName, sc.Fence.Name)
		req.Header.Set(fencing.HeaderToken, fencing.Token(sc.Fence.Token).String())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		switch resp.StatusCode {
		case http.StatusOK:
			return nil
		case http.StatusConflict, http.StatusUnprocessableEntity:
			return saga.Permanent(fmt.Errorf("%s refused: %s", svc, strings.TrimSpace(string(msg))))
		}
		return fmt.Errorf("%s: %d %s", svc, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
}

// service is one fenced, idempotent service.
type service struct {
	name  string
	guard *fencing.Guard
	mu    sync.Mutex
	done  map[string]bool // keys whose action took effect
	tomb  map[string]bool // compensated keys
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op, key := strings.TrimPrefix(r.URL.Path, "/"+s.name+"/"), r.URL.Query().Get("key")
	tok, err := fencing.ParseToken(r.Header.Get(fencing.HeaderToken))
	if err != nil || key == "" {
		http.Error(w, "need a key and a fencing token", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.guard.Check(r.Context(), r.Header.Get(fencing.HeaderName), tok); err != nil {
		status := http.StatusConflict
		if !errors.Is(err, fencing.ErrStaleToken) {
			status = http.StatusBadRequest
		}
		http.Error(w, err.Error(), status)
		return
	}
	switch op {
	case "do":
		switch {
		case s.tomb[key]:
			http.Error(w, "compensated already", http.StatusConflict)
		case s.done[key]:
			// A repeat (the runner died before it recorded the step): done.
		case s.name == "payment" && amountOf(r) > 100:
			http.Error(w, "amount above the limit of 100", http.StatusUnprocessableEntity)
		default:
			s.done[key] = true
		}
	case "undo":
		s.tomb[key] = true
		delete(s.done, key)
	default:
		http.NotFound(w, r)
	}
}

// startServices serves inventory, payment and shipping on one loopback
// port, each with its own fencing guard.
func startServices() (base string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	for _, name := range []string{"inventory", "payment", "shipping"} {
		mux.Handle("/"+name+"/", &service{name: name, guard: fencing.NewGuard(fencing.NewMemoryStore()),
			done: map[string]bool{}, tomb: map[string]bool{}})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func amountOf(r *http.Request) int {
	n, _ := strconv.Atoi(r.URL.Query().Get("amount"))
	return n
}
