package httpapi

import "github.com/chronicle-ledger/chronicle/api"

// The account lifecycle commands (freeze-account, unfreeze-account, close-account) take
// {"account_id", "reason"}. They are rare next to postings, so the one-pass decoder
// (fastdecode.go) does not know them: their bodies always go through encoding/json, which
// refuses unknown fields and names the field at fault as for every other command.

// decodeLifecycleStrict decodes a lifecycle command's body strictly.
func decodeLifecycleStrict(body []byte) (commandFields, error) {
	var req api.AccountLifecycle
	if err := decodeStrict(body, &req); err != nil {
		return commandFields{}, err
	}
	return commandFields{AccountID: req.AccountID, Reason: req.Reason}, nil
}
