package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/chronicle-ledger/chronicle/projector"
	"github.com/chronicle-ledger/chronicle/sqlstore"
)

// projectorCmd runs a projector as its own process: it tails a node's log over HTTP, or
// the SQL event store directly (--event-store), into a PostgreSQL read model, woken by NATS
// when given one and polling otherwise.
func projectorCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chronicle projector", flag.ContinueOnError)
	from := fs.String("from", "http://127.0.0.1:4000", "node whose event log to read")
	tf := addTokenFlags(fs)
	eventStore := fs.String("event-store", "", "read the log straight from this SQL event store (postgres://...) instead of --from")
	readModel := fs.String("read-model", "", "PostgreSQL read model to maintain (postgres://...)")
	natsURL := fs.String("nats-url", "", "NATS server whose event subjects wake the projector (optional)")
	subject := fs.String("nats-subject", "events.>", "subjects that announce new events")
	poll := fs.Duration("poll", time.Second, "how often to read the log when nothing wakes the projector")
	tlsOpts := addClientTLSFlags(fs, false)
	var logLevel, logFormat string
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chronicle projector [rebuild] [flags]\n\nWithout rebuild, follows the log until stopped. With rebuild, empties the read model,\nreplays the whole log into it and exits.\n\n")
		fs.PrintDefaults()
	}
	// "rebuild" may come before, between or after the flags.
	flagArgs, pos := splitPositional(fs, args)
	if err := parseFlags(fs, flagArgs, stderr); err != nil {
		return err
	}
	rebuild := false
	switch {
	case len(pos) == 1 && pos[0] == "rebuild":
		rebuild = true
	case len(pos) > 0:
		fmt.Fprintf(stderr, "chronicle projector: unexpected arguments: %s (the only one is rebuild)\n", strings.Join(pos, " "))
		return errUsage
	}
	if *readModel == "" {
		fmt.Fprintln(stderr, "chronicle projector: --read-model postgres://... is required")
		return errUsage
	}
	logger, err := newLogger(stderr, logLevel, logFormat)
	if err != nil {
		return err
	}
	view, err := projector.OpenPostgresView(ctx, *readModel, logger)
	if err != nil {
		return err
	}
	defer view.Close()
	tf.tls = tlsOpts
	c, err := tf.client(*from)
	if err != nil {
		return err
	}
	var src projector.Source = c.Log()
	if *eventStore != "" {
		st, err := sqlstore.Open(ctx, sqlstore.Config{URL: *eventStore, Logger: logger})
		if err != nil {
			return fmt.Errorf("open the event store: %w", err)
		}
		defer st.Close()
		src = st
	}
	if rebuild {
		start := time.Now()
		if err := projector.Rebuild(ctx, src, view, logger); err != nil {
			return err
		}
		pos, _ := view.Position(ctx)
		fmt.Fprintf(stdout, "rebuilt %s read model to position %d in %s\n", view.Name(), pos, time.Since(start).Round(time.Millisecond))
		return nil
	}
	p := projector.New(src, view, logger)
	p.SetPoll(*poll)
	var wake chan struct{}
	if *natsURL != "" {
		wake = make(chan struct{}, 1)
		nc, err := nats.Connect(*natsURL, nats.Name("chronicle-projector"), nats.MaxReconnects(-1),
			nats.ReconnectWait(time.Second), nats.RetryOnFailedConnect(true),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { logger.Warn("nats disconnected; polling the log", "err", err) }),
			nats.ReconnectHandler(func(*nats.Conn) { logger.Info("nats reconnected") }))
		if err != nil {
			return fmt.Errorf("connect to nats %s: %w", *natsURL, err)
		}
		defer nc.Close()
		sub, err := nc.Subscribe(*subject, func(*nats.Msg) {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", *subject, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	logger.Info("projector following", "from", *from, "view", view.Name(), "nats", *natsURL != "")
	err = p.Run(ctx, wake)
	st := p.Status()
	fmt.Fprintf(stdout, "projector stopped at position %d\n", st.Position)
	logger.Debug("projector exit", "status", st)
	return err
}
