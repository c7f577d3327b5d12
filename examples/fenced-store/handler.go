package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/coordd/coordd/fencing"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxValueBytes is the largest value a PUT may store.
const maxValueBytes = 1 << 20

// entry is one stored value and the lock holder that wrote it.
type entry struct {
	Key   string        `json:"key"`
	Value string        `json:"value"`
	Name  string        `json:"name"`
	Token fencing.Token `json:"token"`
}

// store is the resource: values in memory behind a fencing guard.
type store struct {
	// mu serialises writes: a PUT holds it across the guard's check and the
	// write, so no write with a lower token can land after one with a higher
	// token passed its check. GETs take it shared.
	mu      sync.RWMutex
	entries map[string]entry

	guardedPut http.Handler // guard middleware in front of write
}

// newHandler returns the HTTP handler of the resource server, fenced by
// guard. If gatherer is not nil, it is served on GET /metrics.
func newHandler(guard *fencing.Guard, gatherer prometheus.Gatherer) http.Handler {
	s := &store{entries: make(map[string]entry)}
	s.guardedPut = guard.Middleware(fencing.WithMethods(http.MethodPut))(http.HandlerFunc(s.write))
	mux := http.NewServeMux()
	mux.HandleFunc("/data/{key...}", s.serveData)
	if gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

func (s *store) serveData(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if key == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "the key is empty: use /data/{key}")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.read(w, key)
	case http.MethodPut:
		s.put(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on /data/{key}")
	}
}

func (s *store) read(w http.ResponseWriter, key string) {
	s.mu.RLock()
	e, ok := s.entries[key]
	s.mu.RUnlock()
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no value for key %q", key))
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// put reads the body first, so that a slow client does not hold the lock,
// then checks the token and writes under the lock.
func (s *store) put(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxValueBytes))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the value is larger than %d bytes", mbe.Limit))
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "bad_request", "read body: "+err.Error())
		return
	case !utf8.Valid(body):
		writeError(w, http.StatusBadRequest, "bad_request", "the value must be UTF-8 text")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	s.mu.Lock()
	defer s.mu.Unlock()
	s.guardedPut.ServeHTTP(w, r)
}

// write runs after the guard accepted the request's token, with s.mu held.
func (s *store) write(w http.ResponseWriter, r *http.Request) {
	name, token, ok := fencing.TokenFromContext(r.Context())
	if !ok { // cannot happen: PUT is guarded
		writeError(w, http.StatusInternalServerError, "internal", "no fencing token in the request context")
		return
	}
	body, err := io.ReadAll(r.Body) // the bytes.Reader of put
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	key := r.PathValue("key")
	e := entry{Key: key, Value: string(body), Name: name, Token: token}
	s.entries[key] = e
	writeJSON(w, http.StatusOK, struct {
		Key   string        `json:"key"`
		Name  string        `json:"name"`
		Token fencing.Token `json:"token"`
	}{key, name, token})
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	type detail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	writeJSON(w, status, struct {
		Error detail `json:"error"`
	}{detail{code, message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
