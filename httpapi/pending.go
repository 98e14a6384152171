package httpapi

import (
	"encoding/json"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
)

// Two-phase transfers over HTTP: POST /commands/transfer with "pending": true (and an
// optional "timeout_seconds") holds the amount; POST /commands/capture-transfer and
// /commands/void-transfer finish the hold. These bodies are rare next to plain transfers,
// so they always take the strict decoder (the one-pass scanner does not know their keys
// and gives up on them).

// pendingFields are the two-phase fields of a decoded command body.
type pendingFields struct {
	Pending        bool
	TimeoutSeconds *int64
	TransferID     string
}

type captureRequest struct {
	api.CaptureTransfer
	Amount json.RawMessage `json:"amount"`
}

type voidRequest struct {
	api.VoidTransfer
}

// decodePendingStrict decodes a capture-transfer or void-transfer body.
func decodePendingStrict(t chronicle.CommandType, body []byte) (commandFields, error) {
	if t == chronicle.CmdCaptureTransfer {
		var req captureRequest
		if err := decodeStrict(body, &req); err != nil {
			return commandFields{}, err
		}
		return commandFields{Description: req.Description, Amount: nullIsAbsent(req.Amount),
			pendingFields: pendingFields{TransferID: req.TransferID}}, nil
	}
	var req voidRequest
	if err := decodeStrict(body, &req); err != nil {
		return commandFields{}, err
	}
	return commandFields{Description: req.Description, Reason: req.Reason, pendingFields: pendingFields{TransferID: req.TransferID}}, nil
}

// buildPending sets the two-phase fields of c. A timeout given must be 1 to 30 days in
// seconds (an explicit 0 too is refused: leave the field out for the default).
func (f *commandFields) buildPending(c *chronicle.Command) error {
	switch c.Type {
	case chronicle.CmdTransfer:
		c.Pending = f.Pending
		if f.TimeoutSeconds != nil {
			if !f.Pending {
				return chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidField, "timeout_seconds", "timeout_seconds is only for a pending transfer")
			}
			if v := *f.TimeoutSeconds; v < 1 || v > chronicle.MaxHoldTimeoutSeconds {
				return chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidField, "timeout_seconds",
					"timeout_seconds must be an integer from 1 to %d", chronicle.MaxHoldTimeoutSeconds)
			}
			c.TimeoutSeconds = *f.TimeoutSeconds
		}
	case chronicle.CmdCaptureTransfer, chronicle.CmdVoidTransfer:
		c.TransferID, c.Reason, c.Description = f.TransferID, f.Reason, f.Description
		if c.Type == chronicle.CmdCaptureTransfer {
			var err error
			if c.Amount, err = decimalField("amount", f.Amount); err != nil {
				return err
			}
		}
	}
	return nil
}
