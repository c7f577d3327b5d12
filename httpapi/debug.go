package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/coordd/coordd/api"
)

// LeaseClockRequest is the body of POST /v1/debug/lease-clock.
type LeaseClockRequest struct {
	// Jump moves this node's lease clock forward ("2s"; empty: no jump).
	Jump string `json:"jump,omitempty"`
	// Rate makes it run this many times as fast as real time (0: unchanged).
	Rate float64 `json:"rate,omitempty"`
}

// LeaseClockJSON describes this node's lease clock.
type LeaseClockJSON struct {
	AheadMs int64   `json:"ahead_ms"`
	Rate    float64 `json:"rate"`
}

// maxLeaseClockRate bounds the rate a fault may set.
const maxLeaseClockRate = 100

// leaseClock answers GET and POST /v1/debug/lease-clock: fault injection on
// this node's lease clock (a jump forward, a rate change). It exists only
// when coordd was started with -unsafe-lease-clock-control; a production
// node answers 404.
func (a *API) leaseClock(w http.ResponseWriter, r *http.Request) {
	c := a.opts.LeaseClock
	if c == nil {
		writeErrorDetail(w, http.StatusNotFound, api.ErrorDetail{Code: api.CodeNotFound,
			Message: "lease clock control is disabled: it exists only for fault injection (coordd -unsafe-lease-clock-control)"})
		return
	}
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	if r.Method == http.MethodPost {
		var req LeaseClockRequest
		if _, err := a.readJSON(w, r, &req); err != nil {
			writeError(w, err)
			return
		}
		var jump time.Duration
		if req.Jump != "" {
			d, err := time.ParseDuration(req.Jump)
			if err != nil || d < 0 {
				writeError(w, badRequest(`"jump" must be a non-negative duration such as "2s"`))
				return
			}
			jump = d
		}
		if req.Rate < 0 || req.Rate > maxLeaseClockRate {
			writeError(w, badRequest(`"rate" must be in (0, `+strconv.Itoa(maxLeaseClockRate)+`]`))
			return
		}
		c.Jump(jump)
		if req.Rate > 0 {
			c.SetRate(req.Rate)
		}
		a.log.Warn("lease clock changed by fault injection", "jump", jump, "rate", req.Rate)
	}
	ahead, rate := c.Skew()
	writeJSON(w, http.StatusOK, LeaseClockJSON{AheadMs: ahead.Milliseconds(), Rate: rate})
}
