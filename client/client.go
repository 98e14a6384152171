// Package client is a Go client of Chronicle's HTTP API, used by the CLI, the benchmark
// and the end-to-end tests.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
)

// Client talks to one node.
type Client struct {
	base  string
	http  *http.Client
	token string
}

// New returns a client of the node at baseURL (e.g. http://127.0.0.1:4000). A nil
// httpClient uses one with a 30 s timeout.
func New(baseURL string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), http: httpClient}
}

// WithToken returns a client that sends token as its bearer token on every request.
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// BaseURL is the node's base URL.
func (c *Client) BaseURL() string { return c.base }

// APIError is an error response from the API: its status and body.
type APIError struct {
	Status int `json:"-"`
	api.ErrorBody
}

func (e *APIError) Error() string {
	return fmt.Sprintf("chronicle: %d %s: %s", e.Status, e.Code, e.Message)
}

// CodeOf returns the API error code of err, or "" when err is not an API error.
func CodeOf(err error) string {
	if e, ok := err.(*APIError); ok {
		return e.Code
	}
	return ""
}

// The request and response bodies are the api package's.
type (
	EventRef      = api.EventRef
	CommandResult = api.CommandResult
	Account       = api.Account
	Transaction   = api.Transaction
	Balance       = api.Balance
	CreateAccount = api.CreateAccount
	Money         = api.Money
	Transfer      = api.Transfer
)

// CreateAccount creates an account. idemKey may be empty.
func (c *Client) CreateAccount(ctx context.Context, req CreateAccount, idemKey string) (CommandResult, error) {
	return c.command(ctx, "create-account", req, idemKey)
}

// Deposit deposits money into an account.
func (c *Client) Deposit(ctx context.Context, req Money, idemKey string) (CommandResult, error) {
	return c.command(ctx, "deposit", req, idemKey)
}

// Withdraw withdraws money from an account.
func (c *Client) Withdraw(ctx context.Context, req Money, idemKey string) (CommandResult, error) {
	return c.command(ctx, "withdraw", req, idemKey)
}

// Transfer moves money between two accounts atomically.
func (c *Client) Transfer(ctx context.Context, req Transfer, idemKey string) (CommandResult, error) {
	return c.command(ctx, "transfer", req, idemKey)
}

func (c *Client) command(ctx context.Context, name string, body any, idemKey string) (CommandResult, error) {
	var res CommandResult
	b, err := json.Marshal(body)
	if err != nil {
		return res, fmt.Errorf("encode %s: %w", name, err)
	}
	hdr := http.Header{}
	if idemKey != "" {
		hdr.Set("Idempotency-Key", idemKey)
	}
	status, err := c.Do(ctx, http.MethodPost, "/commands/"+name, b, hdr, &res)
	res.Status = status
	return res, err
}

// Account reads one account. minPosition > 0 waits until the node has applied it.
func (c *Client) Account(ctx context.Context, id string, minPosition uint64) (Account, error) {
	var a Account
	_, err := c.Do(ctx, http.MethodGet, "/accounts/"+url.PathEscape(id)+minPos("?", minPosition), nil, nil, &a)
	return a, err
}

// Accounts lists accounts after the given id.
func (c *Client) Accounts(ctx context.Context, after string, limit int) ([]Account, error) {
	var out api.Accounts
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	_, err := c.Do(ctx, http.MethodGet, "/accounts?"+q.Encode(), nil, nil, &out)
	return out.Accounts, err
}

// Transactions lists an account's statement, newest first; before is a version cursor.
func (c *Client) Transactions(ctx context.Context, id string, before uint64, limit int) ([]Transaction, error) {
	var out api.Transactions
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatUint(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	_, err := c.Do(ctx, http.MethodGet, "/accounts/"+url.PathEscape(id)+"/transactions?"+q.Encode(), nil, nil, &out)
	return out.Transactions, err
}

// BalanceAt asks for an account's balance at instant t.
func (c *Client) BalanceAt(ctx context.Context, id string, t time.Time) (Balance, error) {
	var b Balance
	q := url.Values{"timestamp": {t.UTC().Format(time.RFC3339Nano)}}
	_, err := c.Do(ctx, http.MethodGet, "/accounts/"+url.PathEscape(id)+"/balance-at?"+q.Encode(), nil, nil, &b)
	return b, err
}

// EventsQuery selects events; zero values mean the API's defaults.
type EventsQuery struct {
	After       uint64
	Limit       int
	Order       string
	Type        string
	AggregateID string
}

// Events lists events from the log.
func (c *Client) Events(ctx context.Context, eq EventsQuery) ([]chronicle.Event, error) {
	var out api.Events
	q := url.Values{}
	if eq.After > 0 {
		q.Set("after", strconv.FormatUint(eq.After, 10))
	}
	if eq.Limit > 0 {
		q.Set("limit", strconv.Itoa(eq.Limit))
	}
	for k, v := range map[string]string{"order": eq.Order, "type": eq.Type, "aggregate_id": eq.AggregateID} {
		if v != "" {
			q.Set(k, v)
		}
	}
	_, err := c.Do(ctx, http.MethodGet, "/events?"+q.Encode(), nil, nil, &out)
	return out.Events, err
}

// AllEvents reads the whole log in position order, a page at a time.
func (c *Client) AllEvents(ctx context.Context) ([]chronicle.Event, error) {
	var all []chronicle.Event
	var after uint64
	for {
		page, err := c.Events(ctx, EventsQuery{After: after, Limit: chronicle.MaxEventsPage, Order: "asc"})
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < chronicle.MaxEventsPage {
			return all, nil
		}
		after = page[len(page)-1].Position
	}
}

// Ready reports whether the node is ready to take commands.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.Do(ctx, http.MethodGet, "/ready", nil, nil, nil)
	return err
}

func minPos(sep string, p uint64) string {
	if p == 0 {
		return ""
	}
	return sep + "min_position=" + strconv.FormatUint(p, 10)
}

// Do sends a request and decodes a JSON response into out (when not nil); an out of type
// *[]byte receives the body as it is (GET /metrics is text, not JSON). A status of 400 or
// more comes back as *APIError, with the status.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, hdr http.Header, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("chronicle: build request: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.token != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("chronicle: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("chronicle: read response: %w", err)
	}
	if resp.StatusCode >= 400 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Code == "" {
			e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(data))
		}
		return resp.StatusCode, e
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return resp.StatusCode, nil
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("chronicle: decode %s %s response: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}
