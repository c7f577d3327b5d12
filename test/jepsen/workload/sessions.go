package workload

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/test/jepsen/check"
	"github.com/coordd/coordd/test/jepsen/history"
)

// Sessions returns a workload of Go client Sessions: perTTL sessions of
// each of ttls (default 1 s and 3 s), opened through one client (package
// client, with its retries, hedging and leader discovery: unlike the other
// workloads, this one tests the client as an application uses it) at the
// start and kept alive by it until the end. The workload process is never
// paused, so every holder keeps renewing. Use it with faults that leave a
// healthy quorum (a stalled, isolated or killed leader): then any session
// lost — its Done closed — is an anomaly, and so is a session that
// believes it lives at the end while the cluster has no such lease (a
// broken promise). Each opened session is recorded as a lease-grant op
// (processes 3000..).
func Sessions(perTTL int, ttls ...time.Duration) Workload {
	if len(ttls) == 0 {
		ttls = []time.Duration{time.Second, 3 * time.Second}
	}
	return &sessions{perTTL: perTTL, ttls: ttls}
}

type sessions struct {
	perTTL int
	ttls   []time.Duration

	mu     sync.Mutex
	opened []*trackedSession
	err    error // opening failed
	// gone: sessions alive at the end whose lease the cluster did not know.
	gone []uint64
}

type trackedSession struct {
	s      *client.Session
	ttl    time.Duration
	lostAt int64 // history clock; 0: alive
	why    error
}

func (w *sessions) Name() string { return "sessions" }

// LeaseTTL is the longest TTL: the schedule holds each fault longer.
func (w *sessions) LeaseTTL() time.Duration { return slices.Max(w.ttls) }

func (w *sessions) Run(ctx context.Context, env Env) error {
	c, err := client.New(ctx, client.Config{Endpoints: env.Nodes})
	if err != nil {
		return fmt.Errorf("sessions: client: %w", err)
	}
	defer c.Close() // ends every session, revokes their leases
	p := 3000
	for _, ttl := range w.ttls {
		for range w.perTTL {
			op := history.Op{Process: p, Kind: history.KindLeaseGrant, Call: env.Rec.Now()}
			p++
			octx, cancel := context.WithTimeout(ctx, 10*time.Second)
			s, err := client.NewSession(octx, c, ttl)
			cancel()
			op.Return = env.Rec.Now()
			if err != nil {
				op.Status, op.Error = history.StatusUnknown, "session_failed"
				env.Rec.Record(op)
				w.mu.Lock()
				w.err = fmt.Errorf("opening a session of TTL %s: %w", ttl, err)
				w.mu.Unlock()
				return nil
			}
			op.Status, op.Out = history.StatusOK, history.Values{Lease: s.Lease()}
			env.Rec.Record(op)
			ts := &trackedSession{s: s, ttl: ttl}
			w.mu.Lock()
			w.opened = append(w.opened, ts)
			w.mu.Unlock()
			go func() {
				select {
				case <-s.Done():
					w.mu.Lock()
					if ts.lostAt == 0 && !errors.Is(s.Err(), client.ErrSessionClosed) {
						ts.lostAt, ts.why = env.Rec.Now(), s.Err()
						env.Logf("sessions: lease %d (TTL %s) lost: %v", s.Lease(), ttl, s.Err())
					}
					w.mu.Unlock()
				case <-ctx.Done():
				}
			}()
		}
	}
	env.Logf("sessions: %d sessions open", len(w.ttls)*w.perTTL)
	<-ctx.Done()
	// Before Close revokes them: which sessions still believe they hold
	// their lease, and does the cluster agree?
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
	defer cancel()
	w.mu.Lock()
	alive := slices.Clone(w.opened)
	w.mu.Unlock()
	for _, ts := range alive {
		if ts.s.Err() != nil {
			continue
		}
		_, err := c.TimeToLive(fctx, ts.s.Lease())
		if errors.Is(err, client.ErrLeaseNotFound) && ts.s.Err() == nil {
			w.mu.Lock()
			w.gone = append(w.gone, ts.s.Lease())
			w.mu.Unlock()
		}
	}
	return nil
}

// Final reads nothing: the sessions were checked against the cluster
// before the client closed them.
func (w *sessions) Final(context.Context, Env) (history.FinalState, error) {
	return history.FinalState{}, nil
}

func (w *sessions) Check(_ []history.Op, _ history.FinalState, _ string) []check.Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := check.Result{Checker: "sessions"}
	if w.err != nil {
		r.Anomalies = append(r.Anomalies, w.err.Error())
	}
	for _, ts := range w.opened {
		if ts.lostAt != 0 {
			r.Anomalies = append(r.Anomalies, fmt.Sprintf("session of lease %d (TTL %s) lost at %.3fs although its holder kept renewing and a quorum was healthy: %v",
				ts.s.Lease(), ts.ttl, float64(ts.lostAt)/1e9, ts.why))
		}
	}
	for _, id := range w.gone {
		r.Anomalies = append(r.Anomalies, fmt.Sprintf("lease %d is gone from the cluster while its session still believed it held it", id))
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%d sessions (TTL %v, %d each)", len(w.opened), w.ttls, w.perTTL))
	r.Valid = len(r.Anomalies) == 0
	return []check.Result{r}
}
