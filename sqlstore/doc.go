// Package sqlstore is a chronicle.EventStore on CockroachDB through pgx/v5. It is tested
// on PostgreSQL, and uses only SQL that both document: no advisory locks, no
// LISTEN/NOTIFY, no PL/pgSQL, no sequences.
//
// # The path of a command
//
// Execute queues the command; one goroutine (the batcher, as in raftstore) takes
// everything queued, up to chronicle.MaxBatchCommands, and runs one SERIALIZABLE
// transaction for it:
//
//  1. one round trip of reads: the head row (SELECT ... FOR UPDATE, after LOCK TABLE on
//     PostgreSQL, see below), the database clock,
//     the events already stored under the batch's command ids, the accounts the batch
//     names with the external accounts of their currencies, and its idempotency records;
//  2. a command whose id already has events was committed by an earlier attempt whose
//     outcome was lost (connection cut at COMMIT, CockroachDB's 40003): it is answered
//     from those events and kept out of Apply, so it never applies twice;
//  3. chronicle.Apply runs over a State backed by the prefetched rows (a miss is one
//     query), so every rule lives in the domain;
//  4. one round trip of writes (events, accounts, balance history, idempotency records,
//     head), then COMMIT.
//
// A serialization failure (40001), deadlock (40P01), ambiguous result (40003) or lost
// connection reruns the whole transaction, steps 1 to 4, after a jittered exponential
// backoff, a bounded number of times. Refused commands write nothing and are simply
// evaluated again.
//
// # Choices
//
// Total order: the head row (position, hash, commit time) is locked by every append,
// so appends from any number of stores on one database are serialized and events get
// consecutive positions, one hash chain.
//
// events.position is a plain INT8 primary key, assigned from the head row (no sequence,
// no unique_rowid). CockroachDB advises against sequential primary keys, because all
// inserts land at the tail of one range, and offers hash-sharded indexes
// (USING HASH) to spread them. We keep the sequential key on purpose: every append
// already serializes on the head row, so one range takes the writes whatever the key,
// and hash sharding would turn the log's range scans (Events after a position, the
// projector's tailing) into a scatter over every shard. If the events range ever
// becomes the bottleneck, the head row is the first thing to change, not the key.
//
// Commit clock: the batch's time is clock_timestamp() read in the transaction right
// after the head row is locked (microseconds on both databases; now() would be the
// transaction's start, which can be older than the previous commit after a wait for
// the lock). chronicle.Apply makes commit times strictly increasing in nanoseconds
// (max(clock, previous + 1ns)), which also orders the commands of one batch.
// CockroachDB's nanosecond cluster_logical_timestamp() exists only there and constrains
// the transaction, so it is not used.
//
// Retries: the loop is our own (retry.go). cockroach-go's crdb.ExecuteTx was tried and
// is served, but it retries with ROLLBACK TO SAVEPOINT cockroach_restart and treats
// RELEASE SAVEPOINT as the commit, ignoring COMMIT's error: on PostgreSQL the retry
// keeps the failed transaction's snapshot and a failure at COMMIT would be reported as
// success. It also has no backoff and ignores 40P01 and 40003.
//
// # PostgreSQL and CockroachDB
//
// The differences are handled in one place each:
//
//   - The head lock (append.go): Open detects the database (SELECT version()). On
//     PostgreSQL an append first runs LOCK TABLE chronicle_head IN EXCLUSIVE MODE,
//     which takes no snapshot: without it, a SERIALIZABLE transaction that waited for
//     the head row fails with 40001 whenever the holder commits, so concurrent stores
//     would retry on every commit and a busy store could starve the others.
//     CockroachDB has no LOCK TABLE (it is never sent there) and needs none: a
//     transaction pushed by a lock wait refreshes its reads or retries internally.
//   - Serialization failures: still possible on both (PostgreSQL's SSI, a conflicting
//     writer outside the store, CockroachDB's refresh failures and 40001 at COMMIT);
//     both are retried the same way (retry.go).
//   - Ambiguous commits: CockroachDB reports 40003 "result is ambiguous"; PostgreSQL
//     only loses the connection. Both mark the outcome unknown and are resolved by the
//     command-id lookup of the next attempt (retry.go, append.go).
//   - Migrations (migrate.go): a lock row in chronicle_migrations serializes migrators
//     instead of an advisory lock, and every statement is idempotent (IF NOT EXISTS,
//     ON CONFLICT DO NOTHING), because CockroachDB runs schema changes inside a
//     transaction asynchronously and may fail them at COMMIT: rerunning is then safe.
//     PostgreSQL can fail two concurrent CREATE TABLE IF NOT EXISTS with 23505/42P07
//     on its catalog; the bootstrap retries that.
//   - Upserts use INSERT ... ON CONFLICT DO UPDATE, which both accept; on CockroachDB
//     UPSERT would be a little cheaper.
//
// Money is int64 minor units in INT8 columns; times are Unix nanoseconds in INT8
// columns (TIMESTAMPTZ keeps microseconds), with events.created_at as TIMESTAMPTZ too
// for people and the seed's consumers.
package sqlstore
