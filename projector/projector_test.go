package projector

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// WaitPosition on the embedded view: a wait beyond what the source holds ends with a
// timeout error, and waiters are woken as the projector applies what arrives.
func TestProjectorWaitPosition(t *testing.T) {
	t.Parallel()
	st := genLedger(t, 3, 600)
	v := openPebble(t)
	src := &memSource{}
	src.set(st.Log[:200])
	p := New(src, v, discard)
	p.SetPoll(time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wake := make(chan struct{}, 1)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx, wake) }()

	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := p.WaitPosition(wctx, 200); err != nil {
		t.Fatalf("catch up: %v", err)
	}

	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	var ce *chronicle.Error
	if err := p.WaitPosition(short, 201); !errors.As(err, &ce) || ce.Kind != chronicle.KindTimeout || ce.Code != chronicle.CodeTimeout {
		t.Fatalf("WaitPosition beyond the log: %v, want a timeout error", err)
	}

	end := uint64(len(st.Log))
	waited := make(chan error, 1)
	go func() { waited <- p.WaitPosition(wctx, end) }()
	src.set(st.Log)
	wake <- struct{}{}
	if err := <-waited; err != nil {
		t.Fatalf("WaitPosition(%d): %v (status %+v)", end, err, p.Status())
	}
	if s := p.Status(); s.Position != end {
		t.Fatalf("status %+v after reaching %d", s, end)
	}
	if pos, err := v.Position(ctx); err != nil || pos != end {
		t.Fatalf("view checkpoint %d, %v; want %d", pos, err, end)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
