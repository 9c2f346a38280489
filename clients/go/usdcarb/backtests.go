package usdcarb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	usdcarbv1 "github.com/usdcarb/usdcarb/clients/go/gen/usdcarb/v1"
)

// ProgressFunc receives every progress event of a backtest stream (queue position while
// QUEUED, then bars done, bar time and equity while RUNNING).
type ProgressFunc func(state usdcarbv1.JobState, p *usdcarbv1.BacktestProgress)

// JobError reports a backtest that ended FAILED or CANCELLED; Backtest is the job as
// stored, with its error status.
type JobError struct {
	Backtest *usdcarbv1.Backtest
	Outcome  *usdcarbv1.Outcome
}

func (e *JobError) Error() string {
	msg := e.Outcome.GetResult().String()
	if s := e.Outcome.GetError(); s != nil {
		msg += ": " + s.GetMessage()
	}
	return fmt.Sprintf("usdcarb: %s ended %s", e.Backtest.GetName(), msg)
}

// RequestID returns a fresh idempotency key (a retried create then follows the first).
func RequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CreateBacktest queues a backtest of version ("strategies/{s}/versions/{v}") and
// returns the job at once; follow it with WatchBacktest.
func (c *Client) CreateBacktest(ctx context.Context, version string, cfg *usdcarbv1.BacktestConfig) (*usdcarbv1.Backtest, error) {
	return c.Backtests.CreateBacktest(ctx, &usdcarbv1.CreateBacktestRequest{
		Backtest:  &usdcarbv1.Backtest{StrategyVersion: version, Config: cfg},
		RequestId: RequestID(),
	})
}

// RunBacktest runs a backtest and streams its progress to onProgress (may be nil) every
// interval (0: the server's 250ms). It returns the finished job with its result, or a
// *JobError when it failed or was cancelled. A stream cut before the outcome is resumed
// with WatchBacktest.
func (c *Client) RunBacktest(ctx context.Context, version string, cfg *usdcarbv1.BacktestConfig, interval time.Duration, onProgress ProgressFunc) (*usdcarbv1.Backtest, error) {
	req := &usdcarbv1.RunBacktestRequest{StrategyVersion: version, Config: cfg, RequestId: RequestID()}
	if interval > 0 {
		req.ProgressInterval = durationpb.New(interval)
	}
	stream, err := c.Backtests.RunBacktest(ctx, req)
	if err != nil {
		return nil, err
	}
	name, seq, done, err := drain(stream, onProgress)
	if err != nil && name == "" {
		return nil, err
	}
	if done == nil {
		return c.WatchBacktest(ctx, name, seq, onProgress)
	}
	return c.finish(ctx, name, done)
}

// WatchBacktest follows a backtest job from any replica until it ends, reconnecting after
// a dropped stream from the last event seen (start with afterSequence 0). It returns the
// finished job, or a *JobError.
func (c *Client) WatchBacktest(ctx context.Context, name string, afterSequence int64, onProgress ProgressFunc) (*usdcarbv1.Backtest, error) {
	seq := afterSequence
	for {
		stream, err := c.Backtests.WatchBacktest(ctx, &usdcarbv1.WatchBacktestRequest{Name: name, AfterSequence: seq})
		if err != nil {
			return nil, err
		}
		_, last, done, err := drain(stream, onProgress)
		if last > seq {
			seq = last
		}
		if done != nil {
			return c.finish(ctx, name, done)
		}
		if err != nil && !transient(err) {
			return nil, err
		}
		select { // the stream dropped before the outcome: reconnect after a pause
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// BacktestResult returns the result of a finished backtest; FAILED_PRECONDITION-like
// states come back as a *JobError, a job still running as an error saying so.
func (c *Client) BacktestResult(ctx context.Context, name string) (*usdcarbv1.BacktestResult, error) {
	bt, err := c.Backtests.GetBacktest(ctx, &usdcarbv1.GetBacktestRequest{Name: name})
	if err != nil {
		return nil, err
	}
	switch bt.GetState() {
	case usdcarbv1.JobState_JOB_STATE_SUCCEEDED:
		return bt.GetResult(), nil
	case usdcarbv1.JobState_JOB_STATE_FAILED, usdcarbv1.JobState_JOB_STATE_CANCELLED:
		result := usdcarbv1.Outcome_RESULT_FAILED
		if bt.GetState() == usdcarbv1.JobState_JOB_STATE_CANCELLED {
			result = usdcarbv1.Outcome_RESULT_CANCELLED
		}
		return nil, &JobError{Backtest: bt, Outcome: &usdcarbv1.Outcome{Result: result, Error: bt.GetError()}}
	default:
		return nil, fmt.Errorf("usdcarb: %s is %s, not finished", name, bt.GetState())
	}
}

// BacktestTrades returns every leg fill of a backtest, in time order, page by page.
func (c *Client) BacktestTrades(ctx context.Context, name string) ([]*usdcarbv1.Trade, error) {
	var trades []*usdcarbv1.Trade
	req := &usdcarbv1.ListBacktestTradesRequest{Parent: name, PageSize: 10000}
	for {
		page, err := c.Backtests.ListBacktestTrades(ctx, req)
		if err != nil {
			return nil, err
		}
		trades = append(trades, page.GetTrades()...)
		if page.GetNextPageToken() == "" {
			return trades, nil
		}
		req.PageToken = page.GetNextPageToken()
	}
}

// CancelBacktest cancels a queued or running backtest (a finished one is returned as is).
func (c *Client) CancelBacktest(ctx context.Context, name string) (*usdcarbv1.Backtest, error) {
	return c.Backtests.CancelBacktest(ctx, &usdcarbv1.CancelBacktestRequest{Name: name})
}

type eventStream interface {
	Recv() (*usdcarbv1.BacktestEvent, error)
}

// drain reads a backtest stream to its end: the job name, the last sequence seen, the
// completion (nil if the stream ended without one) and the error that ended it.
func drain(stream eventStream, onProgress ProgressFunc) (string, int64, *usdcarbv1.BacktestCompleted, error) {
	var name string
	var seq int64
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return name, seq, nil, nil
		}
		if err != nil {
			return name, seq, nil, err
		}
		name, seq = ev.GetBacktest(), ev.GetSequence()
		if p := ev.GetProgress(); p != nil && onProgress != nil {
			onProgress(ev.GetState(), p)
		}
		if done := ev.GetCompleted(); done != nil {
			return name, seq, done, nil
		}
	}
}

func (c *Client) finish(ctx context.Context, name string, done *usdcarbv1.BacktestCompleted) (*usdcarbv1.Backtest, error) {
	bt, err := c.Backtests.GetBacktest(ctx, &usdcarbv1.GetBacktestRequest{Name: name})
	if err != nil {
		return nil, err
	}
	if done.GetOutcome().GetResult() != usdcarbv1.Outcome_RESULT_OK {
		return bt, &JobError{Backtest: bt, Outcome: done.GetOutcome()}
	}
	return bt, nil
}

func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal:
		return true
	}
	return false
}
