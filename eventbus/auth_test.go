package eventbus

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-ledger/chronicle"
)

// asyncErrs connects to url without credentials and collects the server's asynchronous
// errors (permission violations).
func anonymous(t *testing.T, url string) (*nats.Conn, func() string) {
	t.Helper()
	var mu sync.Mutex
	var errs []string
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err.Error())
		}))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc, func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(errs, "\n")
	}
}

// An embedded server that listens for outside clients lets only its node publish: a
// client without credentials cannot publish a forged event (core or JetStream publish),
// nor change, purge or delete the stream; it still reads every position with an ordered
// consumer, and the node keeps publishing.
func TestListenRefusesAnonymousWrites(t *testing.T) {
	t.Parallel()
	log, _ := testLogger(t)
	s := openStore(t, t.TempDir(), log)
	b := openBus(t, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Logger: log})
	stop := runPublisher(t, b, s)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	last := workload(t, s, 30, 5)
	waitPublished(t, b, last, 15*time.Second)

	nc, asyncErrs := anonymous(t, b.ClientURL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	// A forged event: the next position, valid JSON, on an event subject.
	forged := logEvents(t, s)[last-1]
	forged.Position, forged.Hash = last+1, "forged"
	data, _ := json.Marshal(forged)
	subj := Subject(DefaultSubjectPrefix, chronicle.EventMoneyDeposited)

	// Core publish: dropped by the server, reported as a permission violation.
	if err := nc.Publish(subj, data); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a publish permission violation", func() bool {
		return strings.Contains(strings.ToLower(asyncErrs()), "permissions violation for publish to \""+strings.ToLower(subj)+"\"")
	})

	// JetStream publish (expecting the next sequence, as the node would): no ack.
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 2*time.Second)
	}
	ctx, cancel := short()
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: data},
		jetstream.WithMsgID(strconv.FormatUint(last+1, 10)), jetstream.WithExpectLastSequence(last))
	cancel()
	if err == nil {
		t.Fatalf("anonymous JetStream publish acked: %+v", ack)
	}

	// The stream admin API: delete, purge, update (dropping DenyPurge), delete a message.
	ctx, cancel = short()
	err = js.DeleteStream(ctx, b.Stream())
	cancel()
	if err == nil {
		t.Fatal("anonymous client deleted the stream")
	}
	stream, err := js.Stream(context.Background(), b.Stream()) // stream info is allowed
	if err != nil {
		t.Fatalf("anonymous stream info: %v", err)
	}
	ctx, cancel = short()
	err = stream.Purge(ctx)
	cancel()
	if err == nil {
		t.Fatal("anonymous client purged the stream")
	}
	cfg := stream.CachedInfo().Config
	cfg.DenyPurge, cfg.DenyDelete = false, false
	ctx, cancel = short()
	_, err = js.UpdateStream(ctx, cfg)
	cancel()
	if err == nil {
		t.Fatal("anonymous client updated the stream")
	}
	ctx, cancel = short()
	err = stream.DeleteMsg(ctx, 1)
	cancel()
	if err == nil {
		t.Fatal("anonymous client deleted a message")
	}
	ctx, cancel = short()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "HIJACK", Subjects: []string{"hijack.>"}})
	cancel()
	if err == nil {
		t.Fatal("anonymous client created a stream")
	}

	// The stream is what the log says, and the node keeps publishing.
	checkStream(t, b.Conn(), b.Stream(), DefaultSubjectPrefix, logEvents(t, s))
	last = workload(t, s, 20, 5)
	waitPublished(t, b, last, 15*time.Second)
	checkStream(t, b.Conn(), b.Stream(), DefaultSubjectPrefix, logEvents(t, s))
	if p := b.Problem(); p != "" {
		t.Fatalf("problem: %s", p)
	}

	// An anonymous ordered consumer reads every position, in order.
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, b.Stream(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("anonymous ordered consumer: %v", err)
	}
	for pos := uint64(1); pos <= last; pos++ {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("position %d: %v", pos, err)
		}
		var e chronicle.Event
		md, mdErr := m.Metadata()
		if err := json.Unmarshal(m.Data(), &e); err != nil || mdErr != nil || e.Position != pos || md.Sequence.Stream != pos {
			t.Fatalf("message %d: position %d metadata %+v (%v, %v)", pos, e.Position, md, err, mdErr)
		}
	}
	// Reading one message by sequence works too.
	if m, err := stream.GetMsg(ctx, last); err != nil || m.Sequence != last {
		t.Fatalf("anonymous get message %d: %v %v", last, m, err)
	}
}
