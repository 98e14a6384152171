package eventbus

import (
	"path/filepath"
	"testing"
	"time"
)

// The embedded server disables JetStream when a stream write hits a full disk (it calls
// ShutdownJetStream, as here). ReviveJetStream turns it back on with the stream as its
// files hold it, and the publisher resumes from there: every position ends up in the
// stream exactly once, those committed while JetStream was off included.
func TestReviveJetStreamAfterShutdown(t *testing.T) {
	t.Parallel()
	log, _ := testLogger(t)
	s := openStore(t, t.TempDir(), log)
	b := openBus(t, Config{DataDir: filepath.Join(t.TempDir(), "nats"), ServerName: "n1", Logger: log})
	runPublisher(t, b, s)
	first := workload(t, s, 200, 20)
	waitPublished(t, b, first, 15*time.Second)

	if revived, err := b.ReviveJetStream(t.Context()); revived || err != nil {
		t.Fatalf("ReviveJetStream while JetStream runs: %t, %v", revived, err)
	}
	if err := b.Server().ShutdownJetStream(); err != nil {
		t.Fatalf("shut JetStream down: %v", err)
	}
	if b.JetStreamEnabled() {
		t.Fatal("JetStreamEnabled after the shutdown")
	}
	// Written while JetStream is off: the publisher cannot publish them yet.
	second := workload(t, s, 200, 20)
	if b.Published() >= second {
		t.Fatalf("published %d with JetStream off", b.Published())
	}
	waitFor(t, 15*time.Second, "JetStream re-enabled", func() bool {
		revived, err := b.ReviveJetStream(t.Context())
		if err != nil {
			t.Fatalf("ReviveJetStream: %v", err)
		}
		return revived
	})
	if !b.JetStreamEnabled() {
		t.Fatal("JetStream not enabled after ReviveJetStream")
	}
	waitPublished(t, b, second, 30*time.Second)
	checkStream(t, b.Conn(), b.Stream(), DefaultSubjectPrefix, logEvents(t, s))
}
