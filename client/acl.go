package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/coordd/coordd/acl"
)

// ACLBootstrap creates the first management token of a cluster with ACLs
// on; it works once in the cluster's life. With an empty secret, a random
// one is made here, so that it is known even if the answer is lost: on
// ErrOutcomeUnknown the returned token holds only the SecretID, which may
// or may not have been created (try it). Keep the SecretID safe.
func (c *Client) ACLBootstrap(ctx context.Context, description, secret string) (*ACLToken, error) {
	return c.createToken(ctx, "/v1/acl/bootstrap", ACLTokenSpec{Description: description, SecretID: secret})
}

// ACLCreateToken creates a token (needs acl write). As with ACLBootstrap,
// the secret is made here when spec has none, and on ErrOutcomeUnknown the
// returned token holds only the SecretID.
func (c *Client) ACLCreateToken(ctx context.Context, spec ACLTokenSpec) (*ACLToken, error) {
	return c.createToken(ctx, "/v1/acl/tokens", spec)
}

// createToken is not retried once it may have been applied: the server
// keeps no record of a token command's answer, and a second attempt would
// make a second token (or, for a bootstrap, be refused).
func (c *Client) createToken(ctx context.Context, path string, spec ACLTokenSpec) (*ACLToken, error) {
	if spec.SecretID == "" {
		s, err := acl.NewSecret()
		if err != nil {
			return nil, err
		}
		spec.SecretID = s
	}
	b, err := jsonBody(spec)
	if err != nil {
		return nil, err
	}
	var out ACLToken
	if err := c.do(ctx, request{method: http.MethodPost, path: path, body: b}, &out); err != nil {
		var se *Error
		if errors.Is(err, ErrOutcomeUnknown) || errors.As(err, &se) && se.ambiguous() {
			return &ACLToken{SecretID: spec.SecretID}, err
		}
		return nil, err
	}
	out.SecretID = spec.SecretID
	return &out, nil
}

// ACLDeleteToken deletes the token with the given accessor id (needs acl
// write). Requests with its secret are refused from then on.
func (c *Client) ACLDeleteToken(ctx context.Context, accessor string) error {
	return c.write(ctx, http.MethodDelete, "/v1/acl/tokens/"+url.PathEscape(accessor), nil, nil)
}

// ACLTokens lists the tokens, without secrets (needs acl read).
func (c *Client) ACLTokens(ctx context.Context) ([]ACLToken, error) {
	var out []ACLToken
	if err := c.read(ctx, "/v1/acl/tokens", false, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ACLToken reads one token by accessor id (needs acl read).
func (c *Client) ACLToken(ctx context.Context, accessor string) (*ACLToken, error) {
	var out ACLToken
	if err := c.read(ctx, "/v1/acl/tokens/"+url.PathEscape(accessor), false, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ACLSelf reads the token the client sends.
func (c *Client) ACLSelf(ctx context.Context) (*ACLToken, error) {
	var out ACLToken
	if err := c.read(ctx, "/v1/acl/token/self", true, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
