package usdcarb

import (
	"context"
	"errors"
	"fmt"
)

// TokenSource supplies the bearer token of a call. It is called for every RPC, so an
// implementation that fetches tokens should cache them until they near expiry.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a TokenSource that always returns the same token.
type StaticToken string

// Token returns the token itself.
func (t StaticToken) Token(context.Context) (string, error) {
	if t == "" {
		return "", errors.New("empty static token")
	}
	return string(t), nil
}

// TokenFunc adapts a function to TokenSource.
type TokenFunc func(ctx context.Context) (string, error)

// Token calls f.
func (f TokenFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

// bearer sends "authorization: Bearer <token>" with every RPC.
type bearer struct {
	tokens TokenSource
	secure bool
}

func (b bearer) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	token, err := b.tokens.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("usdcarb: token source: %w", err)
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

// RequireTransportSecurity allows plaintext only when the connection is plaintext, i.e.
// the local gateway; with TLS configured, tokens never travel unencrypted.
func (b bearer) RequireTransportSecurity() bool { return b.secure }
