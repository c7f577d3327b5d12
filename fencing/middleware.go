package fencing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// HTTP headers that carry a fencing token and the lock or election name it
// belongs to.
const (
	HeaderToken = "Coordd-Fencing-Token"
	HeaderName  = "Coordd-Fencing-Name"
)

// Error codes in the JSON error bodies of Guard.Middleware, the same
// {"error":{"code":...,"message":...}} shape the coordd server uses.
const (
	codeBadToken    = "bad_token"
	codeBadName     = "bad_name"
	codeStaleToken  = "stale_token"
	codeUnavailable = "fencing_unavailable"
)

// MiddlewareOption configures Guard.Middleware.
type MiddlewareOption func(*middlewareConfig)

type middlewareConfig struct {
	name    string
	methods map[string]bool // nil: every method but GET, HEAD and OPTIONS
}

// WithName makes the middleware check every token against the fixed lock name
// instead of reading the HeaderName header (which is then ignored). Middleware
// panics if name is not a valid name.
func WithName(name string) MiddlewareOption {
	return func(c *middlewareConfig) { c.name = name }
}

// WithMethods sets the HTTP methods whose requests need a token, compared
// exactly (methods are case-sensitive). Without this option, or with no
// methods, every method except GET, HEAD and OPTIONS needs one.
func WithMethods(methods ...string) MiddlewareOption {
	return func(c *middlewareConfig) {
		if len(methods) == 0 {
			c.methods = nil
			return
		}
		c.methods = make(map[string]bool, len(methods))
		for _, m := range methods {
			c.methods[m] = true
		}
	}
}

func (c *middlewareConfig) guarded(method string) bool {
	if c.methods == nil {
		return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
	}
	return c.methods[method]
}

type contextKey struct{}

type contextValue struct {
	name  string
	token Token
}

// TokenFromContext returns the name and token that Guard.Middleware accepted
// for the request whose context ctx is. ok is false for a request the
// middleware did not check (an unguarded method) or did not see.
func TokenFromContext(ctx context.Context) (name string, t Token, ok bool) {
	v, ok := ctx.Value(contextKey{}).(contextValue)
	if !ok {
		return "", 0, false
	}
	return v.name, v.token, true
}

// Middleware returns HTTP middleware that fences the requests of guarded
// methods (see WithMethods). For each such request it reads the token from
// HeaderToken and the name from HeaderName (or WithName) and calls Check before
// the next handler runs:
//
//   - a missing, zero or malformed token: 400 with code "bad_token";
//   - a missing or bad name: 400 with code "bad_name";
//   - a stale token: 409 with code "stale_token" and the refused and highest
//     tokens as "token" and "highest";
//   - a failing Store: 503 with code "fencing_unavailable" and Retry-After;
//   - otherwise the next handler runs, with the name and token in the
//     request's context (TokenFromContext).
//
// Errors are JSON {"error":{"code":...,"message":...}} with Content-Type
// application/json. Requests of other methods go to the next handler
// unchecked, even if they carry a token.
//
// The check happens before the next handler runs and is atomic only with
// respect to other checks of this Guard: it does not cover the write the next
// handler makes. If the resource has concurrent writers, a request with token
// 12 may pass its check, then one with token 15 pass its check and write, and
// then the request with 12 write over it. Such a resource must either
// serialise check and write (hold a lock around this middleware and the write,
// as examples/fenced-store does) or make its own write conditional on the token
// from TokenFromContext (for example, refuse it if the data was written with a
// higher token).
func (g *Guard) Middleware(opts ...MiddlewareOption) func(http.Handler) http.Handler {
	var c middlewareConfig
	for _, o := range opts {
		o(&c)
	}
	if c.name != "" {
		if err := checkName(c.name); err != nil {
			panic(fmt.Sprintf("fencing: Middleware: WithName: %v", err))
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !c.guarded(r.Method) {
				next.ServeHTTP(w, r)
				return
			}
			name, t, ok := g.checkRequest(w, r, &c)
			if !ok {
				return
			}
			ctx := context.WithValue(r.Context(), contextKey{}, contextValue{name: name, token: t})
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// checkRequest checks the token of r, answering w itself if it is refused.
func (g *Guard) checkRequest(w http.ResponseWriter, r *http.Request, c *middlewareConfig) (string, Token, bool) {
	badToken := func(msg string) (string, Token, bool) {
		g.metrics.rejected.WithLabelValues(reasonBadToken).Inc()
		writeError(w, http.StatusBadRequest, errorDetail{Code: codeBadToken, Message: msg})
		return "", 0, false
	}
	badName := func(msg string) (string, Token, bool) {
		g.metrics.rejected.WithLabelValues(reasonBadName).Inc()
		writeError(w, http.StatusBadRequest, errorDetail{Code: codeBadName, Message: msg})
		return "", 0, false
	}
	raw, err := headerValue(r, HeaderToken)
	if err != nil {
		return badToken(fmt.Sprintf("%v: %v", ErrBadToken, err))
	}
	t, err := ParseToken(raw)
	if err != nil {
		return badToken(fmt.Sprintf("%v (header %s)", err, HeaderToken))
	}
	name := c.name
	if name == "" {
		if name, err = headerValue(r, HeaderName); err != nil {
			return badName(fmt.Sprintf("%v: %v", ErrBadName, err))
		}
		if err := checkName(name); err != nil {
			return badName(fmt.Sprintf("%v (header %s)", err, HeaderName))
		}
	}
	err = g.Check(r.Context(), name, t)
	var stale *StaleTokenError
	switch {
	case err == nil:
		return name, t, true
	case errors.As(err, &stale):
		writeError(w, http.StatusConflict, errorDetail{Code: codeStaleToken, Message: err.Error(), Token: stale.Token, Highest: stale.Highest})
	case errors.Is(err, ErrBadName): // not reached: the name was checked above
		writeError(w, http.StatusBadRequest, errorDetail{Code: codeBadName, Message: err.Error()})
	case errors.Is(err, ErrBadToken): // not reached: ParseToken refuses 0
		writeError(w, http.StatusBadRequest, errorDetail{Code: codeBadToken, Message: err.Error()})
	default:
		writeError(w, http.StatusServiceUnavailable, errorDetail{Code: codeUnavailable, Message: err.Error()})
	}
	return "", 0, false
}

// headerValue returns the one value of header key: a header that is missing
// or given more than once is an error.
func headerValue(r *http.Request, key string) (string, error) {
	switch vs := r.Header.Values(key); len(vs) {
	case 0:
		return "", fmt.Errorf("the %s header is required for %s requests", key, r.Method)
	case 1:
		return vs[0], nil
	default:
		return "", fmt.Errorf("the %s header is given %d times, want once", key, len(vs))
	}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Token   Token  `json:"token,omitempty"`
	Highest Token  `json:"highest,omitempty"`
}

func writeError(w http.ResponseWriter, status int, d errorDetail) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(errorBody{Error: d})
}
