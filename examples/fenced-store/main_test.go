package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/fencing"
	"github.com/prometheus/client_golang/prometheus"
)

type reply struct {
	status int
	body   string
	json   map[string]any
}

func request(t *testing.T, h http.Handler, method, path, name, token, value string) reply {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(value))
	if name != "" {
		r.Header.Set(fencing.HeaderName, name)
	}
	if token != "" {
		r.Header.Set(fencing.HeaderToken, token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	rep := reply{status: w.Code, body: w.Body.String()}
	if strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(w.Body.Bytes(), &rep.json); err != nil {
			t.Fatalf("%s %s: body %q is not JSON: %v", method, path, rep.body, err)
		}
	}
	return rep
}

func errCode(rep reply) any {
	e, _ := rep.json["error"].(map[string]any)
	return e["code"]
}

func newTestHandler(t *testing.T) (http.Handler, *fencing.Guard, *prometheus.Registry) {
	t.Helper()
	store, err := fencing.OpenBoltStore(filepath.Join(t.TempDir(), "fenced-store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	reg := prometheus.NewRegistry()
	g := fencing.NewGuard(store, fencing.WithRegisterer(reg))
	return newHandler(g, reg), g, reg
}

// TestHandlerStory is the README's story: token 12 writes, token 15 writes,
// token 12 comes back late and is refused.
func TestHandlerStory(t *testing.T) {
	h, _, _ := newTestHandler(t)
	const lock = "locks/report"

	if rep := request(t, h, "PUT", "/data/report", lock, "12", "draft by A"); rep.status != 200 || rep.json["token"] != 12.0 {
		t.Fatalf("token 12 write: %d %s", rep.status, rep.body)
	}
	rep := request(t, h, "GET", "/data/report", "", "", "")
	if rep.status != 200 || rep.json["value"] != "draft by A" || rep.json["token"] != 12.0 || rep.json["name"] != lock {
		t.Fatalf("read after 12: %d %s", rep.status, rep.body)
	}
	if rep := request(t, h, "PUT", "/data/report", lock, "15", "final by B"); rep.status != 200 {
		t.Fatalf("token 15 write: %d %s", rep.status, rep.body)
	}
	rep = request(t, h, "PUT", "/data/report", lock, "12", "late write by A")
	if rep.status != http.StatusConflict || errCode(rep) != "stale_token" {
		t.Fatalf("late token 12 write: %d %s, want 409 stale_token", rep.status, rep.body)
	}
	if e := rep.json["error"].(map[string]any); e["token"] != 12.0 || e["highest"] != 15.0 {
		t.Fatalf("409 body %s lacks token 12 and highest 15", rep.body)
	}
	rep = request(t, h, "GET", "/data/report", "", "", "")
	if rep.json["value"] != "final by B" || rep.json["token"] != 15.0 {
		t.Fatalf("the late write landed: %s", rep.body)
	}
	// The holder of 15 keeps writing with the same token.
	if rep := request(t, h, "PUT", "/data/report", lock, "15", "final v2"); rep.status != 200 {
		t.Fatalf("second write with 15: %d %s", rep.status, rep.body)
	}
	// The token guards every key of the lock, not only the one it wrote.
	if rep := request(t, h, "PUT", "/data/other", lock, "12", "x"); rep.status != http.StatusConflict {
		t.Fatalf("token 12 on another key: %d %s", rep.status, rep.body)
	}
	// Keys may contain slashes.
	if rep := request(t, h, "PUT", "/data/a/b/c", lock, "15", "deep"); rep.status != 200 {
		t.Fatalf("nested key: %d %s", rep.status, rep.body)
	}
	if rep := request(t, h, "GET", "/data/a/b/c", "", "", ""); rep.json["key"] != "a/b/c" || rep.json["value"] != "deep" {
		t.Fatalf("nested key read: %s", rep.body)
	}
}

func TestHandlerErrors(t *testing.T) {
	h, _, reg := newTestHandler(t)
	tests := []struct {
		desc                      string
		method, path, name, token string
		value                     string
		status                    int
		code                      string
	}{
		{"no headers", "PUT", "/data/k", "", "", "v", 400, "bad_token"},
		{"no name", "PUT", "/data/k", "", "3", "v", 400, "bad_name"},
		{"bad token", "PUT", "/data/k", "n", "3.5", "v", 400, "bad_token"},
		{"zero token", "PUT", "/data/k", "n", "0", "v", 400, "bad_token"},
		{"missing key", "GET", "/data/nope", "", "", "", 404, "not_found"},
		{"empty key", "PUT", "/data/", "n", "3", "v", 400, "bad_request"},
		{"method", "DELETE", "/data/k", "n", "3", "", 405, "method_not_allowed"},
		{"not UTF-8", "PUT", "/data/k", "n", "3", "\xff\xfe", 400, "bad_request"},
		{"too large", "PUT", "/data/k", "n", "3", strings.Repeat("x", maxValueBytes+1), 413, "too_large"},
	}
	for _, tt := range tests {
		rep := request(t, h, tt.method, tt.path, tt.name, tt.token, tt.value)
		if rep.status != tt.status || errCode(rep) != tt.code {
			t.Errorf("%s: %d %.200s, want %d %s", tt.desc, rep.status, rep.body, tt.status, tt.code)
		}
	}
	// None of the refused writes stored anything or raised a token.
	if rep := request(t, h, "GET", "/data/k", "", "", ""); rep.status != 404 {
		t.Errorf("a refused write was stored: %s", rep.body)
	}
	if rep := request(t, h, "PUT", "/data/k", "n", "1", "v"); rep.status != 200 {
		t.Errorf("token 1 refused after only invalid writes: %d %s", rep.status, rep.body)
	}

	rep := request(t, h, "GET", "/metrics", "", "", "")
	if rep.status != 200 || !strings.Contains(rep.body, "coordd_fencing_accepted_total 1") ||
		!strings.Contains(rep.body, `coordd_fencing_rejected_total{reason="bad_token"} 3`) {
		t.Errorf("metrics:\n%s", rep.body)
	}
	_ = reg
}

// TestHandlerConcurrentWriters has many writers with random tokens race on one
// key. Because check and write are serialised, the value that stays is the
// one of the highest token accepted, and no write ever replaced a value
// written with a higher token.
func TestHandlerConcurrentWriters(t *testing.T) {
	h, g, _ := newTestHandler(t)
	const lock = "locks/k"
	var wg sync.WaitGroup
	var mu sync.Mutex
	var maxAccepted int
	for w := range 12 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range 40 {
				// Overlapping windows of rising tokens: many writers pass
				// their checks at about the same time, and many are refused.
				tok := i*8 + rng.IntN(32) + 1
				rep := request(t, h, "PUT", "/data/k", lock, itoa(tok), "by "+itoa(tok))
				switch rep.status {
				case 200:
					mu.Lock()
					maxAccepted = max(maxAccepted, tok)
					mu.Unlock()
				case 409:
				default:
					t.Errorf("PUT with %d: %d %s", tok, rep.status, rep.body)
				}
				// Check and write are one step, so the stored token is the
				// guard's highest at every moment: it lies between the
				// highest read before and after the GET.
				before, err := g.Highest(lock)
				if err != nil {
					t.Error(err)
					return
				}
				get := request(t, h, "GET", "/data/k", "", "", "")
				after, err := g.Highest(lock)
				if err != nil {
					t.Error(err)
					return
				}
				if get.status != 200 {
					continue
				}
				stored := fencing.Token(get.json["token"].(float64))
				if stored < before || stored > after {
					t.Errorf("stored token %d outside the guard's highest %d..%d: a lower write landed after a higher one", stored, before, after)
				}
				if rep.status == 200 && stored < fencing.Token(tok) {
					t.Errorf("write with %d was overwritten by %d", tok, stored)
				}
				if get.json["value"] != "by "+stored.String() {
					t.Errorf("value %q does not belong to token %d", get.json["value"], stored)
				}
			}
		})
	}
	wg.Wait()
	highest, err := g.Highest(lock)
	if err != nil {
		t.Fatal(err)
	}
	rep := request(t, h, "GET", "/data/k", "", "", "")
	if int(highest) != maxAccepted || rep.json["token"] != float64(maxAccepted) {
		t.Fatalf("guard highest %d, stored token %v, max accepted %d", highest, rep.json["token"], maxAccepted)
	}
}

func itoa(n int) string { return fencing.Token(n).String() }

// TestRun starts the real server on a free port, writes through it, shuts it
// down with the context (as SIGINT does) and checks that the token file was
// closed with the token in it.
func TestRun(t *testing.T) {
	data := filepath.Join(t.TempDir(), "sub", "fenced-store.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- run(ctx, config{addr: "127.0.0.1:0", data: data}, logger, func(a net.Addr) { addrc <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start")
	}

	req, _ := http.NewRequest("PUT", "http://"+addr.String()+"/data/x", bytes.NewReader([]byte("hello")))
	req.Header.Set(fencing.HeaderName, "locks/x")
	req.Header.Set(fencing.HeaderToken, "42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}

	// A second server on the same file fails fast: the file is locked.
	err = run(ctx, config{addr: "127.0.0.1:0", data: data}, logger, nil)
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second run on the same file: %v, want a locked-file error", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}

	store, err := fencing.OpenBoltStore(data)
	if err != nil {
		t.Fatalf("reopen after shutdown: %v", err)
	}
	defer store.Close()
	if h, err := store.Highest("locks/x"); err != nil || h != 42 {
		t.Fatalf("after restart highest = %d, %v; want 42", h, err)
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"-addr", "127.0.0.1:9", "-data", "/tmp/x.db"}, io.Discard)
	if err != nil || c.addr != "127.0.0.1:9" || c.data != "/tmp/x.db" {
		t.Fatalf("parseFlags = %+v, %v", c, err)
	}
	if c, err := parseFlags(nil, io.Discard); err != nil || c.addr != "127.0.0.1:7400" || c.data != "./data/fenced-store.db" {
		t.Fatalf("defaults = %+v, %v", c, err)
	}
	for _, args := range [][]string{{"extra"}, {"-data", ""}, {"-nope"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded", args)
		}
	}
}
