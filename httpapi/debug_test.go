package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/httpapi"
	"github.com/coordd/coordd/lease"
)

func TestLeaseClockControl_OnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	off := newTestAPI(t, "L", nil)
	wantError(t, off.do(t, "POST", "/v1/debug/lease-clock", `{"jump":"1s"}`), http.StatusNotFound, api.CodeNotFound)

	clock := lease.NewSkewClock(lease.NewFakeClock(time.Unix(0, 0)))
	on := newTestAPI(t, "L", &httpapi.Options{LeaseClock: clock})
	var got httpapi.LeaseClockJSON
	wantJSON(t, on.do(t, "POST", "/v1/debug/lease-clock", `{"jump":"2s","rate":1.5}`), &got)
	if got.AheadMs != 2000 || got.Rate != 1.5 {
		t.Fatalf("after jump and rate: %+v", got)
	}
	wantJSON(t, on.do(t, "GET", "/v1/debug/lease-clock", ""), &got)
	if got.AheadMs != 2000 {
		t.Fatalf("GET: %+v", got)
	}
	for _, body := range []string{`{"jump":"-1s"}`, `{"jump":"soon"}`, `{"rate":-1}`, `{"rate":1000}`, `{"speed":2}`, ``} {
		wantError(t, on.do(t, "POST", "/v1/debug/lease-clock", body), http.StatusBadRequest, api.CodeBadRequest)
	}
}
