package httpapi

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/metrics"
)

// observeRequest records a request by its route pattern (chi's, never the raw path) and
// status code.
func (a *API) observeRequest(r *http.Request, status int, d time.Duration) {
	if status == 0 {
		status = http.StatusOK // nothing written: net/http answers 200
	}
	var patterns []string
	if rctx := chi.RouteContext(r.Context()); rctx != nil {
		patterns = rctx.RoutePatterns
	}
	a.httpMetrics.Observe(patterns, status, d)
}

// errorCode is the code label of a command's outcome.
func errorCode(err error) string {
	if err == nil {
		return metrics.CodeOK
	}
	return chronicle.AsError(err).Code
}

// commandMetric measures one command request: started when its body is in, recorded
// once it has its answer, unless it was forwarded to the leader (which records it).
type commandMetric struct {
	m     *metrics.Commands
	typ   string
	start time.Time
}

func (a *API) startCommand(t string) commandMetric {
	if a.cmdMetrics == nil {
		return commandMetric{}
	}
	return commandMetric{m: a.cmdMetrics, typ: t, start: time.Now()}
}

// done records the command's outcome (err nil: ok) and the request's latency.
func (c commandMetric) done(err error) {
	if c.m == nil {
		return
	}
	c.m.Count(c.typ, errorCode(err))
	c.m.Observe(c.typ, time.Since(c.start))
}

// batchDone records a decoded batch: its size, each item under its own type with its
// own result (or the whole batch's error, err), and the request's latency as type batch.
func (c commandMetric) batchDone(cmds []chronicle.Command, results []chronicle.Result, err error) {
	if c.m == nil {
		return
	}
	c.m.Batch(len(cmds))
	for i := range cmds {
		code := errorCode(err)
		if err == nil && i < len(results) && results[i].Err != nil {
			code = results[i].Err.Code
		}
		c.m.Count(string(cmds[i].Type), code)
	}
	c.m.Observe(c.typ, time.Since(c.start))
}
