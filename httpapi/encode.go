package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/chronicle-ledger/chronicle/api"
)

// The command responses, written by hand: the bytes encoding/json writes for them (with
// HTML escaping, as writeJSON's encoder does, and its trailing newline), without its
// reflection. Anything unusual about a value (a string needing escapes, a time not in UTC
// or outside the years RFC 3339 writes) is handed back to encoding/json for that string,
// or for the whole response. encode_test.go holds the bytes to encoding/json's.

// jsonContentType is the Content-Type header's value, shared: headers are only read once
// set, and Set replaces the slice rather than writing into it.
var jsonContentType = []string{"application/json"}

// encodeBufs recycles response buffers (a batch's response is some hundred kilobytes).
var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// writeAppended writes a response body built by appendBody, or falls back to writeJSON of
// v when appendBody declines (ok false).
func writeAppended(w http.ResponseWriter, status int, v any, appendBody func([]byte) ([]byte, bool)) {
	bp := encodeBufs.Get().(*[]byte)
	b, ok := appendBody((*bp)[:0])
	if !ok {
		encodeBufs.Put(bp)
		writeJSON(w, status, v)
		return
	}
	b = append(b, '\n')
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(b) // the client went away; nothing to do
	if cap(b) <= 4<<20 {
		*bp = b
		encodeBufs.Put(bp)
	}
}

// writeCommandResult writes a command's response.
func writeCommandResult(w http.ResponseWriter, status int, res *api.CommandResult) {
	writeAppended(w, status, res, func(b []byte) ([]byte, bool) { return appendCommandResult(b, res, true) })
}

// writeBatchResponse writes a batch's response.
func writeBatchResponse(w http.ResponseWriter, status int, res *api.BatchResponse) {
	writeAppended(w, status, res, func(b []byte) ([]byte, bool) { return appendBatchResponse(b, res) })
}

// appendCommandResult appends res as encoding/json writes it; close false leaves the
// object open for a BatchResult's fields.
func appendCommandResult(b []byte, res *api.CommandResult, close bool) ([]byte, bool) {
	b = append(b, `{"success":`...)
	b = strconv.AppendBool(b, res.Success)
	if res.EventID != "" {
		b = append(b, `,"event_id":`...)
		b = appendJSONString(b, res.EventID)
	}
	if res.TransferID != "" {
		b = append(b, `,"transfer_id":`...)
		b = appendJSONString(b, res.TransferID)
	}
	if res.AccountID != "" {
		b = append(b, `,"account_id":`...)
		b = appendJSONString(b, res.AccountID)
	}
	b = append(b, `,"position":`...)
	b = strconv.AppendUint(b, res.Position, 10)
	b = append(b, `,"committed_at":`...)
	var ok bool
	if b, ok = appendJSONTime(b, res.CommittedAt); !ok {
		return b, false
	}
	if res.Replayed {
		b = append(b, `,"idempotent_replay":true`...)
	}
	b = append(b, `,"events":`...)
	if res.Events == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range res.Events {
			e := &res.Events[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"event_id":`...)
			b = appendJSONString(b, e.EventID)
			b = append(b, `,"type":`...)
			b = appendJSONString(b, e.Type)
			b = append(b, `,"aggregate_id":`...)
			b = appendJSONString(b, e.AggregateID)
			b = append(b, `,"position":`...)
			b = strconv.AppendUint(b, e.Position, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if close {
		b = append(b, '}')
	}
	return b, true
}

// appendBatchResponse appends res as encoding/json writes it.
func appendBatchResponse(b []byte, res *api.BatchResponse) ([]byte, bool) {
	b = append(b, `{"results":`...)
	if res.Results == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range res.Results {
			r := &res.Results[i]
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendCommandResult(b, &r.CommandResult, false); !ok {
				return b, false
			}
			if r.Error != "" {
				b = append(b, `,"error":`...)
				b = appendJSONString(b, r.Error)
			}
			if r.Code != "" {
				b = append(b, `,"code":`...)
				b = appendJSONString(b, r.Code)
			}
			if r.Field != "" {
				b = append(b, `,"field":`...)
				b = appendJSONString(b, r.Field)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"position":`...)
	b = strconv.AppendUint(b, res.Position, 10)
	return append(b, '}'), true
}

// appendJSONString appends s quoted as encoding/json quotes it with HTML escaping: plain
// printable ASCII as it is, anything else through encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil { // a string always marshals
				panic(err)
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendJSONTime appends t as time.Time's MarshalJSON writes it; ok false for a time it
// refuses (a year outside [0,9999], a zone offset of 24 hours or more), as it checks them.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	n0 := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	if len(b) < n0+len("2006-01-02T15:04:05Z") || b[n0+len("9999")] != '-' {
		return b, false
	}
	if b[len(b)-1] != 'Z' {
		c := b[len(b)-len("Z07:00")]
		h := b[len(b)-len("07:00"):]
		if ('0' <= c && c <= '9') || 10*(h[0]-'0')+(h[1]-'0') >= 24 {
			return b, false
		}
	}
	return append(b, '"'), true
}
