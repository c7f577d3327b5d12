package api

import (
	"time"

	"github.com/coordd/coordd/acl"
)

// ACLToken is an access token as the API shows it. SecretID is set only in
// the answer that created the token; it is what clients send as a bearer
// token.
type ACLToken struct {
	AccessorID  string     `json:"accessor_id"`
	SecretID    string     `json:"secret_id,omitempty"`
	Description string     `json:"description,omitempty"`
	Management  bool       `json:"management,omitempty"`
	Rules       []acl.Rule `json:"rules"`
	CreateIndex uint64     `json:"create_index"`
	CreateTime  time.Time  `json:"create_time"`
}

// ACLTokenRequest is the body of POST /v1/acl/tokens (and, optionally, of
// POST /v1/acl/bootstrap, where only SecretID and Description count).
type ACLTokenRequest struct {
	Description string     `json:"description,omitempty"`
	Management  bool       `json:"management,omitempty"`
	Rules       []acl.Rule `json:"rules,omitempty"`
	// SecretID, when set, is the secret to use (16 to 256 printable
	// characters), for tokens provisioned from elsewhere; by default a
	// random one is made.
	SecretID string `json:"secret_id,omitempty"`
}
