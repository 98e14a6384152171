package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// heartbeat keeps idle SSE connections (and proxies in between) from timing out.
const heartbeat = 15 * time.Second

// stream serves GET /events/stream as Server-Sent Events: every committed event after
// Last-Event-ID (or ?after=), then live ones, each with `id: <position>`. It reads the
// log itself, so a reconnecting client resumes without a gap. ?type= and ?aggregate_id=
// filter; filtered-out events still advance the cursor.
func (a *API) stream(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeErrorStatus(w, http.StatusInternalServerError, chronicle.CodeInternal, "streaming unsupported")
		return
	}
	q := r.URL.Query()
	var after uint64
	cursor := r.Header.Get("Last-Event-ID")
	if cursor == "" {
		cursor = q.Get("after")
	}
	if cursor != "" {
		v, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil {
			writeError(w, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidQuery, "Last-Event-ID", "Last-Event-ID must be a log position"))
			return
		}
		after = v
	} else if h, err := a.cfg.Store.Head(r.Context()); err == nil && q.Get("from") != "start" {
		after = h.Position // a fresh subscriber gets live events; ?from=start replays all
	}
	typ, agg := q.Get("type"), q.Get("aggregate_id")
	if agg != "" {
		if err := chronicle.ValidateAccountID("aggregate_id", agg); err != nil {
			writeError(w, err)
			return
		}
	}
	changes, stop := a.cfg.Node.Changes()
	defer stop()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\n: position %d\n\n", after)
	flusher.Flush()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	ctx := r.Context()
	for {
		events, err := a.cfg.Store.Events(ctx, chronicle.EventQuery{After: after, Limit: chronicle.MaxEventsPage})
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("event stream read failed", "err", err)
				fmt.Fprintf(w, "event: error\ndata: %s\n\n", jsonString(err.Error()))
				flusher.Flush()
			}
			return
		}
		for _, e := range events {
			after = e.Position
			if typ != "" && e.EventType != typ || agg != "" && e.AggregateID != agg {
				continue
			}
			data, err := json.Marshal(e)
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Position, e.EventType, data); err != nil {
				return
			}
		}
		if len(events) > 0 {
			flusher.Flush()
		}
		if len(events) == chronicle.MaxEventsPage {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-a.closing:
			return
		case <-changes:
		case <-tick.C:
			// The comment carries the cursor so an idle filtered stream still resumes right.
			if _, err := fmt.Fprintf(w, ": heartbeat %d\n\n", after); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
