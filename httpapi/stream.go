package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
)

// heartbeat keeps idle SSE connections (and proxies in between) from timing out.
const heartbeat = 15 * time.Second

// stream serves GET /events/stream as Server-Sent Events: every committed event after
// Last-Event-ID (or ?after=), then live ones, each with `id: <position>`. It reads the
// log, so a reconnecting client resumes without a gap. ?type= and ?aggregate_id= filter;
// filtered-out events still advance the cursor. Live events come pre-encoded from the
// hub, shared by every stream; a stream catching up from further back reads the log
// itself. Streams are capped in total and per client (503 too_many_streams).
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
	release, err := a.streams.acquire(clientIP(r))
	if err != nil {
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, err)
		return
	}
	defer release()
	unsubscribe := a.hub.subscribe()
	defer unsubscribe()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	// A rolling write deadline: a client that stops reading is cut off after
	// WriteTimeout instead of holding its goroutine and slot forever.
	deadline := func() { _ = rc.SetWriteDeadline(time.Now().Add(a.cfg.WriteTimeout)) }
	deadline()
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\n: position %d\n\n", after)
	flusher.Flush()
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	// A stream outlives the check its request passed: once a second it asks again, so a
	// revoked token stops receiving events within about a second (plus the table's
	// reload), idle or not.
	var recheck <-chan time.Time
	if p, _ := PrincipalFrom(r.Context()); p.Name != "" {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		recheck = t.C
	}
	// authorized asks again whether the stream's token is valid, and tells the client
	// when it is not.
	authorized := func() bool {
		_, err := a.auth.authenticate(r)
		if err == nil {
			return true
		}
		deadline()
		e := chronicle.AsError(err)
		fmt.Fprintf(w, "event: error\ndata: %s\n\n", streamError(e.Code, e.Message))
		flusher.Flush()
		return false
	}
	ctx := r.Context()
	skip := func(typ2, agg2 string) bool {
		return typ != "" && typ2 != typ || agg != "" && agg2 != agg
	}
	// live is set once the stream is served from the hub: falling behind it after that
	// means the client reads slower than the log grows, and it is told so.
	live := false
	var buf, scratch []byte // one frame at a time, written in one call
	for {
		select { // a busy stream never waits below, so it checks here
		case <-recheck:
			if !authorized() {
				return
			}
		default:
		}
		frames, behind, notify, err := a.hub.since(after)
		if behind && live {
			deadline()
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", streamError(chronicle.CodeStreamLagging,
				fmt.Sprintf("this stream fell more than %d events behind the log; reconnect with Last-Event-ID %d to resume", a.hub.size, after)))
			flusher.Flush()
			return
		}
		if behind {
			// Catching up from before the hub's window: read the log directly, with the
			// JSON the store keeps for its newest events; a filtered stream encodes only
			// the events it sends.
			q := chronicle.EventQuery{After: after, Limit: chronicle.MaxEventsPage}
			var events []chronicle.EncodedEvent
			var readErr error
			if typ == "" && agg == "" {
				events, readErr = chronicle.ReadEncodedEvents(ctx, a.cfg.Store, q)
			} else {
				var evs []chronicle.Event
				evs, readErr = a.cfg.Store.Events(ctx, q)
				events = make([]chronicle.EncodedEvent, len(evs))
				for i := range evs {
					events[i].Event = evs[i]
				}
			}
			if readErr != nil {
				a.streamFailed(ctx, w, flusher, readErr)
				return
			}
			deadline()
			for i := range events {
				e := &events[i]
				after = e.Event.Position
				if skip(e.Event.EventType, e.Event.AggregateID) {
					continue
				}
				if e.JSON == nil { // a filtered read: encode just what is sent
					scratch = e.Event.AppendJSON(scratch[:0])
					e.JSON = scratch
				}
				a.hub.encoded.Add(1)
				f := frame{pos: e.Event.Position, typ: e.Event.EventType, json: e.JSON}
				buf = f.appendSSE(buf[:0])
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
			flusher.Flush()
			if len(events) > 0 {
				continue
			}
		}
		if len(frames) > 0 {
			live = true
			deadline()
			for _, f := range frames {
				after = f.pos
				if skip(f.typ, f.agg) {
					continue
				}
				buf = f.appendSSE(buf[:0])
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
			flusher.Flush()
			continue
		}
		if err != nil {
			a.streamFailed(ctx, w, flusher, err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-a.closing:
			return
		case <-notify:
		case <-recheck:
			if !authorized() {
				return
			}
		case <-tick.C:
			// The comment carries the cursor so an idle filtered stream still resumes right.
			deadline()
			if _, err := fmt.Fprintf(w, ": heartbeat %d\n\n", after); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

// streamFailed ends a stream whose log read failed, telling the client why.
func (a *API) streamFailed(ctx context.Context, w http.ResponseWriter, flusher http.Flusher, err error) {
	if ctx.Err() != nil {
		return
	}
	a.log.Warn("event stream read failed", "err", err)
	fmt.Fprintf(w, "event: error\ndata: %s\n\n", jsonString(err.Error()))
	flusher.Flush()
}

// streamError is the data of an error event that carries a stable code.
func streamError(code, msg string) string {
	b, _ := json.Marshal(api.ErrorBody{Message: msg, Code: code})
	return string(b)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
