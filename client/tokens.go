package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/chronicle-ledger/chronicle/api"
)

// CreateToken makes an API token (admin only); the answer holds its secret, shown once.
func (c *Client) CreateToken(ctx context.Context, name, role string) (api.TokenCreated, error) {
	body, err := json.Marshal(api.TokenCreate{Name: name, Role: role})
	if err != nil {
		return api.TokenCreated{}, err
	}
	var out api.TokenCreated
	_, err = c.Do(ctx, http.MethodPost, "/admin/tokens", body, nil, &out)
	return out, err
}

// Tokens lists every API token, revoked ones included (admin only).
func (c *Client) Tokens(ctx context.Context) ([]api.Token, error) {
	var out api.Tokens
	_, err := c.Do(ctx, http.MethodGet, "/admin/tokens", nil, nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes the token called name (admin only).
func (c *Client) RevokeToken(ctx context.Context, name string) (api.Token, error) {
	var out api.Token
	_, err := c.Do(ctx, http.MethodPost, "/admin/tokens/"+url.PathEscape(name)+"/revoke", []byte("{}"), nil, &out)
	return out, err
}
