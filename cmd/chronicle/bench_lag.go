package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chronicle-ledger/chronicle/client"
)

// readyView is the part of GET /ready the lag sampler reads: the log's head position
// (the Raft store's), the read model's projector position and the publisher's.
type readyView struct {
	Node struct {
		Raft *struct {
			Position uint64 `json:"position"`
		} `json:"raft"`
		Projector *struct {
			Position   uint64  `json:"position"`
			LagSeconds float64 `json:"lag_seconds"`
		} `json:"projector"`
		NATS *struct {
			Published uint64 `json:"published"`
		} `json:"nats"`
	} `json:"node"`
}

// lagSample is one reading of /ready: how many events the projector and the publisher
// were behind the head of the log.
type lagSample struct {
	projector, publisher uint64
	projectorSeconds     float64
}

// lagStats summarises the samples taken during a load.
type lagStats struct {
	samples int
	// projector: events between the log's head and the read model's position.
	projectorMean, projectorP99 float64
	projectorMax                uint64
	projectorMaxSeconds         float64
	publisherMean, publisherP99 float64
	publisherMax                uint64
	hasProjector, hasPublisher  bool
	firstError                  string
	errors                      int
}

// sampleLag reads /ready every interval until ctx ends and summarises the lag.
func sampleLag(ctx context.Context, c *client.Client, interval time.Duration) lagStats {
	var samples []lagSample
	var hasProjector, hasPublisher bool
	var errs int
	var firstError string
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			st := summariseLag(samples)
			st.hasProjector, st.hasPublisher, st.errors, st.firstError = hasProjector, hasPublisher, errs, firstError
			return st
		case <-tick.C:
		}
		var rv readyView
		if _, err := c.Do(ctx, http.MethodGet, "/ready", nil, nil, &rv); err != nil {
			if ctx.Err() == nil {
				errs++
				if firstError == "" {
					firstError = err.Error()
				}
			}
			continue
		}
		if rv.Node.Raft == nil {
			continue // not a Raft node: no head to measure from
		}
		s, proj, pub := lagOf(rv)
		hasProjector = hasProjector || proj
		hasPublisher = hasPublisher || pub
		samples = append(samples, s)
	}
}

// lagOf computes one sample; the positions are read one after the other on the node, so
// a view can be seen ahead of the head read just before it: that counts as no lag.
func lagOf(rv readyView) (s lagSample, hasProjector, hasPublisher bool) {
	if rv.Node.Raft == nil {
		return s, false, false
	}
	head := rv.Node.Raft.Position
	behind := func(p uint64) uint64 {
		if p >= head {
			return 0
		}
		return head - p
	}
	if p := rv.Node.Projector; p != nil {
		s.projector, s.projectorSeconds, hasProjector = behind(p.Position), p.LagSeconds, true
	}
	if n := rv.Node.NATS; n != nil {
		s.publisher, hasPublisher = behind(n.Published), true
	}
	return s, hasProjector, hasPublisher
}

func summariseLag(samples []lagSample) lagStats {
	st := lagStats{samples: len(samples)}
	if len(samples) == 0 {
		return st
	}
	proj := make([]uint64, len(samples))
	pub := make([]uint64, len(samples))
	var projSum, pubSum float64
	for i, s := range samples {
		proj[i], pub[i] = s.projector, s.publisher
		projSum += float64(s.projector)
		pubSum += float64(s.publisher)
		st.projectorMaxSeconds = max(st.projectorMaxSeconds, s.projectorSeconds)
	}
	slices.Sort(proj)
	slices.Sort(pub)
	n := float64(len(samples))
	st.projectorMean, st.projectorP99, st.projectorMax = projSum/n, float64(nearestRank(proj, 99)), proj[len(proj)-1]
	st.publisherMean, st.publisherP99, st.publisherMax = pubSum/n, float64(nearestRank(pub, 99)), pub[len(pub)-1]
	return st
}

// nearestRank is the nearest-rank p-th percentile of sorted (0 when empty), as percentile.
func nearestRank[T any](sorted []T, p int) T {
	var zero T
	if len(sorted) == 0 {
		return zero
	}
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

func writeLagReport(w io.Writer, st lagStats) {
	if st.samples == 0 {
		msg := "no samples"
		if st.firstError != "" {
			msg += " (" + st.firstError + ")"
		}
		fmt.Fprintf(w, "lag samples:   %s\n", msg)
		return
	}
	fmt.Fprintf(w, "lag samples:   %d of /ready\n", st.samples)
	if st.hasProjector {
		fmt.Fprintf(w, "projector lag: mean %.1f, p99 %.0f, max %d events behind the log's head (max %.3fs)\n",
			st.projectorMean, st.projectorP99, st.projectorMax, st.projectorMaxSeconds)
	}
	if st.hasPublisher {
		fmt.Fprintf(w, "publisher lag: mean %.1f, p99 %.0f, max %d events behind the log's head\n",
			st.publisherMean, st.publisherP99, st.publisherMax)
	}
}

// settleResult is how long a node took to settle after a load, and whether it did.
type settleResult struct {
	took    time.Duration
	settled bool
	// why names what was still busy when the wait gave up.
	why string
}

// waitSettled polls the node until the work a load leaves behind is done: its projector
// and publisher have caught up with the head of the log (GET /ready) and no Pebble
// compaction is running (GET /metrics, where the node serves it). Reads timed after it
// measure the reads, not the catching up that shares the node's cores with them. It gives
// up after limit and says what was still busy.
func waitSettled(ctx context.Context, c *client.Client, limit, interval time.Duration) (settleResult, error) {
	start := time.Now()
	quiet := 0 // consecutive samples with nothing busy: one could fall between two compactions
	why := ""
	for {
		busy, err := nodeBusy(ctx, c)
		if err != nil {
			return settleResult{}, err
		}
		if busy == "" {
			quiet++
			if quiet >= 3 {
				return settleResult{took: time.Since(start), settled: true}, nil
			}
		} else {
			quiet, why = 0, busy
		}
		if time.Since(start) >= limit {
			return settleResult{took: time.Since(start), why: why}, nil
		}
		if err := sleepCtx(ctx, interval); err != nil {
			return settleResult{}, err
		}
	}
}

// nodeBusy says what background work the node is doing, or "" when it is idle.
func nodeBusy(ctx context.Context, c *client.Client) (string, error) {
	var rv readyView
	if _, err := c.Do(ctx, http.MethodGet, "/ready", nil, nil, &rv); err != nil {
		return "", fmt.Errorf("read /ready: %w", err)
	}
	s, _, _ := lagOf(rv)
	switch {
	case s.projector > 0:
		return fmt.Sprintf("projector %d events behind", s.projector), nil
	case s.publisher > 0:
		return fmt.Sprintf("publisher %d events behind", s.publisher), nil
	}
	var text []byte
	if _, err := c.Do(ctx, http.MethodGet, "/metrics", nil, nil, &text); err != nil {
		// Metrics off, or a token without the reader role: the lag is all there is to go on.
		return "", nil
	}
	if n, ok := gaugeSum(text, "chronicle_pebble_compactions_in_progress"); ok && n > 0 {
		return fmt.Sprintf("%g Pebble compactions running", n), nil
	}
	return "", nil
}

// gaugeSum sums the samples of name in Prometheus text exposition, labelled or not (the
// Pebble gauges carry db="state" and db="events"); false when there is none.
func gaugeSum(text []byte, name string) (float64, bool) {
	sum, found := 0.0, false
	for line := range strings.SplitSeq(string(text), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" {
			continue
		}
		switch rest[0] {
		case ' ':
		case '{':
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		default:
			continue // a longer name
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		sum, found = sum+v, true
	}
	return sum, found
}

// describe says how the wait ended, for a report.
func (r settleResult) describe() string {
	if r.settled {
		return "settled in " + r.took.Round(100*time.Millisecond).String()
	}
	return "not settled after " + r.took.Round(time.Second).String() + ": " + r.why
}
