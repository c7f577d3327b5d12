package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/coordd/coordd/api"
)

// electionStream streams every change of an election as Server-Sent Events
// ("event: election", id = the state's index). The first event is the state
// as it is; each later one is the latest state, with Coalesced counting the
// holder changes in between that were not sent one by one. The stream never
// ends on a stale state: a change is always followed by an event. Any node
// serves it from its own state; KnownLeader=false says that state may lag.
func (a *API) electionStream(w http.ResponseWriter, r *http.Request, name string) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, fmt.Errorf("streaming not supported by this connection"))
		return
	}
	h := w.Header()
	h.Set(headerContentType, "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		sent        bool
		lastIdx     uint64
		lastChanges uint64
		lastKnown   bool
		idle        int
	)
	for {
		reset := a.node.ResetCh()
		e, idx, watch := a.node.State().WatchElection(name)
		known := a.node.Staleness().KnownLeader
		if !sent || idx != lastIdx || known != lastKnown {
			ev := api.StreamEvent{Election: electionJSON(routeKind(r), name, e, idx), KnownLeader: known}
			if sent && ev.Changes > lastChanges+1 {
				ev.Coalesced = ev.Changes - lastChanges - 1
			}
			data, _ := json.Marshal(ev)
			if _, err := fmt.Fprintf(w, "event: election\nid: %d\ndata: %s\n\n", idx, data); err != nil {
				return
			}
			fl.Flush()
			sent, lastIdx, lastChanges, lastKnown, idle = true, idx, ev.Changes, known, 0
		}
		select {
		case <-watch:
		case <-reset:
		case <-tick.C:
			if idle++; idle >= 15 {
				// A comment keeps proxies from closing an idle stream.
				if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
					return
				}
				fl.Flush()
				idle = 0
			}
		case <-r.Context().Done():
			return
		case <-a.opts.Stopping:
			return
		}
	}
}
