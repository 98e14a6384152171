package eventbus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-ledger/chronicle"
)

// A message the server refuses in the middle of a run of publishes that ask for no ack
// (publishAll) stops everything after it, is reported as itself, and once the cause is
// gone the stream holds every position exactly once: the acks that are skipped never
// let a refusal pass unseen or leave a gap.
func TestRefusedUnackedPublishLeavesNoGap(t *testing.T) {
	t.Parallel()
	log, logs := testLogger(t)
	ns := startNATS(t, freePort(t), t.TempDir())
	stream, prefix := uniqueName("refused")

	// Position 40 is too big for the stream; the others fit. Acks are asked for at 1 (the
	// first after the resume), 33, 65, 97 and 100 (the page's last), so 40 is in the
	// middle of a run of unacked publishes (34..64).
	const n, big = 100, 40
	events := syntheticEvents(n)
	events[big-1].Data.Description = strings.Repeat("x", 2000)
	prev := chronicle.GenesisHash
	for i := range events {
		events[i].PrevHash = prev
		events[i].Hash = events[i].ComputeHash()
		prev = events[i].Hash
	}
	probe := connect(t, ns.ClientURL())
	js, _ := jetstream.New(probe)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"}, Storage: jetstream.FileStorage,
		MaxMsgSize: 1500, Duplicates: DuplicateWindow, DenyDelete: true, DenyPurge: true}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatalf("create stream: %v", err)
	}

	b := openBus(t, Config{URL: ns.ClientURL(), Stream: stream, SubjectPrefix: prefix, Logger: log})
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.RunPublisher(pctx, &memSource{events: events}, nil) }()
	defer func() {
		stop()
		<-done
	}()

	waitFor(t, 30*time.Second, "the refusal reported as itself", func() bool {
		return strings.Contains(logs.String(), "maximum")
	})
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.CachedInfo().State; st.LastSeq != big-1 || st.Msgs != big-1 || b.Published() != big-1 {
		t.Fatalf("with position %d refused: stream holds %d messages up to %d, published %d; want 1..%d",
			big, st.Msgs, st.LastSeq, b.Published(), big-1)
	}

	cfg.MaxMsgSize = -1
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("update stream: %v", err)
	}
	waitPublished(t, b, n, 30*time.Second)
	checkStream(t, probe, stream, prefix, events)
}
