package projector

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// PebbleView is the embedded read model: its own Pebble instance beside the node's state.
//
// Keys: 'c' -> checkpoint; 'a' id -> account JSON; 'l' id 0 version -> statement line JSON.
type PebbleView struct {
	mu sync.Mutex // serialises Apply and Reset; reads go straight to Pebble
	db *pebble.DB
}

var _ View = (*PebbleView)(nil)

var checkpointKey = []byte{'c'}

// OpenPebbleView opens (creating) the view in dir.
func OpenPebbleView(dir string, logger *slog.Logger) (*PebbleView, error) {
	if logger == nil {
		logger = slog.Default()
	}
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebbleutil.FormatMajorVersion, Logger: pebbleutil.Logger(logger, "pebble-view"),
		EventListener: pebbleutil.Events(logger, "pebble-view")})
	if err != nil {
		return nil, fmt.Errorf("projector: open pebble view at %s: %w", dir, err)
	}
	return &PebbleView{db: db}, nil
}

// Name implements View.
func (v *PebbleView) Name() string { return "pebble" }

// Close implements View.
func (v *PebbleView) Close() error { return v.db.Close() }

func viewAccountKey(id string) []byte { return append([]byte{'a'}, id...) }

func viewLinePrefix(id string) []byte {
	k := append([]byte{'l'}, id...)
	return append(k, 0)
}

func viewLineKey(id string, version uint64) []byte {
	return binary.BigEndian.AppendUint64(viewLinePrefix(id), version)
}

func getCheckpoint(r pebble.Reader) (uint64, error) {
	v, _, err := pebbleutil.GetUint64(r, checkpointKey)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	return v, nil
}

// Position implements chronicle.ReadModel.
func (v *PebbleView) Position(ctx context.Context) (uint64, error) { return getCheckpoint(v.db) }

// Apply implements View: one Pebble batch holds the changes and the checkpoint.
func (v *PebbleView) Apply(ctx context.Context, events []chronicle.Event) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	b := v.db.NewIndexedBatch()
	defer b.Close()
	cp, err := getCheckpoint(b)
	if err != nil {
		return err
	}
	next := cp + 1
	for _, e := range events {
		if e.Position < next {
			continue // already applied: a replay changes nothing
		}
		if e.Position != next {
			return fmt.Errorf("%w: got position %d, expected %d", ErrGap, e.Position, next)
		}
		var acc chronicle.Account
		if _, err := pebbleutil.GetJSON(b, viewAccountKey(e.AggregateID), &acc); err != nil {
			return err
		}
		acc, line, err := chronicle.Project(acc, e)
		if err != nil {
			return err
		}
		if err := setJSON(b, viewAccountKey(acc.ID), acc); err != nil {
			return err
		}
		if err := setJSON(b, viewLineKey(acc.ID, line.Version), line); err != nil {
			return err
		}
		next++
	}
	if next == cp+1 {
		return nil
	}
	if err := b.Set(checkpointKey, pebbleutil.U64(next-1), nil); err != nil {
		return err
	}
	// NoSync: the view can always be rebuilt from the log, which is what is durable.
	return b.Commit(pebble.NoSync)
}

// Reset implements View.
func (v *PebbleView) Reset(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	b := v.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{0}, []byte{0xff}, nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// Account implements chronicle.ReadModel.
func (v *PebbleView) Account(ctx context.Context, id string) (chronicle.Account, error) {
	var a chronicle.Account
	ok, err := pebbleutil.GetJSON(v.db, viewAccountKey(id), &a)
	if err != nil {
		return a, fmt.Errorf("projector: read account: %w", err)
	}
	if !ok {
		return a, chronicle.ErrAccountNotFound(id)
	}
	return a, nil
}

// Accounts implements chronicle.ReadModel.
func (v *PebbleView) Accounts(ctx context.Context, after string, limit int) ([]chronicle.Account, error) {
	lower := []byte{'a'}
	if after != "" {
		lower = append(viewAccountKey(after), 0)
	}
	it, err := v.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{'b'}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := []chronicle.Account{}
	for it.First(); it.Valid() && len(out) < limit; it.Next() {
		var a chronicle.Account
		if err := json.Unmarshal(it.Value(), &a); err != nil {
			return nil, fmt.Errorf("projector: decode account: %w", err)
		}
		out = append(out, a)
	}
	return out, it.Error()
}

// Transactions implements chronicle.ReadModel.
func (v *PebbleView) Transactions(ctx context.Context, id string, before uint64, limit int) ([]chronicle.StatementLine, error) {
	if _, err := v.Account(ctx, id); err != nil {
		return nil, err
	}
	prefix := viewLinePrefix(id)
	upper := pebbleutil.PrefixEnd(prefix)
	if before > 0 {
		upper = viewLineKey(id, before)
	}
	it, err := v.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := []chronicle.StatementLine{}
	for it.Last(); it.Valid() && len(out) < limit; it.Prev() {
		var l chronicle.StatementLine
		if err := json.Unmarshal(it.Value(), &l); err != nil {
			return nil, fmt.Errorf("projector: decode statement line: %w", err)
		}
		out = append(out, l)
	}
	return out, it.Error()
}

// LineCount implements View.
func (v *PebbleView) LineCount(ctx context.Context, id string) (int, error) {
	prefix := viewLinePrefix(id)
	it, err := v.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: pebbleutil.PrefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n, it.Error()
}

func setJSON(b *pebble.Batch, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Set(key, data, nil)
}
