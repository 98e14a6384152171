package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/client"
)

// benchBatch is `chronicle bench batch`: transfers through POST /commands/batch.
func benchBatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseBatchFlags(args, stderr)
	if err != nil {
		return err
	}
	_, err = runBatchBench(ctx, cfg, stdout, stderr)
	return err
}

func parseBatchFlags(args []string, stderr io.Writer) (benchConfig, error) {
	var cfg benchConfig
	fs := flag.NewFlagSet("chronicle bench batch", flag.ContinueOnError)
	currency := addLoadFlags(fs, &cfg, 4, "batch")
	fs.IntVar(&cfg.batchSize, "size", 1000, fmt.Sprintf("transfers per request (at most %d, and the body at most 1 MiB)", chronicle.MaxBatchCommands))
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle bench batch [flags]\n\n"+
			"Creates --accounts accounts (in batches), then sends POST /commands/batch requests\n"+
			"of --size random transfers between them from --concurrency workers for --duration,\n"+
			"reports transfers/s and the requests' latency, and checks that the accounts'\n"+
			"balances still sum to what they started with.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return cfg, err
	}
	if cfg.batchSize < 1 || cfg.batchSize > chronicle.MaxBatchCommands {
		return cfg, fmt.Errorf("bench: --size must be between 1 and %d, got %d", chronicle.MaxBatchCommands, cfg.batchSize)
	}
	return cfg, cfg.validate(*currency)
}

// runBatchBench creates the accounts, runs the batch load, reports, and checks
// conservation. In the result, ok counts transfers and latencies are per request.
func runBatchBench(ctx context.Context, cfg benchConfig, stdout, stderr io.Writer) (benchResult, error) {
	c, closeIdle, ids, err := benchSetup(ctx, cfg, stderr, "bench batch",
		fmt.Sprintf("running %d workers, %d transfers per request, for %s", cfg.concurrency, cfg.batchSize, cfg.duration),
		createAccountsInBatches)
	if err != nil {
		return benchResult{}, err
	}
	defer closeIdle()

	res := runLoad(ctx, c, cfg, ids, stderr, batchWorker)
	writeBatchReport(stdout, cfg, res)
	if err := checkConservation(ctx, c, cfg, ids, res.maxPosition, stdout); err != nil {
		return res, err
	}
	if res.ok == 0 {
		return res, fmt.Errorf("bench batch: no transfer succeeded (%d rejected, %d errors; e.g. %s)",
			res.rejectedTotal(), res.errors, res.firstFailure)
	}
	return res, nil
}

// postBatch sends one POST /commands/batch.
func postBatch(ctx context.Context, c *client.Client, items []api.BatchItem) (api.BatchResponse, error) {
	var out api.BatchResponse
	body, err := json.Marshal(api.Batch{Commands: items})
	if err != nil {
		return out, err
	}
	_, err = c.Do(ctx, http.MethodPost, "/commands/batch", body, nil, &out)
	if err == nil && len(out.Results) != len(items) {
		err = fmt.Errorf("batch of %d commands answered with %d results", len(items), len(out.Results))
	}
	return out, err
}

// accountsPerBatch is how many create-account commands go in one batch request.
const accountsPerBatch = 1000

// createAccountsInBatches creates the accounts, accountsPerBatch per request; one that
// already exists is accepted (the conservation check notices if it does not fit).
func createAccountsInBatches(ctx context.Context, c *client.Client, cfg benchConfig, ids []string) (existed int, err error) {
	for chunk := range slices.Chunk(ids, accountsPerBatch) {
		items := make([]api.BatchItem, len(chunk))
		for i, id := range chunk {
			items[i] = api.BatchItem{Type: "create-account", AccountID: id, OwnerName: "chronicle bench",
				Currency: cfg.cur.Code, InitialBalance: cfg.initial, Description: "chronicle bench account"}
		}
		out, err := postBatch(ctx, c, items)
		if err != nil {
			return 0, fmt.Errorf("bench: create accounts: %w", err)
		}
		for i, r := range out.Results {
			switch r.Code {
			case "":
			case chronicle.CodeAccountExists:
				existed++
			default:
				return 0, fmt.Errorf("bench: create account %s: %s: %s", chunk[i], r.Code, r.Error)
			}
		}
	}
	return existed, nil
}

// mergeWorkers adds up the workers' tallies.
func mergeWorkers(results []workerResult, elapsed time.Duration, interrupted bool, ok int64) benchResult {
	res := benchResult{elapsed: elapsed, interrupted: interrupted, ok: ok, rejected: map[string]int64{}, errorCodes: map[string]int64{}}
	for _, r := range results {
		res.latencies = append(res.latencies, r.latencies...)
		for k, v := range r.rejected {
			res.rejected[k] += v
		}
		for k, v := range r.errorCodes {
			res.errorCodes[k] += v
			res.errors += v
		}
		res.unknown += r.unknown
		res.maxPosition = max(res.maxPosition, r.maxPosition)
		if res.firstFailure == "" {
			res.firstFailure = r.firstFailure
		}
	}
	slices.Sort(res.latencies)
	return res
}

func batchWorker(ctx, loadCtx context.Context, c *client.Client, cfg benchConfig, ids []string, okCount, failCount *atomic.Int64) workerResult {
	r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	wr := workerResult{rejected: map[string]int64{}, errorCodes: map[string]int64{}}
	n := len(ids)
	items := make([]api.BatchItem, cfg.batchSize)
	for loadCtx.Err() == nil {
		for i := range items {
			from := r.IntN(n)
			to := r.IntN(n - 1)
			if to >= from {
				to++
			}
			items[i] = api.BatchItem{Type: "transfer", FromAccountID: ids[from], ToAccountID: ids[to], Amount: cfg.amount, Currency: cfg.cur.Code}
		}
		// A batch in flight is allowed to finish even after an interrupt (bounded by the
		// client's timeout): one cut off could commit while the conservation check reads
		// the accounts one by one, and the check would see half of it.
		t0 := time.Now()
		out, err := postBatch(context.WithoutCancel(ctx), c, items)
		lat := time.Since(t0)
		if err == nil {
			wr.latencies = append(wr.latencies, lat)
			wr.maxPosition = max(wr.maxPosition, out.Position)
			var ok int64
			for _, res := range out.Results {
				if res.Code == "" {
					ok++
				} else {
					wr.rejected[res.Code]++
					if wr.firstFailure == "" {
						wr.firstFailure = res.Code + ": " + res.Error
					}
				}
			}
			okCount.Add(ok)
			continue
		}
		if ctx.Err() != nil {
			wr.unknown += int64(len(items))
			break
		}
		if wr.firstFailure == "" {
			wr.firstFailure = err.Error()
		}
		code := "transport"
		var apiErr *client.APIError
		if errors.As(err, &apiErr) {
			code = apiErr.Code
		}
		wr.errorCodes[code]++
		failCount.Add(1)
		select {
		case <-loadCtx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return wr
}

func writeBatchReport(w io.Writer, cfg benchConfig, res benchResult) {
	fmt.Fprintf(w, "node:          %s\n", cfg.url)
	fmt.Fprintf(w, "accounts:      %d (%s-*, %s %s each)\n", cfg.accounts, cfg.prefix, cfg.initial, cfg.cur.Code)
	fmt.Fprintf(w, "amount:        %s %s\n", cfg.amount, cfg.cur.Code)
	fmt.Fprintf(w, "concurrency:   %d\n", cfg.concurrency)
	fmt.Fprintf(w, "batch size:    %d transfers per request\n", cfg.batchSize)
	dur := res.elapsed.Round(time.Millisecond).String()
	if res.interrupted {
		dur += " (interrupted)"
	}
	fmt.Fprintf(w, "duration:      %s\n", dur)
	fmt.Fprintf(w, "requests ok:   %d\n", len(res.latencies))
	fmt.Fprintf(w, "transfers ok:  %d\n", res.ok)
	fmt.Fprintf(w, "rejected:      %d%s\n", res.rejectedTotal(), formatCodes(res.rejected))
	fmt.Fprintf(w, "errors:        %d%s\n", res.errors, formatCodes(res.errorCodes))
	if res.unknown > 0 {
		fmt.Fprintf(w, "unknown:       %d transfers (in flight when interrupted; may have committed)\n", res.unknown)
	}
	if res.firstFailure != "" {
		fmt.Fprintf(w, "e.g. failure:  %s\n", res.firstFailure)
	}
	fmt.Fprintf(w, "throughput:    %.1f transfers/s\n", res.throughput())
	for _, p := range []int{50, 90, 99} {
		fmt.Fprintf(w, "request p%d:   %s\n", p, formatLatency(percentile(res.latencies, p)))
	}
}
