package httpapi

import (
	"net/http"

	"github.com/coordd/coordd/acl"
)

// operatorReadPermission guards read-only operator endpoints served beside
// the API (the server's /v1/alarms and /v1/shadow/status).
var operatorReadPermission = permission{res: acl.Operator, access: acl.Read}

// GuardRead returns h behind the operator-read check of the API's ACLs
// (for read-only handlers served beside the API); Guard is the write
// check.
func (a *API) GuardRead(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.opts.ACL {
			if r = a.check(w, r, operatorReadPermission); r == nil {
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
