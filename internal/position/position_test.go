package position

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

const testTimeout = 10 * time.Second

func TestWaitReturnsAtOnceWhenReached(t *testing.T) {
	var w Waiter
	w.Advance(5)
	if err := w.Wait(context.Background(), 5); err != nil {
		t.Fatalf("Wait(5) at 5: %v", err)
	}
	if err := w.Wait(context.Background(), 0); err != nil {
		t.Fatalf("Wait(0): %v", err)
	}
	// A reached position wins over an ended context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Wait(ctx, 3); err != nil {
		t.Fatalf("Wait(3) at 5 with a cancelled context: %v", err)
	}
}

func TestConcurrentWaiters(t *testing.T) {
	var w Waiter
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			target := uint64(i%10 + 1)
			if err := w.Wait(ctx, target); err != nil {
				errs <- err
				return
			}
			if got := w.Current(); got < target {
				t.Errorf("woken at %d before reaching %d", got, target)
			}
		})
	}
	for p := range uint64(11) {
		w.Advance(p)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Wait: %v", err)
	}
}

func TestWaitWakesOnlyWhenReached(t *testing.T) {
	var w Waiter
	done := make(chan error, 1)
	go func() { done <- w.Wait(context.Background(), 3) }()
	w.Advance(1)
	w.Advance(2)
	select {
	case err := <-done:
		t.Fatalf("Wait(3) returned at position 2: %v", err)
	default:
	}
	w.Advance(3)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait(3): %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Wait(3) not woken by Advance(3)")
	}
}

func TestCancelWakesWaitersWithoutLeaking(t *testing.T) {
	var w Waiter
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() { errs <- w.Wait(ctx, 100) }()
	}
	cancel()
	for range n {
		select {
		case err := <-errs:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled Wait = %v, want context.Canceled", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("cancel did not wake a waiter")
		}
	}
	deadline := time.Now().Add(testTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after the waiters returned, %d before", runtime.NumGoroutine(), before)
		}
		runtime.Gosched()
	}

	dctx, dcancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer dcancel()
	if err := w.Wait(dctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past its deadline = %v, want context.DeadlineExceeded", err)
	}
}

func TestNeverBackwardsExceptReset(t *testing.T) {
	var w Waiter
	w.Advance(10)
	w.Advance(4)
	if got := w.Current(); got != 10 {
		t.Fatalf("Advance(4) after 10: at %d, want 10", got)
	}
	w.Reset(4)
	if got := w.Current(); got != 4 {
		t.Fatalf("Reset(4): at %d, want 4", got)
	}
	w.Advance(6)
	if got := w.Current(); got != 6 {
		t.Fatalf("Advance(6) after Reset(4): at %d, want 6", got)
	}
}

func TestChangesCoalescedAndStopped(t *testing.T) {
	var w Waiter
	ch, stop := w.Changes()
	other, stopOther := w.Changes()
	defer stopOther()
	for p := range uint64(5) {
		w.Advance(p + 1)
	}
	select {
	case <-ch:
	default:
		t.Fatal("no signal after the position moved")
	}
	select {
	case <-ch:
		t.Fatal("five moves gave more than one pending signal")
	default:
	}
	w.Advance(3) // not a change
	select {
	case <-ch:
		t.Fatal("signal without a change")
	default:
	}
	w.Reset(2) // a change, if backwards
	select {
	case <-ch:
	default:
		t.Fatal("no signal after Reset moved the position")
	}
	stop()
	w.Advance(9)
	select {
	case <-ch:
		t.Fatal("signal after stop")
	default:
	}
	select {
	case <-other:
	default:
		t.Fatal("another subscriber missed the change")
	}
}
