package chronicle

// Binary layouts of the state records a store keeps beside its events. They are derived
// state (rebuilt from a snapshot and the log) but travel inside snapshots between
// replicas, so they are as explicit and versioned as the log itself.

const (
	accountVersion = 1
	// accountVersion2 appends held i64; it is written only for an account with held != 0,
	// so every account without holds keeps its version-1 bytes.
	accountVersion2    = 2
	headVersion        = 1
	idempotencyVersion = 1
)

// MarshalBinary encodes the account:
//
//	version u8 = 1 | account_id str | owner_name str | currency str | balance i64 |
//	overdraft_limit i64 | status str | created_at i64 | last_updated i64 | version u64 |
//	(version 2 only, when held != 0:) held i64
func (a Account) MarshalBinary() ([]byte, error) {
	return a.AppendBinary(make([]byte, 0, 72+len(a.ID)+len(a.OwnerName)))
}

// AppendBinary appends MarshalBinary's encoding of a to b.
func (a Account) AppendBinary(b []byte) ([]byte, error) {
	if a.Held != 0 {
		b = appendU8(b, accountVersion2)
	} else {
		b = appendU8(b, accountVersion)
	}
	b = appendStr(b, a.ID)
	b = appendStr(b, a.OwnerName)
	b = appendStr(b, a.Currency)
	b = appendI64(b, a.Balance)
	b = appendI64(b, a.OverdraftLimit)
	b = appendStr(b, string(a.Status))
	b = appendTime(b, a.CreatedAt)
	b = appendTime(b, a.LastUpdated)
	b = appendU64(b, a.Version)
	if a.Held != 0 {
		b = appendI64(b, a.Held)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (a *Account) UnmarshalBinary(data []byte) error {
	d := decoder{b: data, what: "account"}
	v := d.u8()
	if d.err == nil && v != accountVersion && v != accountVersion2 {
		d.fail("format version %d, this build reads versions %d and %d", v, accountVersion, accountVersion2)
	}
	out := Account{ID: d.str(), OwnerName: d.str(), Currency: d.str(), Balance: d.i64(),
		OverdraftLimit: d.i64(), Status: AccountStatus(d.str()), CreatedAt: d.time(), LastUpdated: d.time(), Version: d.u64()}
	if v == accountVersion2 {
		out.Held = d.i64()
		if d.err == nil && out.Held == 0 {
			d.fail("version-2 account with held 0") // one encoding per account
		}
	}
	if err := d.done(); err != nil {
		return err
	}
	*a = out
	return nil
}

// MarshalBinary encodes the head: version u8 = 1 | position u64 | hash str | commit_time i64.
func (h Head) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 90)
	b = appendU8(b, headVersion)
	b = appendU64(b, h.Position)
	b = appendStr(b, h.Hash)
	return appendTime(b, h.CommitTime), nil
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (h *Head) UnmarshalBinary(data []byte) error {
	d := decoder{b: data, what: "head"}
	d.version(headVersion)
	out := Head{Position: d.u64(), Hash: d.str(), CommitTime: d.time()}
	if err := d.done(); err != nil {
		return err
	}
	*h = out
	return nil
}

// MarshalBinary encodes the record:
//
//	version u8 = 1 | key str | fingerprint str | commit_time i64 | position u64 | count u32
func (r IdempotencyRecord) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 100+len(r.Key))
	b = appendU8(b, idempotencyVersion)
	b = appendStr(b, r.Key)
	b = appendStr(b, r.Fingerprint)
	b = appendTime(b, r.CommitTime)
	b = appendU64(b, r.Position)
	return appendU32(b, r.Count), nil
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (r *IdempotencyRecord) UnmarshalBinary(data []byte) error {
	d := decoder{b: data, what: "idempotency record"}
	d.version(idempotencyVersion)
	out := IdempotencyRecord{Key: d.str(), Fingerprint: d.str(), CommitTime: d.time(), Position: d.u64(), Count: d.u32()}
	if err := d.done(); err != nil {
		return err
	}
	*r = out
	return nil
}
