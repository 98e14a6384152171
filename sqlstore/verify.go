package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-ledger/chronicle"
)

// ScanLog reads the events table at url in position order, without migrating or writing
// anything, and calls visit with each event decoded from its stored bytes. Every row's
// other columns (the seed's, which SQL consumers read) must say what the stored bytes say:
// ids, type, version, position, commit time, prev_hash, hash and the event_data JSON.
// A row that disagrees is an error naming its position; checking the chain itself is
// the caller's (chronicle.ChainVerifier recomputes each hash from the stored bytes).
func ScanLog(ctx context.Context, url string, visit func(chronicle.Event) error) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("sqlstore: connect: %w", err)
	}
	defer conn.Close(ctx)
	const page = 1000
	var after int64
	for {
		rows, err := conn.Query(ctx, `SELECT position, event_id::TEXT, aggregate_id, aggregate_type, event_type, event_data,
			event_version, created_at_nanos, prev_hash, hash, stored
			FROM events WHERE position > $1 ORDER BY position LIMIT $2`, after, page)
		if err != nil {
			return fmt.Errorf("sqlstore: read events after %d: %w", after, err)
		}
		n := 0
		for rows.Next() {
			var (
				pos, version, nanos           int64
				eventID, agg, aggType, evType string
				prevHash, hash                string
				data, stored                  []byte
			)
			if err := rows.Scan(&pos, &eventID, &agg, &aggType, &evType, &data, &version, &nanos, &prevHash, &hash, &stored); err != nil {
				rows.Close()
				return fmt.Errorf("sqlstore: scan event after %d: %w", after, err)
			}
			var e chronicle.Event
			if err := e.UnmarshalBinary(stored); err != nil {
				rows.Close()
				return fmt.Errorf("position %d: stored bytes: %w", pos, err)
			}
			if err := rowAgrees(e, pos, eventID, agg, aggType, evType, version, nanos, prevHash, hash, data); err != nil {
				rows.Close()
				return fmt.Errorf("position %d: %w", pos, err)
			}
			if err := visit(e); err != nil {
				rows.Close()
				return err
			}
			after, n = pos, n+1
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlstore: read events after %d: %w", after, err)
		}
		if n < page {
			return nil
		}
	}
}

// rowAgrees compares a row's columns with the event decoded from its stored bytes.
func rowAgrees(e chronicle.Event, pos int64, eventID, agg, aggType, evType string, version, nanos int64,
	prevHash, hash string, data []byte) error {
	switch {
	case uint64(pos) != e.Position:
		return fmt.Errorf("column position %d, stored %d", pos, e.Position)
	case eventID != e.EventID:
		return fmt.Errorf("column event_id %s, stored %s", eventID, e.EventID)
	case agg != e.AggregateID || aggType != e.AggregateType || evType != e.EventType:
		return fmt.Errorf("columns %s/%s/%s, stored %s/%s/%s", agg, aggType, evType, e.AggregateID, e.AggregateType, e.EventType)
	case uint64(version) != e.EventVersion:
		return fmt.Errorf("column event_version %d, stored %d", version, e.EventVersion)
	case nanos != e.CreatedAt.UnixNano():
		return fmt.Errorf("column created_at_nanos %d, stored %d", nanos, e.CreatedAt.UnixNano())
	case prevHash != e.PrevHash || hash != e.Hash:
		return fmt.Errorf("columns prev_hash/hash %s/%s, stored %s/%s", prevHash, hash, e.PrevHash, e.Hash)
	}
	// event_data is JSONB (keys reordered): compare as values, against what the API shows.
	rendered, err := json.Marshal(e)
	if err != nil {
		return err
	}
	var want struct {
		Data map[string]any `json:"event_data"`
	}
	var got map[string]any
	if err := json.Unmarshal(rendered, &want); err != nil {
		return err
	}
	if err := json.Unmarshal(data, &got); err != nil {
		return fmt.Errorf("column event_data: %w", err)
	}
	if !reflect.DeepEqual(got, want.Data) {
		return fmt.Errorf("column event_data %s does not match the stored event", data)
	}
	return nil
}
