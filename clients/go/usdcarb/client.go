// Package usdcarb is a small ergonomic layer over the generated usdcarb gRPC clients:
// one connection, every service client, bearer tokens per RPC, retries of idempotent
// calls, and helpers that read google.rpc error details.
//
//	c, err := usdcarb.Dial(ctx, "127.0.0.1:8080", usdcarb.WithToken(token))
//	if err != nil { ... }
//	defer c.Close()
//	s, err := c.Strategies.GetStrategy(ctx, &usdcarbv1.GetStrategyRequest{Name: "strategies/x"})
package usdcarb

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	usdcarbv1 "github.com/usdcarb/usdcarb/clients/go/gen/usdcarb/v1"
)

// Client holds one connection and a generated client per service.
type Client struct {
	conn *grpc.ClientConn

	Strategies    usdcarbv1.StrategyServiceClient
	Backtests     usdcarbv1.BacktestServiceClient
	Ingestion     usdcarbv1.IngestionServiceClient
	Validation    usdcarbv1.ValidationServiceClient
	Notifications usdcarbv1.NotificationServiceClient
	Identity      usdcarbv1.IdentityServiceClient
}

type options struct {
	tokens      TokenSource
	transport   credentials.TransportCredentials
	retry       RetryPolicy
	dialOptions []grpc.DialOption
	err         error // from an option, returned by Dial
}

// Option configures Dial.
type Option func(*options)

// WithToken sends a fixed bearer token with every call.
func WithToken(token string) Option {
	return func(o *options) { o.tokens = StaticToken(token) }
}

// WithTokenSource asks ts for the bearer token of every call; ts should cache its token.
func WithTokenSource(ts TokenSource) Option {
	return func(o *options) { o.tokens = ts }
}

// WithTransportCredentials connects with TLS (or other credentials); the default is
// plaintext, which only a gateway started with plaintext asked for speaks.
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(o *options) { o.transport = creds }
}

// WithCAFile connects with TLS, trusting only the CA certificates in the PEM file at
// path: the local stack's development CA is .run/stack/tls/ca.pem.
func WithCAFile(path string) Option {
	return func(o *options) {
		creds, err := credentials.NewClientTLSFromFile(path, "")
		if err != nil {
			o.err = fmt.Errorf("usdcarb: CA file: %w", err)
			return
		}
		o.transport = creds
	}
}

// WithRetryPolicy replaces DefaultRetryPolicy; a zero MaxRetries turns retries off.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(o *options) { o.retry = p }
}

// WithDialOptions adds raw gRPC dial options (interceptors, keepalive, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}

// Dial connects to target ("host:port") lazily and returns a Client.
//
// When a token source is set it is asked once here, so a misconfigured source fails at
// Dial rather than at the first call.
func Dial(ctx context.Context, target string, opts ...Option) (*Client, error) {
	o := options{transport: insecure.NewCredentials(), retry: DefaultRetryPolicy}
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(o.transport),
		grpc.WithChainUnaryInterceptor(UnaryRetryInterceptor(o.retry)),
	}
	if o.tokens != nil {
		if _, err := o.tokens.Token(ctx); err != nil {
			return nil, fmt.Errorf("usdcarb: token source: %w", err)
		}
		secure := o.transport.Info().SecurityProtocol != "insecure"
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{tokens: o.tokens, secure: secure}))
	}
	conn, err := grpc.NewClient(target, append(dial, o.dialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("usdcarb: dial %s: %w", target, err)
	}
	return newClient(conn), nil
}

func newClient(conn *grpc.ClientConn) *Client {
	return &Client{
		conn:          conn,
		Strategies:    usdcarbv1.NewStrategyServiceClient(conn),
		Backtests:     usdcarbv1.NewBacktestServiceClient(conn),
		Ingestion:     usdcarbv1.NewIngestionServiceClient(conn),
		Validation:    usdcarbv1.NewValidationServiceClient(conn),
		Notifications: usdcarbv1.NewNotificationServiceClient(conn),
		Identity:      usdcarbv1.NewIdentityServiceClient(conn),
	}
}

// Conn returns the underlying connection, e.g. for health checks or reflection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error {
	if c == nil || c.conn == nil {
		return errors.New("usdcarb: close of a nil client")
	}
	return c.conn.Close()
}
