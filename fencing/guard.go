package fencing

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Guard is the resource side of fencing: it accepts a token for a name only if
// no higher token was accepted for that name before, and records it in its
// Store. It is safe for concurrent use.
type Guard struct {
	store   Store
	metrics *guardMetrics
}

// GuardOption configures a Guard.
type GuardOption func(*guardConfig)

type guardConfig struct {
	reg prometheus.Registerer
}

// WithRegisterer registers the Guard's counters with r:
//
//	coordd_fencing_accepted_total               tokens accepted
//	coordd_fencing_rejected_total{reason}       tokens refused; reason is
//	                                            "stale", "bad_token" or "bad_name"
//	coordd_fencing_store_errors_total           checks that failed in the Store
//
// There is no per-name label, so the number of series stays fixed however many
// names the resource sees. If the counters are registered with r already (by
// another Guard), this Guard adds to the same counters. Any other registration
// error is a programming error and makes NewGuard panic, like MustRegister.
func WithRegisterer(r prometheus.Registerer) GuardOption {
	return func(c *guardConfig) { c.reg = r }
}

// Reasons of coordd_fencing_rejected_total.
const (
	reasonStale    = "stale"
	reasonBadToken = "bad_token"
	reasonBadName  = "bad_name"
)

type guardMetrics struct {
	accepted    prometheus.Counter
	rejected    *prometheus.CounterVec
	storeErrors prometheus.Counter
}

func newGuardMetrics(reg prometheus.Registerer) *guardMetrics {
	m := &guardMetrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coordd_fencing_accepted_total",
			Help: "Fencing tokens accepted by the guard (equal to or higher than the highest so far).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coordd_fencing_rejected_total",
			Help: "Fencing checks refused by the guard, by reason: stale, bad_token or bad_name.",
		}, []string{"reason"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coordd_fencing_store_errors_total",
			Help: "Fencing checks that failed because the token store failed.",
		}),
	}
	// Create the series up front so that they read 0 instead of missing.
	for _, r := range []string{reasonStale, reasonBadToken, reasonBadName} {
		m.rejected.WithLabelValues(r)
	}
	if reg == nil {
		return m
	}
	m.accepted = register(reg, m.accepted)
	m.rejected = register(reg, m.rejected)
	m.storeErrors = register(reg, m.storeErrors)
	return m
}

// register registers c with reg, or returns the collector registered already
// under the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("fencing: register metrics: %v", err))
}

// NewGuard returns a Guard that keeps the highest tokens in store. The Guard
// does not own store: closing it is up to the caller. NewGuard panics if store
// is nil.
func NewGuard(store Store, opts ...GuardOption) *Guard {
	if store == nil {
		panic("fencing: NewGuard: nil store")
	}
	var c guardConfig
	for _, o := range opts {
		o(&c)
	}
	return &Guard{store: store, metrics: newGuardMetrics(c.reg)}
}

// Check accepts t for name if t >= the highest token accepted for name so far
// (equal is accepted: the same holder keeps writing) and records it; otherwise
// it returns a *StaleTokenError, which errors.Is matches with ErrStaleToken. An
// empty, too long or non-UTF-8 name gives an error wrapping ErrBadName, a zero
// token one wrapping ErrBadToken, and a failing Store its error, wrapped.
//
// Check is safe for concurrent use, and checks are atomic with respect to each
// other: of two concurrent Checks, if the higher token is recorded first the
// lower one is refused. Check does not make the write that follows it atomic:
// between a successful Check and its write, a Check of a higher token may pass
// and its write land first. A resource with concurrent writers must hold its
// own lock across Check and write, or make the write conditional on the token.
//
// If ctx is done before the check starts, Check returns its error and records
// nothing. Once started, a check runs to completion.
func (g *Guard) Check(ctx context.Context, name string, t Token) error {
	if err := checkName(name); err != nil {
		g.metrics.rejected.WithLabelValues(reasonBadName).Inc()
		return err
	}
	if err := checkToken(t); err != nil {
		g.metrics.rejected.WithLabelValues(reasonBadToken).Inc()
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fencing: check %s token %d: %w", quoteShort(name), t, err)
	}
	highest, accepted, err := g.store.Raise(name, t)
	if err != nil {
		g.metrics.storeErrors.Inc()
		return fmt.Errorf("fencing: check %s token %d: %w", quoteShort(name), t, err)
	}
	if !accepted {
		g.metrics.rejected.WithLabelValues(reasonStale).Inc()
		return &StaleTokenError{Name: name, Token: t, Highest: highest}
	}
	g.metrics.accepted.Inc()
	return nil
}

// Highest returns the highest token accepted for name so far, or 0 if none was.
func (g *Guard) Highest(name string) (Token, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	t, err := g.store.Highest(name)
	if err != nil {
		return 0, fmt.Errorf("fencing: highest %s: %w", quoteShort(name), err)
	}
	return t, nil
}
