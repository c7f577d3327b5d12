package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

// permission says what a route needs.
type permission struct {
	open     bool // no token needed
	anyToken bool // any valid token
	res      acl.Resource
	alt      acl.Resource // also enough, when set (fencing checks)
	access   acl.Access
	// name returns the name the rule must cover, and whether it is a
	// prefix (a listing or a watch of everything under it).
	name func(r *http.Request) (name string, prefix bool)
}

func trimName(prefix, suffix string) func(r *http.Request) (string, bool) {
	return func(r *http.Request) (string, bool) {
		return strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, prefix), suffix), false
	}
}

// kvName is the key, or the prefix of ?prefix.
func kvName(r *http.Request) (string, bool) {
	return strings.TrimPrefix(r.URL.Path, "/v1/kv/"), r.URL.Query().Has("prefix")
}

func everything(*http.Request) (string, bool) { return "", true }

// permissions maps every route pattern registered in New to what it
// needs. A pattern missing here is refused (fail closed).
var permissions = map[string]permission{
	"GET /v1/kv/{key...}":    {res: acl.KV, access: acl.Read, name: kvName},
	"PUT /v1/kv/{key...}":    {res: acl.KV, access: acl.Write, name: kvName},
	"DELETE /v1/kv/{key...}": {res: acl.KV, access: acl.Write, name: kvName},
	"/v1/kv":                 {anyToken: true},
	// A transaction is checked op by op (txnAllowed).
	"POST /v1/txn": {anyToken: true},

	"POST /v1/leases":                {res: acl.Lease, access: acl.Write},
	"GET /v1/leases":                 {res: acl.Lease, access: acl.Read},
	"GET /v1/leases/{id}":            {res: acl.Lease, access: acl.Read},
	"DELETE /v1/leases/{id}":         {res: acl.Lease, access: acl.Write},
	"POST /v1/leases/{id}/keepalive": {res: acl.Lease, access: acl.Write},
	// Coalesced keepalives come from followers only, and only without
	// ACLs (peer.go); the handler also refuses any caller but a node.
	"POST " + peerKeepalivePath: {res: acl.Lease, access: acl.Write},
	"POST /v1/leases/keepalive": {res: acl.Lease, access: acl.Write},
	// Encoded commands come from followers only, and only without ACLs
	// (peerapply.go); the handler refuses any caller but a node, and any
	// call while ACLs are on.
	"POST " + peerApplyPath: {res: acl.Operator, access: acl.Write},

	"GET /v1/elections":                  {res: acl.Election, access: acl.Read, name: everything},
	"GET /v1/elections/{name}":           {res: acl.Election, access: acl.Read, name: trimName("/v1/elections/", "")},
	"POST /v1/elections/{name}/campaign": {res: acl.Election, access: acl.Write, name: trimName("/v1/elections/", "/campaign")},
	"POST /v1/elections/{name}/resign":   {res: acl.Election, access: acl.Write, name: trimName("/v1/elections/", "/resign")},
	"POST /v1/elections/{name}/proclaim": {res: acl.Election, access: acl.Write, name: trimName("/v1/elections/", "/proclaim")},
	"GET /v1/locks":                      {res: acl.Lock, access: acl.Read, name: everything},
	"GET /v1/locks/{name}":               {res: acl.Lock, access: acl.Read, name: trimName("/v1/locks/", "")},
	"POST /v1/locks/{name}":              {res: acl.Lock, access: acl.Write, name: trimName("/v1/locks/", "")},
	"DELETE /v1/locks/{name}":            {res: acl.Lock, access: acl.Write, name: trimName("/v1/locks/", "")},
	"GET /v1/fencing/{name}":             {res: acl.Lock, alt: acl.Election, access: acl.Read, name: trimName("/v1/fencing/", "")},

	"GET /v1/snapshot":                     {res: acl.Operator, access: acl.Write},
	"POST /v1/snapshot":                    {res: acl.Operator, access: acl.Write},
	"GET /v1/debug/lease-clock":            {res: acl.Operator, access: acl.Read},
	"POST /v1/debug/lease-clock":           {res: acl.Operator, access: acl.Write},
	"GET /v1/status":                       {res: acl.Operator, access: acl.Read},
	"GET /v1/cluster/members":              {res: acl.Operator, access: acl.Read},
	"POST /v1/cluster/members":             {res: acl.Operator, access: acl.Write},
	"DELETE /v1/cluster/members/{id}":      {res: acl.Operator, access: acl.Write},
	"POST /v1/cluster/transfer-leadership": {res: acl.Operator, access: acl.Write},
	"GET /metrics":                         {res: acl.Operator, access: acl.Read},
	"GET /healthz":                         {open: true},
	"GET /readyz":                          {open: true},

	"POST /v1/acl/bootstrap":           {open: true},
	"GET /v1/acl/tokens":               {res: acl.ACL, access: acl.Read},
	"POST /v1/acl/tokens":              {res: acl.ACL, access: acl.Write},
	"GET /v1/acl/tokens/{accessor}":    {res: acl.ACL, access: acl.Read},
	"DELETE /v1/acl/tokens/{accessor}": {res: acl.ACL, access: acl.Write},
	"GET /v1/acl/token/self":           {anyToken: true},
}

// pprofPermission guards /debug/pprof/ (served by the server package).
var pprofPermission = permission{res: acl.Operator, access: acl.Write}

type tokenKey struct{}

// lookupKey carries the token a request's bearer secret names, looked up
// once per request (nil: none sent, or unknown).
type lookupKey struct{}

type lookup struct{ tok *fsm.ACLToken }

// withLookup looks up r's bearer token in s and keeps the result on r.
func withLookup(r *http.Request, s *fsm.State) *http.Request {
	var l lookup
	if secret, ok := bearer(r); ok {
		l.tok, _ = s.ACLTokenBySecret(secret)
	}
	return r.WithContext(context.WithValue(r.Context(), lookupKey{}, l))
}

// knownToken returns the token r's bearer secret names, using the lookup
// withLookup made if there was one.
func (a *API) knownToken(r *http.Request, secret string) (*fsm.ACLToken, bool) {
	if l, ok := r.Context().Value(lookupKey{}).(lookup); ok {
		return l.tok, l.tok != nil
	}
	return a.node.State().ACLTokenBySecret(secret)
}

// tokenOf returns the token that authenticated r (nil without ACLs).
func tokenOf(r *http.Request) *fsm.ACLToken {
	t, _ := r.Context().Value(tokenKey{}).(*fsm.ACLToken)
	return t
}

// ownerOf is the accessor id that owns the leases r creates ("" without
// ACLs).
func ownerOf(r *http.Request) string {
	if t := tokenOf(r); t != nil {
		return t.AccessorID
	}
	return ""
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func denied(status int, code, msg string) *apiError {
	return &apiError{status: status, detail: api.ErrorDetail{Code: code, Message: msg}}
}

// authorize checks r against the ACL rules of its route when ACLs are on.
// It returns the request to serve (carrying the token), or nil when it has
// answered. Tokens are never logged: only accessor ids are.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, pattern string) *http.Request {
	if !a.opts.ACL {
		return r
	}
	p, ok := permissions[pattern]
	if !ok {
		a.log.Error("no access rule for route: refused", "route", pattern)
		writeError(w, denied(http.StatusForbidden, api.CodePermissionDenied, "no access rule is defined for "+pattern))
		return nil
	}
	return a.check(w, r, p)
}

func (a *API) check(w http.ResponseWriter, r *http.Request, p permission) *http.Request {
	if p.open {
		return r
	}
	secret, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="coordd"`)
		msg := "this cluster requires an access token: send Authorization: Bearer <secret>"
		if a.node.State().ACLBootstrapIndex() == 0 {
			msg += " (ACLs are on but not bootstrapped yet: run coordctl acl bootstrap)"
		}
		writeError(w, denied(http.StatusUnauthorized, api.CodeUnauthenticated, msg))
		return nil
	}
	tok, ok := a.knownToken(r, secret)
	if !ok {
		if !a.node.IsLeader() && r.Header.Get(api.HeaderForwardedBy) == "" {
			// The token may be newer than this node's state: let the
			// leader decide. Its answer (a 401 too, if unknown there)
			// goes back to the client.
			a.forwardBody(w, r, r.Body, a.forwardBound(r, nil))
			return nil
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="coordd", error="invalid_token"`)
		writeError(w, denied(http.StatusUnauthorized, api.CodeInvalidToken, "the access token is not known to this cluster (wrong, or deleted)"))
		return nil
	}
	if !p.anyToken {
		name, prefix := "", false
		if p.name != nil {
			name, prefix = p.name(r)
		}
		if !allowed(tok.Policy(), p.res, name, prefix, p.access) && (p.alt == "" || !allowed(tok.Policy(), p.alt, name, prefix, p.access)) {
			what := p.res
			if p.alt != "" {
				what += " or " + p.alt
			}
			on := ""
			if p.name != nil {
				if prefix {
					on = fmt.Sprintf(" on every name under %q", name)
				} else {
					on = fmt.Sprintf(" on %q", name)
				}
			}
			writeError(w, denied(http.StatusForbidden, api.CodePermissionDenied,
				fmt.Sprintf("token %s has no rule that grants %s %s%s", tok.AccessorID, what, p.access, on)))
			return nil
		}
	}
	return r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok))
}

func allowed(p acl.Policy, res acl.Resource, name string, prefix bool, want acl.Access) bool {
	if prefix {
		return p.AllowedPrefix(res, name, want)
	}
	return p.Allowed(res, name, want)
}

// Guard returns h behind the operator-write check of the API's ACLs (for
// handlers served beside the API, such as /debug/pprof/).
func (a *API) Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.opts.ACL {
			if r = a.check(w, r, pprofPermission); r == nil {
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// ownLease refuses (403) the use of a lease that another token owns: with
// ACLs on, a token may keep alive, revoke, read, or campaign and attach
// keys with only its own leases, so that a rule on one prefix cannot be
// used to depose holders elsewhere. Management tokens may use any lease.
// A lease that does not exist passes: the command reports it.
func (a *API) ownLease(r *http.Request, id uint64) error {
	t := tokenOf(r)
	if t == nil || t.Management || id == 0 {
		return nil
	}
	l, ok := a.node.State().Lease(id)
	if !ok || l.Owner == t.AccessorID {
		return nil
	}
	return denied(http.StatusForbidden, api.CodePermissionDenied,
		fmt.Sprintf("lease %d belongs to another token: token %s may use only the leases it granted", id, t.AccessorID))
}

func tokenJSON(t *fsm.ACLToken, secret string) api.ACLToken {
	rules := t.Rules
	if rules == nil {
		rules = []acl.Rule{}
	}
	return api.ACLToken{AccessorID: t.AccessorID, SecretID: secret, Description: t.Description,
		Management: t.Management, Rules: rules, CreateIndex: t.CreateIndex, CreateTime: time.Unix(0, t.CreateStamp).UTC()}
}

// newTokenDef checks req and makes a token with a fresh accessor id and the
// given or a new secret.
func newTokenDef(req api.ACLTokenRequest) (fsm.ACLToken, string, error) {
	secret := req.SecretID
	if secret == "" {
		s, err := acl.NewSecret()
		if err != nil {
			return fsm.ACLToken{}, "", err
		}
		secret = s
	} else if err := acl.CheckSecret(secret); err != nil {
		return fsm.ACLToken{}, "", badRequest("secret_id: " + err.Error())
	}
	id, err := acl.NewAccessorID()
	if err != nil {
		return fsm.ACLToken{}, "", err
	}
	t := fsm.ACLToken{AccessorID: id, SecretHash: acl.HashSecret(secret), Description: req.Description,
		Management: req.Management, Rules: req.Rules}
	if err := fsm.ValidateToken(&t); err != nil {
		return fsm.ACLToken{}, "", badRequest(err.Error())
	}
	return t, secret, nil
}

// applyACL proposes an ACL command without an idempotency key: a token
// command's answer (the secret) cannot be replayed from the record.
func (a *API) applyACL(r *http.Request, p fsm.Payload) (*fsm.Result, error) {
	cmd, err := fsm.NewCommand(p)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.WriteTimeout)
	defer cancel()
	res, err := a.node.Apply(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return res, res.Err
}

func (a *API) aclBootstrap(w http.ResponseWriter, r *http.Request) {
	var req api.ACLTokenRequest
	body, err := a.readBody(w, r)
	if err == nil && len(body) > 0 {
		err = decodeJSON(body, &req)
	}
	if err == nil && (req.Management || len(req.Rules) > 0) {
		err = badRequest("the bootstrap token is a management token: give only secret_id and description")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if req.Description == "" {
		req.Description = "bootstrap management token"
	}
	a.onLeader(w, r, body, func() error {
		if a.node.State().ACLBootstrapIndex() != 0 {
			return fsm.ErrACLBootstrapped
		}
		t, secret, err := newTokenDef(req)
		if err != nil {
			return err
		}
		res, err := a.applyACL(r, fsm.ACLBootstrap{Token: fsm.ACLToken{AccessorID: t.AccessorID, SecretHash: t.SecretHash, Description: t.Description, Management: true}})
		if err != nil {
			return err
		}
		a.log.Info("ACLs bootstrapped", "accessor", res.Token.AccessorID)
		writeJSON(w, http.StatusOK, tokenJSON(res.Token, secret))
		return nil
	})
}

func (a *API) aclTokenCreate(w http.ResponseWriter, r *http.Request) {
	var req api.ACLTokenRequest
	body, err := a.readJSON(w, r, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	a.onLeader(w, r, body, func() error {
		t, secret, err := newTokenDef(req)
		if err != nil {
			return err
		}
		res, err := a.applyACL(r, fsm.ACLTokenCreate{Token: t})
		if err != nil {
			return err
		}
		a.log.Info("access token created", "accessor", res.Token.AccessorID, "by", ownerOf(r))
		writeJSON(w, http.StatusOK, tokenJSON(res.Token, secret))
		return nil
	})
}

func (a *API) aclTokenDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("accessor")
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	if t := tokenOf(r); t != nil && t.AccessorID == id {
		writeError(w, badRequest("a token cannot delete itself (it could be the last management token): use another token"))
		return
	}
	a.onLeader(w, r, nil, func() error {
		res, err := a.applyACL(r, fsm.ACLTokenDelete{AccessorID: id})
		if err != nil {
			return err
		}
		a.log.Info("access token deleted", "accessor", id, "by", ownerOf(r))
		writeJSON(w, http.StatusOK, tokenJSON(res.Token, ""))
		return nil
	})
}

func (a *API) aclTokenList(w http.ResponseWriter, r *http.Request) {
	a.readState(w, r, func(s *fsm.State) (any, error) {
		out := []api.ACLToken{}
		for _, t := range s.ACLTokens() {
			out = append(out, tokenJSON(t, ""))
		}
		return out, nil
	})
}

func (a *API) aclTokenGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("accessor")
	a.readState(w, r, func(s *fsm.State) (any, error) {
		t, ok := s.ACLToken(id)
		if !ok {
			return nil, fmt.Errorf("%w: %s", fsm.ErrTokenNotFound, id)
		}
		return tokenJSON(t, ""), nil
	})
}

func (a *API) aclTokenSelf(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	t := tokenOf(r)
	if t == nil {
		writeError(w, badRequest("ACLs are not enabled on this node: requests carry no token"))
		return
	}
	writeJSON(w, http.StatusOK, tokenJSON(t, ""))
}

// readState answers a linearizable read of f's view of the state (?stale
// reads this node's copy), with the read headers of the state's index.
func (a *API) readState(w http.ResponseWriter, r *http.Request, f func(*fsm.State) (any, error)) {
	q, err := query(r, "stale")
	var stale bool
	if err == nil {
		stale, err = flag(q, "stale")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	a.serveRead(w, r, stale, func() error {
		if err := a.readBarrier(r.Context(), stale); err != nil {
			return err
		}
		s := a.node.State()
		v, err := f(s)
		if err != nil {
			return err
		}
		a.setReadHeaders(w, s.Index(), stale)
		writeJSON(w, http.StatusOK, v)
		return nil
	})
}

// classifyACL maps the errors of access control and of the limits the FSM
// enforces; ok is false for other errors.
func classifyACL(err error) (int, api.ErrorDetail, bool) {
	switch {
	case errors.Is(err, fsm.ErrACLBootstrapped):
		return http.StatusConflict, api.ErrorDetail{Code: api.CodeACLBootstrapped, Message: err.Error() + " (the bootstrap token can be made once; ask its holder for a token)"}, true
	case errors.Is(err, fsm.ErrTokenNotFound):
		return http.StatusNotFound, api.ErrorDetail{Code: api.CodeTokenNotFound, Message: err.Error()}, true
	case errors.Is(err, fsm.ErrTokenExists):
		return http.StatusConflict, api.ErrorDetail{Code: api.CodeTokenExists, Message: err.Error()}, true
	case errors.Is(err, fsm.ErrTooManyLeases):
		return http.StatusTooManyRequests, api.ErrorDetail{Code: api.CodeTooManyLeases, Message: err.Error()}, true
	case errors.Is(err, fsm.ErrTooManyCandidates):
		return http.StatusTooManyRequests, api.ErrorDetail{Code: api.CodeTooManyCandidates, Message: err.Error()}, true
	}
	return 0, api.ErrorDetail{}, false
}
