package chronicle

import (
	"fmt"
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
var commandCodes = [...]CommandType{1: CmdCreateAccount, 2: CmdDeposit, 3: CmdWithdraw, 4: CmdTransfer}

func commandCode(t CommandType) (uint8, bool) {
	for i, c := range commandCodes {
		if c == t && c != "" {
			return uint8(i), true
		}
	}
	return 0, false
}

// batchVersion is the first byte of a Batch's binary layout.
const batchVersion = 1

// MarshalBinary encodes the batch for the log:
//
//	version u8 = 1 | time i64 (Unix ns) | idempotency_window i64 (ns) | count u32 | commands
//
// and each command as
//
//	type u8 (1 create-account, 2 deposit, 3 withdraw, 4 transfer) |
//	account_id str | owner_name str | currency str | initial_balance str |
//	overdraft_limit str | amount str | description str | from_account_id str |
//	to_account_id str | id str | idempotency_key str | request_id str | created_by str
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
	out = appendU8(out, batchVersion)
	out = appendTime(out, b.Time)
	out = appendI64(out, int64(b.IdempotencyWindow))
	out = appendU32(out, uint32(len(b.Commands)))
	for i := range b.Commands {
		out = b.Commands[i].appendBinary(out)
	}
	return out, nil
}

func (c *Command) appendBinary(b []byte) []byte {
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
	return b
}

func (d *decoder) command(c *Command) {
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
}

// minCommandBytes is the smallest encoded command: a type byte and 13 empty strings.
const minCommandBytes = 1 + 13*4

// UnmarshalBinary decodes what MarshalBinary wrote.
func (b *Batch) UnmarshalBinary(data []byte) error {
	d := decoder{b: data, what: "command batch"}
	d.version(batchVersion)
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
			d.command(&out.Commands[i])
		}
	}
	if err := d.done(); err != nil {
		return err
	}
	*b = out
	return nil
}
