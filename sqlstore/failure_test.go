package sqlstore

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
)

// pgProxy forwards TCP connections to a PostgreSQL server and can cut them where a
// test wants: after the server has answered COMMIT (the transaction is committed, the
// client never learns it), or all of them at once (the database unreachable).
type pgProxy struct {
	ln     net.Listener
	target string
	// dropCommits is how many more successful COMMIT answers to swallow, each by
	// closing the connection instead of forwarding it.
	dropCommits atomic.Int32
	// refuse closes every connection at once, new ones included.
	refuse atomic.Bool
	// refuseAfterDrop sets refuse when a COMMIT answer is dropped.
	refuseAfterDrop atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *pgProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cutAll()
		p.wg.Wait()
	})
	return p
}

// url is base (a pgtest URL) pointed at the proxy.
func (p *pgProxy) url(t *testing.T, base string) string {
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *pgProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refuse.Load() {
		_ = c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *pgProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *pgProxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(client) {
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil || !p.track(server) {
			_ = client.Close()
			continue
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(server, client)
			_ = server.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.serverToClient(server, client)
			_ = client.Close()
		}()
	}
}

// serverToClient forwards the server's messages (type byte, int32 length, body) and
// drops the connection instead of forwarding an armed COMMIT's CommandComplete.
func (p *pgProxy) serverToClient(server, client net.Conn) {
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(server, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if n < 0 {
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(server, body); err != nil {
			return
		}
		if hdr[0] == 'C' && bytes.HasPrefix(body, []byte("COMMIT\x00")) {
			if v := p.dropCommits.Load(); v > 0 && p.dropCommits.CompareAndSwap(v, v-1) {
				if p.refuseAfterDrop.Load() {
					p.refuse.Store(true)
					p.cutAll()
				}
				_ = server.Close()
				return
			}
		}
		if _, err := client.Write(append(hdr[:], body...)); err != nil {
			return
		}
	}
}

// countCommand counts the events stored under a command id.
func countCommand(t *testing.T, s *Store, id string) int {
	t.Helper()
	var n int
	if err := s.read(ctxT(t), func() error {
		return s.pool.QueryRow(ctxT(t), `SELECT count(*) FROM events WHERE command_id = $1`, id).Scan(&n)
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAmbiguousCommit cuts the connection after the server committed but before the
// store heard so. The store's retry finds the command's events by its id and answers
// the original result; nothing is applied twice.
func TestAmbiguousCommit(t *testing.T) {
	base := pgtest.Schema(t)
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, target.Host)
	s := openStore(t, p.url(t, base), func(c *Config) { c.RetryBaseDelay, c.RetryMaxDelay = time.Millisecond, 20*time.Millisecond })
	ok(t, s, create("A", "USD", "1000"))
	ok(t, s, create("B", "USD", ""))

	t.Run("retry answers the original result", func(t *testing.T) {
		p.dropCommits.Store(1)
		c := transfer("A", "B", "100")
		r := ok(t, s, c)
		if p.dropCommits.Load() != 0 {
			t.Fatal("the COMMIT answer was not dropped")
		}
		st := s.Stats()
		if st.AmbiguousCommits != 1 || st.AnsweredFromLog != 1 {
			t.Fatalf("stats %+v: want one ambiguous commit answered from the log", st)
		}
		if n := countCommand(t, s, c.ID); n != 2 {
			t.Fatalf("%d events under the command id, want 2", n)
		}
		stored, err := s.Events(ctxT(t), chronicle.EventQuery{After: r.Position - 2, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if r.EventCount != 2 || r.TransferID == "" || r.Replayed || len(r.Events) != 2 ||
			r.Events[0].Hash != stored[0].Hash || r.Events[1].Hash != stored[1].Hash ||
			!r.CommitTime.Equal(stored[1].CreatedAt) || stored[0].Data.TransferID != r.TransferID {
			t.Fatalf("result %+v does not match the stored events %+v", r, stored)
		}
		if a, b := balance(t, s, "A"), balance(t, s, "B"); a != "900.00" || b != "100.00" {
			t.Fatalf("A = %s, B = %s", a, b)
		}
	})

	t.Run("database gone: unknown outcome, then resolved by id", func(t *testing.T) {
		short := openStore(t, p.url(t, base), func(c *Config) {
			c.MaxAttempts, c.RetryBaseDelay, c.RetryMaxDelay = 3, time.Millisecond, 5*time.Millisecond
		})
		p.refuseAfterDrop.Store(true)
		p.dropCommits.Store(1)
		c := transfer("A", "B", "7")
		_, err := short.Execute(ctxT(t), []chronicle.Command{c})
		e := chronicle.AsError(err)
		if e.Kind != chronicle.KindUnavailable || e.Code != chronicle.CodeUnavailable || !strings.Contains(e.Message, "outcome is unknown") {
			t.Fatalf("execute with the database gone: %v", err)
		}
		// Reads say unavailable too, never internal.
		if _, err := short.Account(ctxT(t), "A"); chronicle.AsError(err).Kind != chronicle.KindUnavailable {
			t.Fatalf("read with the database gone: %v", err)
		}
		p.refuseAfterDrop.Store(false)
		p.refuse.Store(false)
		// The caller retries the same command: it committed the first time.
		r := ok(t, short, c)
		if short.Stats().AnsweredFromLog != 1 || r.EventCount != 2 {
			t.Fatalf("retry: %+v, stats %+v", r, short.Stats())
		}
		if n := countCommand(t, s, c.ID); n != 2 {
			t.Fatalf("%d events under the command id, want 2", n)
		}
		if a := balance(t, s, "A"); a != "893.00" {
			t.Fatalf("A = %s, want 893.00", a)
		}
	})

	t.Run("unreachable before anything was sent", func(t *testing.T) {
		short := openStore(t, p.url(t, base), func(c *Config) {
			c.MaxAttempts, c.RetryBaseDelay, c.RetryMaxDelay = 2, time.Millisecond, 5*time.Millisecond
		})
		p.refuse.Store(true)
		p.cutAll()
		defer p.refuse.Store(false)
		_, err := short.Execute(ctxT(t), []chronicle.Command{deposit("A", "1")})
		e := chronicle.AsError(err)
		if e.Kind != chronicle.KindUnavailable || e.Code != chronicle.CodeUnavailable || strings.Contains(e.Message, "unknown") {
			t.Fatalf("execute with the database unreachable: %v", err)
		}
	})
	checkLedger(t, s, nil)
}

// TestSerializationFailure makes a real 40001: a side connection holds a SERIALIZABLE
// transaction that updated account A and commits only once the store's append waits on
// A's row. The append's snapshot predates that commit, so PostgreSQL fails it; the
// retry reruns everything and the command applies exactly once.
func TestSerializationFailure(t *testing.T) {
	url := pgtest.Schema(t)
	s := openStore(t, url, func(c *Config) { c.RetryBaseDelay = time.Millisecond })
	ok(t, s, create("A", "USD", "100"))
	ctx := ctxT(t)
	side, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer side.Close(ctx)
	watch, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(ctx)
	tx, err := side.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE chronicle_accounts SET owner_name = owner_name WHERE account_id = 'A'`); err != nil {
		t.Fatal(err)
	}
	var sidePID uint32
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&sidePID); err != nil {
		t.Fatal(err)
	}
	c := deposit("A", "5")
	done := make(chan chronicle.Result, 1)
	go func() {
		rs, err := s.Execute(ctx, []chronicle.Command{c})
		if err != nil {
			t.Error(err)
			close(done)
			return
		}
		done <- rs[0]
	}()
	// Poll until the append waits on the side transaction's row lock.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var blocked int
		if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1::INT4 = ANY(pg_blocking_pids(pid))`, int32(sidePID)).Scan(&blocked); err != nil {
			t.Fatal(err)
		}
		if blocked > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the append never waited on the side transaction")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r, okr := <-done
	if !okr || r.Err != nil {
		t.Fatalf("deposit: %+v", r)
	}
	if st := s.Stats(); st.Retries == 0 {
		t.Fatalf("no retry happened: %+v", st)
	}
	if n := countCommand(t, s, c.ID); n != 1 {
		t.Fatalf("%d events for the deposit", n)
	}
	if got := balance(t, s, "A"); got != "105.00" {
		t.Fatalf("A = %s, want 105.00", got)
	}
	checkLedger(t, s, nil)
}

// TestInjectedRetries fails the first attempt of every transaction with 40001 or 40P01
// just before COMMIT, under concurrent load: every command still applies exactly once.
func TestInjectedRetries(t *testing.T) {
	var injected atomic.Int64
	s := openStore(t, pgtest.Schema(t), func(c *Config) {
		c.RetryBaseDelay = time.Millisecond
		c.hooks = &testHooks{beforeCommit: func(attempt int) error {
			if attempt > 1 {
				return nil
			}
			code := codeSerialization
			if injected.Add(1)%2 == 0 {
				code = codeDeadlock
			}
			return &pgconn.PgError{Code: code, Message: "injected by the test"}
		}}
	})
	ok(t, s, create("A", "USD", "1000"))
	ok(t, s, create("B", "USD", "1000"))
	var wg sync.WaitGroup
	ids := make([]string, 40)
	for i := range ids {
		wg.Go(func() {
			c := transfer("A", "B", "1")
			if i%2 == 1 {
				c = transfer("B", "A", "2")
			}
			ids[i] = c.ID
			if r := run(t, s, c); r.Err != nil {
				t.Error(r.Err)
			}
		})
	}
	wg.Wait()
	// Every transaction's first attempt failed once (the migration's too), and was retried.
	if st := s.Stats(); st.Retries != uint64(injected.Load()) || st.Retries < st.Batches {
		t.Fatalf("stats %+v, %d injected", st, injected.Load())
	}
	for _, id := range ids {
		if n := countCommand(t, s, id); n != 2 {
			t.Fatalf("command %s has %d events", id, n)
		}
	}
	if a, b := balance(t, s, "A"), balance(t, s, "B"); a != "1020.00" || b != "980.00" {
		t.Fatalf("A = %s, B = %s", a, b)
	}
	checkLedger(t, s, nil)
}

// TestDuplicateIDsInOneBatch: a command sent twice before the first was answered (two
// calls that land in one batch) applies once; both get its result.
func TestDuplicateIDsInOneBatch(t *testing.T) {
	s := openStore(t, pgtest.Schema(t), nil)
	ok(t, s, create("A", "USD", "10"))
	c := withdraw("A", "4")
	rs, err := s.Execute(ctxT(t), []chronicle.Command{c, c})
	if err != nil || rs[0].Err != nil || rs[1].Position != rs[0].Position || rs[1].EventCount != 1 {
		t.Fatalf("duplicate in a batch: %+v %v", rs, err)
	}
	if got := balance(t, s, "A"); got != "6.00" {
		t.Fatalf("A = %s", got)
	}
	// And sent again later: answered from the log.
	r := ok(t, s, c)
	if r.Position != rs[0].Position || s.Stats().AnsweredFromLog != 1 {
		t.Fatalf("resent: %+v %+v", r, s.Stats())
	}
	checkLedger(t, s, nil)
}
