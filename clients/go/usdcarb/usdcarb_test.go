package usdcarb

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	usdcarbv1 "github.com/usdcarb/usdcarb/clients/go/gen/usdcarb/v1"
)

// fakeStrategies fails each method with the queued errors, then succeeds, and records
// the calls and the authorization header it saw.
type fakeStrategies struct {
	usdcarbv1.UnimplementedStrategyServiceServer
	mu     sync.Mutex
	fail   map[string][]error
	calls  map[string]int
	tokens []string
}

func (f *fakeStrategies) next(ctx context.Context, method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		f.tokens = append(f.tokens, md.Get("authorization")...)
	}
	if queue := f.fail[method]; len(queue) > 0 {
		f.fail[method] = queue[1:]
		return queue[0]
	}
	return nil
}

func (f *fakeStrategies) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeStrategies) GetStrategy(ctx context.Context, r *usdcarbv1.GetStrategyRequest) (*usdcarbv1.Strategy, error) {
	if err := f.next(ctx, "GetStrategy"); err != nil {
		return nil, err
	}
	return &usdcarbv1.Strategy{Name: r.GetName()}, nil
}

func (f *fakeStrategies) CreateStrategy(ctx context.Context, r *usdcarbv1.CreateStrategyRequest) (*usdcarbv1.Strategy, error) {
	if err := f.next(ctx, "CreateStrategy"); err != nil {
		return nil, err
	}
	return &usdcarbv1.Strategy{Name: "strategies/" + r.GetStrategyId()}, nil
}

func (f *fakeStrategies) DeleteStrategy(ctx context.Context, _ *usdcarbv1.DeleteStrategyRequest) (*emptypb.Empty, error) {
	if err := f.next(ctx, "DeleteStrategy"); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

var fastRetries = RetryPolicy{
	MaxRetries: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
	Multiplier: 2, MaxRetryAfter: time.Second,
}

func start(t *testing.T, fail map[string][]error, opts ...Option) (*Client, *fakeStrategies) {
	t.Helper()
	fake := &fakeStrategies{fail: fail, calls: map[string]int{}}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	usdcarbv1.RegisterStrategyServiceServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	dialer := func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }
	opts = append([]Option{WithRetryPolicy(fastRetries), WithDialOptions(grpc.WithContextDialer(dialer))}, opts...)
	client, err := Dial(context.Background(), "passthrough:///bufnet", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client, fake
}

func unavailable(n int) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = status.Error(codes.Unavailable, "down")
	}
	return errs
}

func TestIdempotentCallIsRetriedOnUnavailable(t *testing.T) {
	client, fake := start(t, map[string][]error{"GetStrategy": unavailable(2)})
	got, err := client.Strategies.GetStrategy(context.Background(), &usdcarbv1.GetStrategyRequest{Name: "strategies/a"})
	if err != nil || got.GetName() != "strategies/a" {
		t.Fatalf("expected strategies/a after retries, got %v, %v", got, err)
	}
	if n := fake.count("GetStrategy"); n != 3 {
		t.Fatalf("expected 3 calls, got %d", n)
	}
}

func TestRetriesStopAtTheLimit(t *testing.T) {
	client, fake := start(t, map[string][]error{"GetStrategy": unavailable(10)})
	_, err := client.Strategies.GetStrategy(context.Background(), &usdcarbv1.GetStrategyRequest{Name: "strategies/a"})
	if status.Code(err) != codes.Unavailable || fake.count("GetStrategy") != 4 {
		t.Fatalf("expected UNAVAILABLE after 4 calls, got %v after %d", err, fake.count("GetStrategy"))
	}
}

func TestNonIdempotentCallIsNotRetried(t *testing.T) {
	client, fake := start(t, map[string][]error{"DeleteStrategy": unavailable(1)})
	_, err := client.Strategies.DeleteStrategy(context.Background(), &usdcarbv1.DeleteStrategyRequest{Name: "strategies/a"})
	if status.Code(err) != codes.Unavailable || fake.count("DeleteStrategy") != 1 {
		t.Fatalf("expected one UNAVAILABLE call, got %v after %d", err, fake.count("DeleteStrategy"))
	}
}

func TestCreateIsRetriedOnlyWithARequestID(t *testing.T) {
	client, fake := start(t, map[string][]error{"CreateStrategy": unavailable(2)})
	ctx := context.Background()
	if _, err := client.Strategies.CreateStrategy(ctx, &usdcarbv1.CreateStrategyRequest{StrategyId: "a"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("expected UNAVAILABLE without a request id, got %v", err)
	}
	if _, err := client.Strategies.CreateStrategy(ctx, &usdcarbv1.CreateStrategyRequest{StrategyId: "a", RequestId: "r1"}); err != nil {
		t.Fatalf("expected success after a retry with a request id, got %v", err)
	}
	if n := fake.count("CreateStrategy"); n != 3 {
		t.Fatalf("expected 3 calls, got %d", n)
	}
}

func withDetails(t *testing.T, code codes.Code, msg string, details ...*errdetails.RetryInfo) error {
	t.Helper()
	st := status.New(code, msg)
	for _, d := range details {
		var err error
		if st, err = st.WithDetails(d); err != nil {
			t.Fatal(err)
		}
	}
	return st.Err()
}

func TestResourceExhaustedIsRetriedOnlyWithRetryInfo(t *testing.T) {
	hinted := withDetails(t, codes.ResourceExhausted, "slow down",
		&errdetails.RetryInfo{RetryDelay: durationpb.New(2 * time.Millisecond)})
	bare := withDetails(t, codes.ResourceExhausted, "quota")
	client, fake := start(t, map[string][]error{"GetStrategy": {hinted, bare}})
	_, err := client.Strategies.GetStrategy(context.Background(), &usdcarbv1.GetStrategyRequest{Name: "strategies/a"})
	if status.Code(err) != codes.ResourceExhausted || fake.count("GetStrategy") != 2 {
		t.Fatalf("expected a retry after RetryInfo then failure, got %v after %d", err, fake.count("GetStrategy"))
	}
	if delay, ok := RetryDelay(hinted); !ok || delay != 2*time.Millisecond {
		t.Fatalf("expected RetryDelay 2ms, got %v %v", delay, ok)
	}
}

func TestTokenSourceIsAskedPerCall(t *testing.T) {
	n := 0
	source := TokenFunc(func(context.Context) (string, error) { n++; return "tok", nil })
	client, fake := start(t, nil, WithTokenSource(source))
	for range 2 {
		if _, err := client.Strategies.GetStrategy(context.Background(), &usdcarbv1.GetStrategyRequest{Name: "strategies/a"}); err != nil {
			t.Fatal(err)
		}
	}
	if n != 3 || len(fake.tokens) != 2 || fake.tokens[0] != "Bearer tok" {
		t.Fatalf("expected 3 token requests (Dial + 2 calls) and 2 bearer headers, got %d, %v", n, fake.tokens)
	}
}

func TestFieldViolationsAreReadFromBadRequest(t *testing.T) {
	st, err := status.New(codes.InvalidArgument, "bad").WithDetails(
		&errdetails.ErrorInfo{Reason: "INVALID_ARGUMENT", Domain: "usdcarb.dev"},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "version.parameters.crossExchangeSpread.entryBps", Description: "expected a number > 0, got -1"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	violations := FieldViolations(st.Err())
	if len(violations) != 1 || violations[0].GetField() != "version.parameters.crossExchangeSpread.entryBps" {
		t.Fatalf("expected one violation on entryBps, got %v", violations)
	}
	if Reason(st.Err()) != "INVALID_ARGUMENT" || FieldViolations(nil) != nil {
		t.Fatalf("expected reason INVALID_ARGUMENT, got %q", Reason(st.Err()))
	}
}

func TestIsIdempotent(t *testing.T) {
	cases := map[string]bool{
		"/usdcarb.v1.StrategyService/GetStrategy":           true,
		"/usdcarb.v1.StrategyService/ListStrategies":        true,
		"/usdcarb.v1.StrategyService/DiffStrategyVersions":  true,
		"/usdcarb.v1.StrategyService/CreateStrategyVersion": true,
		"/usdcarb.v1.StrategyService/UpdateStrategy":        false,
		"/usdcarb.v1.StrategyService/CreateStrategy":        false,
	}
	for method, want := range cases {
		if got := IsIdempotent(method, &usdcarbv1.CreateStrategyRequest{}); got != want {
			t.Errorf("IsIdempotent(%s): expected %v, got %v", method, want, got)
		}
	}
}

func TestDialFailsOnAMissingCAFile(t *testing.T) {
	_, err := Dial(context.Background(), "127.0.0.1:1", WithCAFile(t.TempDir()+"/none.pem"))
	if err == nil {
		t.Fatal("expected an error for a missing CA file, got none")
	}
}
