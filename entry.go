package chronicle

import (
	"fmt"
	"slices"
	"time"
)

// EntryVersion is the format version of a replicated log entry's envelope. A node refuses
// an entry of another version rather than guess at it.
const EntryVersion = 1

// EntryKind says what a log entry carries.
type EntryKind uint8

// Entry kinds. Values are part of the log format and are never reused.
const (
	// EntryCommandBatch carries a Batch (MarshalBinary).
	EntryCommandBatch EntryKind = 1
	// EntryNodeMeta carries a store's record of a cluster member (its API URL).
	EntryNodeMeta EntryKind = 2
	// EntryToken carries a TokenOp: the token table is replicated beside the ledger,
	// never through it.
	EntryToken EntryKind = 3
)

func (k EntryKind) String() string {
	switch k {
	case EntryCommandBatch:
		return "command-batch"
	case EntryNodeMeta:
		return "node-meta"
	case EntryToken:
		return "token"
	}
	return fmt.Sprintf("kind-%d", uint8(k))
}

// EncodeEntry wraps payload in the entry envelope: version u8 | kind u8 | payload.
func EncodeEntry(kind EntryKind, payload []byte) []byte {
	b := make([]byte, 0, 2+len(payload))
	b = append(b, EntryVersion, byte(kind))
	return append(b, payload...)
}

// DecodeEntry splits an entry into its kind and payload. Another envelope version is an
// error naming both versions: the entry was written by a build this one cannot read.
func DecodeEntry(b []byte) (EntryKind, []byte, error) {
	if len(b) < 2 {
		return 0, nil, fmt.Errorf("log entry of %d bytes has no envelope", len(b))
	}
	if b[0] != EntryVersion {
		return 0, nil, fmt.Errorf("log entry format version %d, this build reads version %d", b[0], EntryVersion)
	}
	return EntryKind(b[1]), b[2:], nil
}

// Command type codes in the binary layout. Values are never reused.
var commandCodes = [...]CommandType{1: CmdCreateAccount, 2: CmdDeposit, 3: CmdWithdraw, 4: CmdTransfer,
	5: CmdFreezeAccount, 6: CmdUnfreezeAccount, 7: CmdCloseAccount,
	8: CmdCaptureTransfer, 9: CmdVoidTransfer, 10: CmdExpireTransfers}

func commandCode(t CommandType) (uint8, bool) {
	for i, c := range commandCodes {
		if c == t && c != "" {
			return uint8(i), true
		}
	}
	return 0, false
}

// Batch layout versions, the first byte of a Batch's binary layout. Version 2 adds the
// lifecycle and two-phase fields to every command; it is written only for a batch with a
// command that uses them, so a batch version 1 can hold keeps its version-1 bytes.
const (
	batchVersion1 = 1
	batchVersion2 = 2
)

// MarshalBinary encodes the batch for the log:
//
//	version u8 = 1 or 2 | time i64 (Unix ns) | idempotency_window i64 (ns) | count u32 | commands
//
// and each command as
//
//	type u8 (1 create-account, 2 deposit, 3 withdraw, 4 transfer, 5 freeze-account,
//	  6 unfreeze-account, 7 close-account, 8 capture-transfer, 9 void-transfer,
//	  10 expire-transfers) |
//	account_id str | owner_name str | currency str | initial_balance str |
//	overdraft_limit str | amount str | description str | from_account_id str |
//	to_account_id str | id str | idempotency_key str | request_id str | created_by str |
//	(version 2 only:) reason str | transfer_id str | pending u8 (0 or 1) | timeout_seconds i64
//
// Amounts stay the decimal text the client sent: their scale is known only once the
// state machine has looked up the account's currency. A command type without a code
// (one that only Validate would refuse) is encoded as code 0 with its name as an extra
// string, so the state machine refuses it alike on every replica.
func (b Batch) MarshalBinary() ([]byte, error) {
	if len(b.Commands) > MaxBatchCommands {
		return nil, fmt.Errorf("batch of %d commands exceeds %d", len(b.Commands), MaxBatchCommands)
	}
	out := make([]byte, 0, 21+len(b.Commands)*160)
	v2 := false
	for i := range b.Commands {
		v2 = v2 || b.Commands[i].extended()
	}
	if v2 {
		out = appendU8(out, batchVersion2)
	} else {
		out = appendU8(out, batchVersion1)
	}
	out = appendTime(out, b.Time)
	out = appendI64(out, int64(b.IdempotencyWindow))
	out = appendU32(out, uint32(len(b.Commands)))
	for i := range b.Commands {
		out = b.Commands[i].appendBinary(out, v2)
	}
	return out, nil
}

// extended reports whether c uses a field only batch version 2 holds, or a command type
// version 1 did not know.
func (c *Command) extended() bool {
	code, _ := commandCode(c.Type)
	return c.Reason != "" || c.TransferID != "" || c.Pending || c.TimeoutSeconds != 0 || code > 4
}

func (c *Command) appendBinary(b []byte, v2 bool) []byte {
	code, ok := commandCode(c.Type)
	b = appendU8(b, code)
	if !ok {
		b = appendStr(b, string(c.Type))
	}
	for _, s := range [...]string{c.AccountID, c.OwnerName, c.Currency, string(c.InitialBalance),
		string(c.OverdraftLimit), string(c.Amount), c.Description, c.FromAccountID, c.ToAccountID,
		c.ID, c.IdempotencyKey, c.RequestID, c.CreatedBy} {
		b = appendStr(b, s)
	}
	if v2 {
		b = appendStr(b, c.Reason)
		b = appendStr(b, c.TransferID)
		var pending uint8
		if c.Pending {
			pending = 1
		}
		b = appendU8(b, pending)
		b = appendI64(b, c.TimeoutSeconds)
	}
	return b
}

func (d *decoder) command(c *Command, v2 bool) {
	code := d.u8()
	switch {
	case code == 0:
		c.Type = CommandType(d.str())
	case int(code) < len(commandCodes) && commandCodes[code] != "":
		c.Type = commandCodes[code]
	default:
		d.fail("unknown command type code %d", code)
		return
	}
	c.AccountID = d.str()
	c.OwnerName = d.str()
	c.Currency = d.str()
	c.InitialBalance = Decimal(d.str())
	c.OverdraftLimit = Decimal(d.str())
	c.Amount = Decimal(d.str())
	c.Description = d.str()
	c.FromAccountID = d.str()
	c.ToAccountID = d.str()
	c.ID = d.str()
	c.IdempotencyKey = d.str()
	c.RequestID = d.str()
	c.CreatedBy = d.str()
	if v2 {
		c.Reason = d.str()
		c.TransferID = d.str()
		switch p := d.u8(); p {
		case 0, 1:
			c.Pending = p == 1
		default:
			d.fail("pending flag %d is neither 0 nor 1", p)
		}
		c.TimeoutSeconds = d.i64()
	} else if code > 4 {
		d.fail("command type code %d in a version 1 batch", code)
	}
}

// minCommandBytes is the smallest encoded command: a type byte and 13 empty strings.
const minCommandBytes = 1 + 13*4

// UnmarshalBinary decodes what MarshalBinary wrote.
func (b *Batch) UnmarshalBinary(data []byte) error {
	d := decoder{b: data, what: "command batch"}
	v := d.u8()
	if d.err == nil && v != batchVersion1 && v != batchVersion2 {
		d.fail("command batch format version %d, this build reads versions %d and %d", v, batchVersion1, batchVersion2)
	}
	var out Batch
	out.Time = d.time()
	out.IdempotencyWindow = time.Duration(d.i64())
	n := d.u32()
	if d.err == nil && (n > MaxBatchCommands || int(n) > (len(data)-d.off)/minCommandBytes) {
		d.fail("command count %d is impossible here", n)
	}
	if d.err == nil {
		out.Commands = make([]Command, n)
		for i := range out.Commands {
			d.command(&out.Commands[i], v == batchVersion2)
		}
	}
	if d.err == nil && v == batchVersion2 && !slices.ContainsFunc(out.Commands, func(c Command) bool { return c.extended() }) {
		// A second encoding of a version-1 batch would make one entry two byte strings.
		d.fail("version 2 batch without a version 2 command")
	}
	if err := d.done(); err != nil {
		return err
	}
	*b = out
	return nil
}
