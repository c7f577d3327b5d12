// Command fenced-store is a tiny key-value resource server that only accepts
// writes from the current holder of a coordd lock.
//
// Every PUT must carry the lock name and the holder's fencing token in the
// Coordd-Fencing-Name and Coordd-Fencing-Token headers. The server remembers
// the highest token it has accepted per name (in a bbolt file, so a restart
// does not forget it) and refuses a write with a lower token with 409: a
// deposed holder that wakes up late cannot overwrite the new holder's data.
//
//	go run ./examples/fenced-store -addr 127.0.0.1:7400 -data ./data/fenced-store.db
//
// Endpoints:
//
//	PUT /data/{key}   body is the value (UTF-8, at most 1 MiB); needs both headers
//	GET /data/{key}   {"key","value","name","token"}: the value and who wrote it
//	GET /metrics      Prometheus counters of the fencing guard
//
// The values themselves are kept in memory only: this example is about the
// tokens, which are persisted. See README.md in this folder for a walk through
// with curl.
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
	"path/filepath"
	"syscall"
	"time"

	"github.com/coordd/coordd/fencing"
	"github.com/prometheus/client_golang/prometheus"
)

// config is what the command line sets.
type config struct {
	addr string // HTTP listen address
	data string // bbolt file of the highest fencing tokens
}

func parseFlags(args []string, output io.Writer) (config, error) {
	fs := flag.NewFlagSet("fenced-store", flag.ContinueOnError)
	fs.SetOutput(output)
	var c config
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7400", "HTTP listen address")
	fs.StringVar(&c.data, "data", "./data/fenced-store.db", "bbolt file that keeps the highest fencing token per lock name")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.data == "" {
		return config{}, errors.New("-data must name a file")
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fenced-store:", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, logger, nil); err != nil {
		logger.Error("fenced-store failed", "err", err)
		os.Exit(1)
	}
}

// shutdownTimeout bounds how long in-flight requests may take after a signal.
const shutdownTimeout = 5 * time.Second

// run serves until ctx is done, then shuts down cleanly: it stops accepting,
// waits for in-flight requests (at most shutdownTimeout) and closes the token
// file. ready, if not nil, is called with the listening address.
func run(ctx context.Context, cfg config, logger *slog.Logger, ready func(net.Addr)) error {
	if dir := filepath.Dir(cfg.data); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
	}
	store, err := fencing.OpenBoltStore(cfg.data)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			logger.Error("close token store", "err", err)
		}
	}()

	reg := prometheus.NewRegistry()
	guard := fencing.NewGuard(store, fencing.WithRegisterer(reg))
	srv := &http.Server{
		Handler:           newHandler(guard, reg),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	logger.Info("fenced-store listening", "addr", ln.Addr().String(), "data", cfg.data)
	if ready != nil {
		ready(ln.Addr())
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
