package usdcarb

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RetryPolicy says how often and how far apart idempotent calls are retried on
// UNAVAILABLE (and on RESOURCE_EXHAUSTED when the server sends a RetryInfo).
type RetryPolicy struct {
	MaxRetries     int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64
	// MaxRetryAfter is the longest server-requested wait honoured; longer fails at once.
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy retries up to three times, from 200ms up to 5s apart.
var DefaultRetryPolicy = RetryPolicy{
	MaxRetries: 3, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second,
	Multiplier: 2, MaxRetryAfter: 30 * time.Second,
}

// contentAddressed lists creates whose repeat returns the first result.
var contentAddressed = map[string]bool{
	"/usdcarb.v1.StrategyService/CreateStrategyVersion": true,
}

// IsIdempotent reports whether repeating req on method can do no harm: reads and
// watches, content-addressed creates, and creates carrying a request id.
func IsIdempotent(method string, req any) bool {
	name := method[strings.LastIndex(method, "/")+1:]
	for _, prefix := range []string{"Get", "List", "Watch", "Diff"} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	if contentAddressed[method] {
		return true
	}
	keyed, ok := req.(interface{ GetRequestId() string })
	return strings.HasPrefix(name, "Create") && ok && keyed.GetRequestId() != ""
}

// backoff returns the wait before retry n (from 0): half fixed, half jitter.
func (p RetryPolicy) backoff(n int) time.Duration {
	ceiling := math.Min(float64(p.MaxBackoff), float64(p.InitialBackoff)*math.Pow(p.Multiplier, float64(n)))
	return time.Duration(ceiling * (0.5 + rand.Float64()/2))
}

// delay returns how long to wait before retrying after err, or false not to retry.
func (p RetryPolicy) delay(err error, n int) (time.Duration, bool) {
	if n >= p.MaxRetries {
		return 0, false
	}
	hint, hinted := RetryDelay(err)
	switch status.Code(err) {
	case codes.Unavailable:
		return max(p.backoff(n), hint), true
	case codes.ResourceExhausted:
		if !hinted || hint > p.MaxRetryAfter {
			return 0, false
		}
		return hint + time.Duration(rand.Float64()*float64(hint)/10), true
	default:
		return 0, false
	}
}

// UnaryRetryInterceptor retries idempotent unary calls per the policy, within the
// call's deadline. Streams are not retried: their caller may have seen messages.
func UnaryRetryInterceptor(p RetryPolicy) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		idempotent := IsIdempotent(method, req)
		for n := 0; ; n++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if err == nil || !idempotent {
				return err
			}
			wait, ok := p.delay(err, n)
			if !ok {
				return err
			}
			if deadline, has := ctx.Deadline(); has && time.Until(deadline) <= wait {
				return err
			}
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return err
			case <-timer.C:
			}
		}
	}
}
