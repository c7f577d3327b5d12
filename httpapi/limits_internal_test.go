package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// fakeClock is a settable clock for the client limiter.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestClientLimiter_BurstThenRateWithRetryHint(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := newClientLimiter(rate.Limit(10), 3, 100, clk.now)
	for i := range 3 {
		if ok, _ := c.allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, retry := c.allow("a")
	if ok || retry <= 0 || retry > 100*time.Millisecond {
		t.Fatalf("4th request: ok=%v retry=%s, want refused with a retry within 100ms", ok, retry)
	}
	// A refusal does not consume: after the hinted delay one is allowed.
	clk.add(retry)
	if ok, _ := c.allow("a"); !ok {
		t.Fatal("refused after waiting the hinted delay")
	}
	// Another client has its own bucket.
	if ok, _ := c.allow("b"); !ok {
		t.Fatal("client b refused while a was limited")
	}
}

func TestClientLimiter_MemoryIsBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := newClientLimiter(rate.Limit(1), 1, 4, clk.now)
	for i := range 1000 {
		c.allow(fmt.Sprint("client-", i))
		if n := c.len(); n > 4 {
			t.Fatalf("%d clients tracked, limit 4", n)
		}
	}
	if len(c.clients) != c.lru.Len() {
		t.Fatalf("map has %d entries, list %d", len(c.clients), c.lru.Len())
	}
}

func TestClientLimiter_DropsBucketsThatRefilled(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	c := newClientLimiter(rate.Limit(100), 200, 1000, clk.now) // refills in 2s
	for i := range 50 {
		c.allow(fmt.Sprint("idle-", i))
	}
	clk.add(3 * time.Second)
	for range 50 {
		c.allow("busy")
	}
	if n := c.len(); n != 1 {
		t.Fatalf("%d clients tracked after the others idled past a refill, want 1", n)
	}
	// An exhausted bucket is not dropped early: it stays limited.
	c2 := newClientLimiter(rate.Limit(1), 1, 1000, clk.now)
	c2.allow("x")
	clk.add(100 * time.Millisecond)
	c2.allow("y")
	if ok, _ := c2.allow("x"); ok {
		t.Fatal("x allowed again before its bucket refilled")
	}
}

func TestClientKey(t *testing.T) {
	req := func(remote, auth string) *http.Request {
		r := httptest.NewRequest("GET", "/v1/status", nil)
		r.RemoteAddr = remote
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return r
	}
	secret := "s3cr3t-token-value"
	k := clientKey(req("10.0.0.1:5000", "Bearer "+secret))
	if strings.Contains(k, secret) || !strings.HasPrefix(k, "token:") || len(k) != len("token:")+32 {
		t.Errorf("token key %q: want token:<32 hex digits>, without the token", k)
	}
	if k2 := clientKey(req("10.0.0.2:6000", "bearer  "+secret)); k2 != k {
		t.Errorf("same token from another address: %q != %q", k2, k)
	}
	if k3 := clientKey(req("10.0.0.1:5000", "Bearer other")); k3 == k {
		t.Error("two tokens share a key")
	}
	for _, c := range []struct{ remote, auth, want string }{
		{"10.0.0.1:5000", "", "ip:10.0.0.1"},
		{"10.0.0.1:5001", "Basic dXNlcjpwdw==", "ip:10.0.0.1"},
		{"10.0.0.1:5001", "Bearer ", "ip:10.0.0.1"},
		{"[::ffff:10.0.0.1]:5000", "", "ip:10.0.0.1"},
		{"[2001:db8:1:2:3:4:5:6]:5000", "", "ip:2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:5000", "", "ip:2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:5000", "", "ip:fe80::/64"},
		{"pipe", "", "addr:pipe"},
	} {
		if got := clientKey(req(c.remote, c.auth)); got != c.want {
			t.Errorf("clientKey(%q, %q) = %q, want %q", c.remote, c.auth, got, c.want)
		}
	}
}

func TestSetLimitDefaults(t *testing.T) {
	for _, c := range []struct {
		in                  Options
		rate                float64
		burst, watchers     int
		bodyTimeoutDisabled bool
	}{
		{Options{}, DefaultRateLimit, DefaultRateBurst, DefaultMaxWatchers, false},
		{Options{RateLimit: 50}, 50, 100, DefaultMaxWatchers, false},
		{Options{RateLimit: 0.25}, 0.25, 1, DefaultMaxWatchers, false},
		{Options{RateLimit: 50, RateBurst: 7}, 50, 7, DefaultMaxWatchers, false},
		{Options{RateLimit: -1, RateBurst: 7, MaxWatchers: -1, BodyReadTimeout: -1}, 0, 0, 0, true},
	} {
		o := c.in
		setLimitDefaults(&o)
		if o.RateLimit != c.rate || o.RateBurst != c.burst || o.MaxWatchers != c.watchers || (o.BodyReadTimeout == 0) != c.bodyTimeoutDisabled {
			t.Errorf("%+v: got rate %g burst %d watchers %d body timeout %s", c.in, o.RateLimit, o.RateBurst, o.MaxWatchers, o.BodyReadTimeout)
		}
	}
}
