// Package saga runs sagas — long operations over several services made of
// ordered steps, each an action and a compensation — so that they survive
// the process that runs them.
//
// Who runs a saga: the Runner that leads the election "saga/NAME" in
// coordd. Any number of Runners of one NAME may call Run; one leads at a
// time, and when it dies (or is paused past its session's TTL) another
// takes over.
//
// Where a saga stands: in its record in coordd's KV (under Options.Prefix),
// the saga log. Every write of the log is a transaction fenced by the
// leader's fencing token and by the record's modify index, so a deposed
// runner cannot record progress, and two runners never interleave.
//
// How a successor resumes: it loads every unfinished record and goes on
// from the recorded position: forward while the saga runs, backwards
// (compensating) once a step failed or the saga was cancelled. The step in
// flight when a runner died may have taken effect without being recorded,
// so the successor runs it again: actions and compensations must be
// idempotent by StepContext.Key (derived from the saga id and the step),
// which is the same for every attempt by every runner. A compensation must
// also succeed when its action never ran, and should make a late action of
// the same key fail, so that an action delivered after its compensation
// cannot take effect.
//
// Deposed runners: each action and compensation gets the runner's Fence;
// services should refuse stale tokens (fencing.Guard) so that a paused,
// deposed runner cannot act after its successor.
//
// Steps call services through the caller's code. Actions are retried with
// capped exponential backoff (Options.MaxAttempts), through a circuit
// breaker per step; an action that returns an error marked Permanent, or
// fails every attempt, fails the saga, which is then compensated from that
// step (included) back to the first. Compensations are retried until they
// succeed.
package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sony/gobreaker/v2"

	"github.com/coordd/coordd/client"
)

// Sentinel errors.
var (
	// ErrDeposed means the runner lost its leadership: its fenced log
	// write was refused.
	ErrDeposed = errors.New("saga: runner deposed")
	// ErrExists means a saga with that id was already submitted.
	ErrExists = errors.New("saga: saga exists")
	// ErrNotFound means no saga has that id.
	ErrNotFound = errors.New("saga: saga not found")
	// ErrUnknownType means no Definition of that type was given to the
	// Runner.
	ErrUnknownType = errors.New("saga: unknown saga type")
	// ErrConflict means the saga's record changed under the runner (it
	// reloads it).
	ErrConflict = errors.New("saga: record changed concurrently")
)

// Status is where a saga stands.
type Status string

// Statuses.
const (
	// Running: steps go forward.
	Running Status = "running"
	// Compensating: a step failed or the saga was cancelled; compensations
	// go backwards.
	Compensating Status = "compensating"
	// Completed: every step's action took effect.
	Completed Status = "completed"
	// Compensated: every step that may have taken effect was compensated.
	Compensated Status = "compensated"
)

// Done reports whether the saga is finished.
func (s Status) Done() bool { return s == Completed || s == Compensated }

// Record is a saga's log entry, as stored in coordd's KV (JSON).
type Record struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Input  []byte `json:"input,omitempty"`
	Status Status `json:"status"`
	// Next is, while Running, the index of the next step to run (every
	// step before it took effect); while Compensating, the number of steps
	// still to compensate (Next-1 is the next).
	Next int `json:"next"`
	// Error says why the saga is compensated.
	Error string `json:"error,omitempty"`
	// Token is the fencing token of the runner that wrote the record (0:
	// as submitted).
	Token uint64 `json:"token,omitempty"`
	// ModifyIndex is the record's modify index in coordd (not stored).
	ModifyIndex uint64 `json:"-"`
}

// StepContext is what an action or compensation gets.
type StepContext struct {
	SagaID   string
	Type     string
	Step     int
	StepName string
	// Key identifies this step of this saga: "ID/STEP". It is the same for
	// every attempt of every runner: services deduplicate on it.
	Key   string
	Input []byte
	// Fence is the runner's fencing token: send it with every call and let
	// the service refuse stale ones.
	Fence client.Fence
	// Attempt counts the attempts of this runner, from 1.
	Attempt int
}

// Step is one step of a saga.
type Step struct {
	Name string
	// Action does the step. It must be idempotent by sc.Key.
	Action func(ctx context.Context, sc StepContext) error
	// Compensate undoes the step. It must be idempotent by sc.Key, succeed
	// when the action never ran, and should make a later action of sc.Key
	// fail. Nil: nothing to undo.
	Compensate func(ctx context.Context, sc StepContext) error
}

// Definition is a kind of saga: ordered steps.
type Definition struct {
	Type  string
	Steps []Step
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks an action's error as final: no retry, the saga is
// compensated.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// Options tune a Runner. Zero values take the defaults.
type Options struct {
	// Prefix is where the log lives in coordd's KV (default "saga/NAME/").
	Prefix string
	// SessionTTL is the TTL of the leader's session: how long a dead
	// runner keeps the sagas waiting (default 5s).
	SessionTTL time.Duration
	// MaxAttempts bounds the attempts of an action (default 5).
	MaxAttempts int
	// RetryInitial and RetryMax bound the backoff between attempts
	// (default 50ms and 2s).
	RetryInitial, RetryMax time.Duration
	// BreakerFailures consecutive failures open a step's circuit breaker
	// for BreakerOpenFor (default 5 and 5s).
	BreakerFailures uint32
	BreakerOpenFor  time.Duration
	// Concurrency bounds the sagas driven at once (default 16).
	Concurrency int
	// Logger (default: slog's default logger).
	Logger *slog.Logger
}

// Runner runs the sagas of one name.
type Runner struct {
	c        *client.Client
	name     string
	opts     Options
	defs     map[string]Definition
	log      *slog.Logger
	breakers sync.Map // "type/step" -> *gobreaker.CircuitBreaker[struct{}]
}

// NewRunner returns the runner of name for the given kinds of saga.
func NewRunner(c *client.Client, name string, opts Options, defs ...Definition) (*Runner, error) {
	if name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("saga: runner name %q must be non-empty, without '/'", name)
	}
	if opts.Prefix == "" {
		opts.Prefix = "saga/" + name + "/"
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 5 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.RetryInitial <= 0 {
		opts.RetryInitial = 50 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 2 * time.Second
	}
	if opts.BreakerFailures == 0 {
		opts.BreakerFailures = 5
	}
	if opts.BreakerOpenFor <= 0 {
		opts.BreakerOpenFor = 5 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Runner{c: c, name: name, opts: opts, defs: map[string]Definition{}, log: opts.Logger.With("saga_runner", name)}
	for _, d := range defs {
		if d.Type == "" || len(d.Steps) == 0 {
			return nil, fmt.Errorf("saga: definition %q needs a type and steps", d.Type)
		}
		if _, dup := r.defs[d.Type]; dup {
			return nil, fmt.Errorf("saga: definition %q given twice", d.Type)
		}
		for i, s := range d.Steps {
			if s.Action == nil {
				return nil, fmt.Errorf("saga: %s step %d (%s) has no action", d.Type, i, s.Name)
			}
		}
		r.defs[d.Type] = d
	}
	return r, nil
}

func (r *Runner) logKey(id string) string    { return r.opts.Prefix + "log/" + id }
func (r *Runner) cancelKey(id string) string { return r.opts.Prefix + "cancel/" + id }

// Election is the name of the election the runners of this name campaign
// in.
func (r *Runner) Election() string { return "saga/" + r.name }

// Submit records a new saga: the leading runner picks it up. Any process
// may submit; ErrExists if the id was used.
func (r *Runner) Submit(ctx context.Context, typ, id string, input []byte) error {
	if _, ok := r.defs[typ]; !ok {
		return fmt.Errorf("%w: %q", ErrUnknownType, typ)
	}
	if id == "" || strings.Contains(id, "/") {
		return fmt.Errorf("saga: id %q must be non-empty, without '/'", id)
	}
	b, err := json.Marshal(Record{ID: id, Type: typ, Input: input, Status: Running})
	if err != nil {
		return fmt.Errorf("saga: submit %s: %w", id, err)
	}
	res, err := r.c.Txn(ctx).If(client.Absent(r.logKey(id))).Then(client.OpPut(r.logKey(id), b)).Commit()
	if err != nil {
		return fmt.Errorf("saga: submit %s: %w", id, err)
	}
	if !res.Succeeded {
		return fmt.Errorf("%w: %s", ErrExists, id)
	}
	return nil
}

// Cancel asks for the saga to be compensated. A saga already completed
// stays completed.
func (r *Runner) Cancel(ctx context.Context, id string) error {
	if _, err := r.c.Put(ctx, r.cancelKey(id), []byte("cancel")); err != nil {
		return fmt.Errorf("saga: cancel %s: %w", id, err)
	}
	return nil
}

// Get reads the saga's record.
func (r *Runner) Get(ctx context.Context, id string) (*Record, error) {
	kv, err := r.c.Get(ctx, r.logKey(id))
	if errors.Is(err, client.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("saga: get %s: %w", id, err)
	}
	return decode(kv)
}

func decode(kv *client.KV) (*Record, error) {
	var rec Record
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return nil, fmt.Errorf("saga: record %s: %w", kv.Key, err)
	}
	rec.ModifyIndex = kv.ModifyIndex
	return &rec, nil
}

// Wait returns the saga's record once it is finished (or ctx ends).
func (r *Runner) Wait(ctx context.Context, id string) (*Record, error) {
	for {
		rec, err := r.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if rec.Status.Done() {
			return rec, nil
		}
		_, err = r.c.Get(ctx, r.logKey(id), client.WaitIndex(rec.ModifyIndex, 30*time.Second))
		if err != nil && ctx.Err() != nil {
			return rec, ctx.Err()
		}
	}
}

// List returns every saga's record.
func (r *Runner) List(ctx context.Context) ([]*Record, error) {
	kvs, _, err := r.c.List(ctx, r.opts.Prefix+"log/")
	if err != nil {
		return nil, fmt.Errorf("saga: list: %w", err)
	}
	out := make([]*Record, 0, len(kvs))
	for i := range kvs {
		rec, err := decode(&kvs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// Run campaigns for the runners' election and, while it leads, drives
// every unfinished saga; when leadership is lost it campaigns again. It
// returns when ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := r.lead(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("saga runner: not leading", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return ctx.Err()
}

func (r *Runner) lead(ctx context.Context) error {
	s, err := client.NewSession(ctx, r.c, r.opts.SessionTTL)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(cctx)
	}()
	host, _ := os.Hostname()
	l, err := client.NewElection(s, r.Election()).Campaign(ctx, fmt.Sprintf("%s pid %d", host, os.Getpid()))
	if err != nil {
		return err
	}
	fence := l.Fence()
	r.log.Info("saga runner leads", "token", fence.Token)
	lctx, cancel := context.WithCancel(l.Context())
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	defer cancel()
	r.serve(lctx, fence)
	r.log.Info("saga runner stops leading", "token", fence.Token, "cause", context.Cause(l.Context()))
	if ctx.Err() == nil {
		return context.Cause(l.Context())
	}
	return nil
}

// serve drives every unfinished saga until ctx ends, picking up new ones
// with blocking reads of the log.
func (r *Runner) serve(ctx context.Context, fence client.Fence) {
	var (
		mu      sync.Mutex
		running = map[string]bool{}
		wg      sync.WaitGroup
		sem     = make(chan struct{}, r.opts.Concurrency)
		index   uint64
	)
	defer wg.Wait()
	for ctx.Err() == nil {
		var opts []client.ReadOption
		if index > 0 {
			opts = append(opts, client.WaitIndex(index, 5*time.Second))
		}
		kvs, idx, err := r.c.List(ctx, r.opts.Prefix+"log/", opts...)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("saga runner: list the log", "err", err)
				sleep(ctx, r.opts.RetryInitial)
			}
			continue
		}
		index = idx
		for i := range kvs {
			rec, err := decode(&kvs[i])
			if err != nil {
				r.log.Error("saga runner: unreadable record, skipped", "key", kvs[i].Key, "err", err)
				continue
			}
			mu.Lock()
			busy := running[rec.ID]
			if !busy && !rec.Status.Done() {
				running[rec.ID] = true
			}
			mu.Unlock()
			if busy || rec.Status.Done() {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				r.drive(ctx, fence, rec)
				mu.Lock()
				delete(running, rec.ID)
				mu.Unlock()
			}()
		}
	}
}

// drive takes one saga to its end, reloading its record after a failed log
// write, until it is finished, the runner is deposed or ctx ends.
func (r *Runner) drive(ctx context.Context, fence client.Fence, rec *Record) {
	for ctx.Err() == nil {
		err := r.step(ctx, fence, rec)
		if err == nil {
			return
		}
		if errors.Is(err, ErrDeposed) {
			r.log.Warn("saga runner deposed: its log write was refused", "saga", rec.ID, "token", fence.Token)
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("saga: retrying from the log", "saga", rec.ID, "err", err)
		sleep(ctx, r.opts.RetryInitial)
		fresh, gerr := r.Get(ctx, rec.ID)
		if gerr != nil {
			continue
		}
		rec = fresh
	}
}

// step runs rec from where it stands to its end.
func (r *Runner) step(ctx context.Context, fence client.Fence, rec *Record) error {
	def, ok := r.defs[rec.Type]
	if !ok {
		return fmt.Errorf("%w: %q (saga %s)", ErrUnknownType, rec.Type, rec.ID)
	}
	n := len(def.Steps)
	for !rec.Status.Done() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		next := *rec
		switch rec.Status {
		case Running:
			cancelled, err := r.cancelled(ctx, rec.ID)
			if err != nil {
				return err
			}
			switch {
			case rec.Next >= n:
				next.Status, next.Next = Completed, n
			case cancelled:
				// The step at Next may have taken effect without being
				// recorded: compensate it too.
				next.Status, next.Next, next.Error = Compensating, rec.Next+1, "cancelled"
			default:
				sc := r.stepContext(rec, def, rec.Next, fence)
				if err := r.action(ctx, def.Steps[rec.Next], sc); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					r.log.Warn("saga step failed: compensating", "saga", rec.ID, "step", sc.StepName, "err", err)
					next.Status, next.Next, next.Error = Compensating, rec.Next+1, fmt.Sprintf("step %d (%s): %v", rec.Next, sc.StepName, err)
				} else {
					next.Next++
				}
			}
		case Compensating:
			if rec.Next <= 0 {
				next.Status, next.Next = Compensated, 0
				break
			}
			i := min(rec.Next, n) - 1
			if err := r.compensate(ctx, def.Steps[i], r.stepContext(rec, def, i, fence)); err != nil {
				return err // ctx ended
			}
			next.Next = i
		default:
			return fmt.Errorf("saga %s: unknown status %q", rec.ID, rec.Status)
		}
		if err := r.write(ctx, fence, &next); err != nil {
			return err
		}
		*rec = next
	}
	r.log.Info("saga finished", "saga", rec.ID, "status", rec.Status, "error", rec.Error)
	return nil
}

func (r *Runner) stepContext(rec *Record, def Definition, i int, fence client.Fence) StepContext {
	return StepContext{SagaID: rec.ID, Type: rec.Type, Step: i, StepName: def.Steps[i].Name,
		Key: fmt.Sprintf("%s/%d", rec.ID, i), Input: rec.Input, Fence: fence}
}

func (r *Runner) cancelled(ctx context.Context, id string) (bool, error) {
	_, err := r.c.Get(ctx, r.cancelKey(id))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, client.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("saga: read the cancel flag of %s: %w", id, err)
}

// write records rec if the runner still leads (fence) and the record is as
// it was read (modify index): one transaction.
func (r *Runner) write(ctx context.Context, fence client.Fence, rec *Record) error {
	rec.Token = fence.Token
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("saga: encode %s: %w", rec.ID, err)
	}
	key := r.logKey(rec.ID)
	res, err := r.c.Txn(ctx).If(client.FenceHolds(fence), client.ModifyIndexOf(key).Eq(rec.ModifyIndex)).
		Then(client.OpPut(key, b)).Commit()
	if err != nil {
		return fmt.Errorf("saga: record %s: %w", rec.ID, err)
	}
	if !res.Succeeded {
		if res.Failed != nil && *res.Failed == 0 {
			return fmt.Errorf("%w: token %d of %s is no longer current (current %d)", ErrDeposed, fence.Token, fence.Name, *res.Current)
		}
		return fmt.Errorf("%w: %s", ErrConflict, rec.ID)
	}
	rec.ModifyIndex = res.Results[0].ModifyIndex
	return nil
}

func (r *Runner) breaker(typ string, step int, name string) *gobreaker.CircuitBreaker[struct{}] {
	k := fmt.Sprintf("%s/%d", typ, step)
	if b, ok := r.breakers.Load(k); ok {
		return b.(*gobreaker.CircuitBreaker[struct{}])
	}
	b := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name: k + " " + name, Timeout: r.opts.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= r.opts.BreakerFailures },
		// A permanent refusal is an answer, not a sign the service is down.
		IsSuccessful: func(err error) bool { var p *permanentError; return err == nil || errors.As(err, &p) },
	})
	actual, _ := r.breakers.LoadOrStore(k, b)
	return actual.(*gobreaker.CircuitBreaker[struct{}])
}

func (r *Runner) newBackoff() *backoff.ExponentialBackOff {
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval, eb.MaxInterval = r.opts.RetryInitial, r.opts.RetryMax
	return eb
}

// action runs a step's action with retries through its breaker.
func (r *Runner) action(ctx context.Context, s Step, sc StepContext) error {
	cb := r.breaker(sc.Type, sc.Step, sc.StepName)
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		sc.Attempt++
		_, err := cb.Execute(func() (struct{}, error) { return struct{}{}, s.Action(ctx, sc) })
		var p *permanentError
		if errors.As(err, &p) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(r.newBackoff()), backoff.WithMaxTries(uint(r.opts.MaxAttempts)), backoff.WithMaxElapsedTime(0))
	return err
}

// compensate runs a step's compensation until it succeeds or ctx ends.
func (r *Runner) compensate(ctx context.Context, s Step, sc StepContext) error {
	if s.Compensate == nil {
		return nil
	}
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		sc.Attempt++
		err := s.Compensate(ctx, sc)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("saga compensation failed: retrying", "saga", sc.SagaID, "step", sc.StepName, "attempt", sc.Attempt, "err", err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(r.newBackoff()), backoff.WithMaxElapsedTime(0))
	return err
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
