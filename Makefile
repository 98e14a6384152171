# Chronicle Ledger. Needs only Go (see go.mod) and make.
GO      ?= go
BIN     := bin/chronicle
DATA    ?= ./data
HTTP    ?= 127.0.0.1:4000
RAFT    ?= 127.0.0.1:4001
PKGS    := ./...

# make dist: static (CGO_ENABLED=0), stripped, -trimpath binaries for PLATFORMS in DIST,
# with VERSION stamped into node.Version and a SHA256SUMS file. VERSION defaults to the
# source's version plus the commit (0.2.0+<12 hex digits>, .dirty for uncommitted changes).
DIST      ?= dist
PLATFORMS ?= linux/amd64 linux/arm64
VERSION   ?= $(shell sed -n 's/^var Version = "\(.*\)"$$/\1/p' node/node.go)$(shell git describe --always --dirty --abbrev=12 2>/dev/null | sed 's/^/+/; s/-dirty$$/.dirty/')
DIST_LDFLAGS = -s -w -X github.com/chronicle-ledger/chronicle/node.Version=$(VERSION)

# Packages whose tests exercise concurrency (goroutines, locks, Raft, NATS, HTTP handlers,
# the bench's workers, the position waiter), run by `make test-race`. The root package and
# client start no goroutines of their own; their code is raced through the packages below.
RACE_PKGS := ./internal/... ./raftlog/... ./raftstore/... ./sqlstore/... ./storetest/... ./node/... ./eventbus/... ./projector/... ./httpapi/... ./cmd/chronicle/...

.PHONY: build run test test-race bench bench-micro fuzz lint clean dist

build:
	$(GO) build -o $(BIN) ./cmd/chronicle

# Starts one node with all state under $(DATA); prints the URL. Ctrl-C stops it cleanly.
run: build
	./$(BIN) serve --data-dir $(DATA) --http-addr $(HTTP) --raft-addr $(RAFT)

# Three nodes n1..n3 on 127.0.0.1 (HTTP 4101-4103, Raft 4201-4203, NATS 4301-4303), state in
# $(CLUSTER_DATA)/n1..n3 (apart from make run's $(DATA)), logs in $(CLUSTER_DATA)/nN.log;
# prints the URLs and the leader. Ctrl-C stops them cleanly; run it again to restart them
# on their data. A node killed by hand: the script prints the command that restarts it
# (also: scripts/cluster.sh restart-command N). Settings: see scripts/cluster.sh.
CLUSTER_DATA ?= ./data-cluster
.PHONY: cluster
cluster: build
	BIN='$(BIN)' BUILD=0 DATA='$(CLUSTER_DATA)' bash scripts/cluster.sh

# The SQL topology of deploy/compose/sql.yml as processes: the local PostgreSQL as event store
# (database chronicle_demo_es, kept across runs; RESET=1 starts over) and read model
# (chronicle_demo_read), NATS at 127.0.0.1:4222 if it answers (else embedded), two command
# processes (4002, 4003) and a query process (4001); prints the URLs, Ctrl-C stops them.
# Settings: see scripts/sql-demo.sh.
.PHONY: sql-demo
sql-demo: build
	BIN='$(BIN)' BUILD=0 DATA='$(DATA)' bash scripts/sql-demo.sh

# go test -json through internal/testsum: failures as go test prints them, then a SKIPPED
# block naming each skipped test and why (no chromium, no PostgreSQL...); the exit status
# is go test's (non-zero when anything failed).
test:
	$(GO) vet $(PKGS)
	$(GO) build -o bin/testsum ./internal/testsum
	GO='$(GO)' ./bin/testsum -count=1 -timeout 20m $(PKGS)

test-race:
	$(GO) test -race -count=1 -timeout 30m $(RACE_PKGS)

# The end-to-end benchmark (docs/benchmarks.md), in one go on this machine: the disk's durable
# ceiling and the bare HTTP ceiling measured by the binary, then a single node and a 3-node
# cluster it starts itself (loopback, temp data dirs under /var/tmp, stopped on exit and on
# Ctrl-C) for transfers at c=1/16/64, batched transfers, balance-at and the projector's lag;
# prints one table, each figure as a ratio of its ceiling. About 3 minutes with the defaults
# (of which loading the 1,000,000-event balance-at account is about one at 16k events/s; it
# grows as the ledger slows: BENCH_BALANCE_AT=10000,100000 for a shorter run).
BENCH_DURATION   ?= 10s
BENCH_BALANCE_AT ?= 10000,1000000
BENCH_FLAGS      ?=
bench: build
	./$(BIN) bench suite --duration $(BENCH_DURATION) --balance-at-events $(BENCH_BALANCE_AT) $(BENCH_FLAGS)

# Go micro-benchmarks (what `make bench` ran before the suite).
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# A short run of every fuzz target; found inputs land in testdata/fuzz and are kept.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseAmount$$' -fuzztime 30s .
	$(GO) test -run '^$$' -fuzz '^FuzzDecimalJSON$$' -fuzztime 30s .
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime 30s ./httpapi
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBinary$$' -fuzztime 30s .

# Rewrites testdata/golden from the script in internal/golden. Only for a deliberate format
# change, in its own commit: TestGolden exists to fail when these bytes change. CI never runs it.
.PHONY: golden
golden:
	$(GO) run ./internal/goldengen -dir testdata/golden

# Regenerates the frozen ISO 4217 table from golang.org/x/text; review the diff before
# committing it, as it changes which currencies the state machine accepts. CI never runs it.
.PHONY: currencies
currencies:
	$(GO) run ./internal/currencygen -out currency_table.go

# gofmt, go vet and staticcheck at the version go.mod pins (`tool` directive).
lint:
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

# Cross-builds; deploy/Dockerfile builds the same way inside its builder stage.
dist:
	@mkdir -p '$(DIST)'
	@rm -f '$(DIST)'/chronicle-* '$(DIST)/SHA256SUMS'
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; out='$(DIST)'/chronicle-$$os-$$arch; \
		echo "dist: $$out (version $(VERSION))"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(DIST_LDFLAGS)' -o "$$out" ./cmd/chronicle; \
	done
	@cd '$(DIST)' && sha256sum chronicle-* >SHA256SUMS && cat SHA256SUMS && ls -l chronicle-*

clean:
	rm -rf bin dist
