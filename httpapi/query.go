package httpapi

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// query parses the query string strictly. A malformed pair, an unknown
// parameter or a repeated one is an error rather than something to skip:
// url.Values would silently drop "cas=%ZZ" or "cas=5;", and a typo such as
// ?cass=5 must not turn a conditional write into an unconditional one.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest(fmt.Sprintf("malformed query string %q: %v", r.URL.RawQuery, err))
	}
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return nil, badRequest(fmt.Sprintf("unknown query parameter %q: this endpoint takes none", k))
			}
			return nil, badRequest(fmt.Sprintf("unknown query parameter %q (allowed: %s)", k, strings.Join(allowed, ", ")))
		}
		if len(vs) > 1 {
			return nil, badRequest(fmt.Sprintf("query parameter %q given %d times", k, len(vs)))
		}
	}
	return q, nil
}

// flag reads a boolean query parameter: present means true unless its value
// is "false" or "0".
func flag(q url.Values, name string) (bool, error) {
	if !q.Has(name) {
		return false, nil
	}
	switch v := q.Get(name); v {
	case "", "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	default:
		return false, badRequest(fmt.Sprintf("query parameter %q must be true or false, not %q", name, v))
	}
}

// uintParam reads a non-negative integer query parameter.
func uintParam(q url.Values, name string) (v uint64, present bool, err error) {
	if !q.Has(name) {
		return 0, false, nil
	}
	s := q.Get(name)
	v, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, true, badRequest(fmt.Sprintf("query parameter %q must be a non-negative integer, not %q", name, s))
	}
	return v, true, nil
}

// blocking describes ?index=N&wait=D.
type blocking struct {
	index uint64        // 0: do not block
	wait  time.Duration // with jitter added
}

func parseBlocking(q url.Values) (blocking, error) {
	var b blocking
	idx, _, err := uintParam(q, "index")
	if err != nil {
		return b, err
	}
	b.index = idx
	b.wait = DefaultWait
	if q.Has("wait") {
		s := q.Get("wait")
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return b, badRequest(fmt.Sprintf("query parameter \"wait\" must be a positive duration such as 30s or 500ms, not %q", s))
		}
		if d > MaxWait {
			return b, badRequest(fmt.Sprintf("query parameter \"wait\" is %s; the maximum is %s", d, MaxWait))
		}
		b.wait = d
	}
	// Up to 1/16 of jitter spreads the wake-ups of many watchers that
	// started together (as Consul does).
	b.wait += time.Duration(rand.Int64N(int64(b.wait)/16 + 1))
	return b, nil
}

// validKey checks a key (or prefix, which may be empty).
func validKey(key string, allowEmpty bool) error {
	switch {
	case key == "" && !allowEmpty:
		return badRequest("key must not be empty (use ?prefix to list keys)")
	case len(key) > MaxKeyBytes:
		return tooLarge("key is %d bytes; the maximum is %d", len(key), MaxKeyBytes)
	case !utf8.ValidString(key):
		return badRequest("key must be valid UTF-8")
	case strings.ContainsRune(key, 0):
		return badRequest("key must not contain NUL")
	}
	return nil
}

// readBody reads the whole request body within the configured size limit
// (413) and time limit (408).
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	if r.ContentLength > a.opts.MaxRequestBytes {
		// Refuse before reading: the declared length is over the limit.
		return nil, &http.MaxBytesError{Limit: a.opts.MaxRequestBytes}
	}
	lift := bodyDeadline(w, a.opts.BodyReadTimeout)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxRequestBytes))
	if err != nil {
		// The deadline stays: the server drains what is left of the body
		// after the answer, and must not wait for it forever.
		return nil, bodyReadError(err, a.opts.BodyReadTimeout)
	}
	lift()
	return body, nil
}
