package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// sseEvent is one event read from /events/stream.
type sseEvent struct {
	id    uint64
	event chronicle.Event
}

// openStream connects to /events/stream and returns a channel of its events.
func openStream(t *testing.T, ctx context.Context, url, lastID string) <-chan sseEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 1024)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.id, _ = strconv.ParseUint(strings.TrimPrefix(line, "id: "), 10, 64)
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.event)
			case line == "" && ev.id != 0:
				out <- ev
				ev = sseEvent{}
			}
		}
	}()
	return out
}

func next(t *testing.T, ctx context.Context, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("stream closed")
		}
		return ev
	case <-ctx.Done():
		t.Fatal("timed out waiting for a streamed event")
	}
	return sseEvent{}
}

// TestEventStream: live events arrive with id = position; a reconnect with Last-Event-ID
// resumes without a gap; filters apply.
func TestEventStream(t *testing.T) {
	n := nodetest.Start(t)
	ctx, c := ctxT(t), n.Client
	mustCreate(t, c, "a", "USD", "10")
	streamCtx, cancel := context.WithCancel(ctx)
	live := openStream(t, streamCtx, n.URL()+"/events/stream", "")
	mustCreate(t, c, "b", "USD", "0")
	for i := 0; i < 5; i++ {
		if _, err := c.Transfer(ctx, client.Transfer{FromAccountID: "a", ToAccountID: "b", Amount: "1"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	log, err := c.AllEvents(ctx)
	if err != nil || len(log) != 12 {
		t.Fatalf("log: %d events, %v", len(log), err)
	}
	// A fresh subscriber starts at the head when it connected: position 2 comes first.
	for want := uint64(2); want <= 12; want++ {
		ev := next(t, ctx, live)
		if ev.id != want || ev.event.Hash != log[want-1].Hash {
			t.Fatalf("got id %d (hash %s), want %d (%s)", ev.id, ev.event.Hash, want, log[want-1].Hash)
		}
	}
	cancel()
	for i := 0; i < 3; i++ { // positions 13..15 land while nobody listens
		if _, err := c.Deposit(ctx, client.Money{AccountID: "b", Amount: "1"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	resumed := openStream(t, ctx, n.URL()+"/events/stream", "12")
	for want := uint64(13); want <= 16; want++ {
		if want == 16 { // and one more while connected
			if _, err := c.Deposit(ctx, client.Money{AccountID: "a", Amount: "1"}, ""); err != nil {
				t.Fatal(err)
			}
		}
		if ev := next(t, ctx, resumed); ev.id != want {
			t.Fatalf("resumed stream: got %d, want %d", ev.id, want)
		}
	}
	log, err = c.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range log {
		if e.EventType == chronicle.EventMoneyDeposited && e.AggregateID == "b" {
			want = append(want, fmt.Sprint(e.Position))
		}
	}
	filtered := openStream(t, ctx, n.URL()+"/events/stream?from=start&type=MoneyDeposited&aggregate_id=b", "")
	var got []string
	for range want {
		ev := next(t, ctx, filtered)
		got = append(got, fmt.Sprint(ev.id))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") || len(want) != 8 {
		t.Fatalf("filtered stream ids %v, want %v", got, want)
	}
}

// TestReadYourWrites: a read carrying the position of a write just acknowledged always
// sees it, and so does a plain read on the same node.
func TestReadYourWrites(t *testing.T) {
	n := nodetest.Start(t)
	ctx, c := ctxT(t), n.Client
	mustCreate(t, c, "r", "USD", "0")
	for i := 1; i <= 100; i++ {
		res, err := c.Deposit(ctx, client.Money{AccountID: "r", Amount: "1"}, "")
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%d.00", i)
		a, err := c.Account(ctx, "r", res.Position)
		if err != nil || a.Balance != want {
			t.Fatalf("after deposit %d at position %d: %+v, %v", i, res.Position, a, err)
		}
		if i%10 == 0 {
			if a, err := c.Account(ctx, "r", 0); err != nil || a.Balance != want {
				t.Fatalf("plain read after deposit %d: %+v, %v", i, a, err)
			}
		}
	}
	// A position the log has not reached times out with a clear code.
	_, err := c.Account(ctx, "r", 1<<40)
	if client.CodeOf(err) != "timeout" {
		t.Fatalf("far-future min_position: %v, want timeout", err)
	}
}
