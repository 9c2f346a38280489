// Command backtest creates a cross-exchange spread strategy (BTC/USDC, Binance.US vs
// Bybit), runs a backtest of it over the demo days of the USDC depeg through the usdcarb
// gateway, prints its progress as it streams and then the result as JSON.
//
// The market data must be stored first (`usdcarb data backfill`, or `make demo`):
//
//	go run ./examples/backtest -target localhost:8080 -cacert ../../.run/stack/tls/ca.pem \
//	    -token "$(usdcarb dev-token --role trader)"
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	usdcarbv1 "github.com/usdcarb/usdcarb/clients/go/gen/usdcarb/v1"
	"github.com/usdcarb/usdcarb/clients/go/usdcarb"
)

func main() {
	target := flag.String("target", "127.0.0.1:8080", "gateway host:port")
	token := flag.String("token", os.Getenv("USDCARB_TOKEN"), "bearer token (default $USDCARB_TOKEN)")
	caFile := flag.String("cacert", os.Getenv("USDCARB_CA_FILE"),
		"CA to trust over TLS (default $USDCARB_CA_FILE; empty: plaintext)")
	id := flag.String("id", "", "strategy id (default: generated)")
	flag.Parse()
	if *token == "" {
		log.Fatal("expected a token (-token or USDCARB_TOKEN), got none")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, *target, *token, *caFile, *id); err != nil {
		log.Fatal(err)
	}
}

// DemoConfig is the demo's conditions: three days of the depeg, both venues with 5 BTC
// and 200,000 USDC, 10 bps taker fees, 2 bps slippage, USDC transfers in 30 bars.
func DemoConfig() *usdcarbv1.BacktestConfig {
	balances := []*usdcarbv1.AssetAmount{{Asset: "BTC", Amount: 5}, {Asset: "USDC", Amount: 200000}}
	venue := func(name string) *usdcarbv1.VenueConfig {
		return &usdcarbv1.VenueConfig{Venue: name, TakerFeeBps: 10, MakerFeeBps: 10,
			Slippage: &usdcarbv1.SlippageModel{FixedBps: 2}, InitialBalances: balances}
	}
	return &usdcarbv1.BacktestConfig{
		Range: &usdcarbv1.TimeRange{
			StartTime: timestamppb.New(time.Date(2023, 3, 10, 0, 0, 0, 0, time.UTC)),
			EndTime:   timestamppb.New(time.Date(2023, 3, 13, 0, 0, 0, 0, time.UTC)),
		},
		Timeframe: "1m", QuoteAsset: "USDC", FillPolicy: usdcarbv1.FillPolicy_FILL_POLICY_NEXT_BAR,
		Venues: []*usdcarbv1.VenueConfig{venue("binance"), venue("bybit")},
		Transfers: []*usdcarbv1.TransferRoute{
			{FromVenue: "binance", ToVenue: "bybit", Asset: "USDC", Fee: 1, DelayBars: 30},
			{FromVenue: "bybit", ToVenue: "binance", Asset: "USDC", Fee: 1, DelayBars: 30},
		},
	}
}

func run(ctx context.Context, target, token, caFile, id string) error {
	opts := []usdcarb.Option{usdcarb.WithToken(token)}
	if caFile != "" {
		opts = append(opts, usdcarb.WithCAFile(caFile))
	}
	client, err := usdcarb.Dial(ctx, target, opts...)
	if err != nil {
		return err
	}
	defer client.Close()

	strategy, err := client.Strategies.CreateStrategy(ctx, &usdcarbv1.CreateStrategyRequest{
		Strategy: &usdcarbv1.Strategy{DisplayName: "BTC/USDC spread, Binance.US vs Bybit",
			Kind: usdcarbv1.StrategyKind_STRATEGY_KIND_CROSS_EXCHANGE_SPREAD},
		StrategyId: id, RequestId: usdcarb.RequestID(),
	})
	if err != nil {
		return fmt.Errorf("create strategy: %w", err)
	}
	version, err := client.Strategies.CreateStrategyVersion(ctx, &usdcarbv1.CreateStrategyVersionRequest{
		Parent: strategy.GetName(),
		Version: &usdcarbv1.StrategyVersion{Parameters: &usdcarbv1.StrategyParameters{
			Kind: &usdcarbv1.StrategyParameters_CrossExchangeSpread{CrossExchangeSpread: &usdcarbv1.CrossExchangeSpreadParams{
				Symbol: "BTC/USDC", VenueA: "binance", VenueB: "bybit",
				EntryBps: 60, ExitBps: 5, Quantity: 0.5, MaxHoldingBars: 720,
			}},
		}},
	})
	if err != nil {
		return fmt.Errorf("create version: %w", err)
	}
	fmt.Fprintf(os.Stderr, "backtest of %s\n", version.GetName())
	bt, err := client.RunBacktest(ctx, version.GetName(), DemoConfig(), 20*time.Millisecond,
		func(state usdcarbv1.JobState, p *usdcarbv1.BacktestProgress) {
			if q := p.GetQueue(); state == usdcarbv1.JobState_JOB_STATE_QUEUED && q != nil {
				fmt.Fprintf(os.Stderr, "progress queued ahead=%d\n", q.GetAhead())
				return
			}
			fmt.Fprintf(os.Stderr, "progress %5.1f%% %d/%d bars equity %.2f\n",
				100*p.GetProgress().GetFraction(), p.GetProgress().GetDone(),
				p.GetProgress().GetTotal(), p.GetEquity())
		})
	if err != nil {
		return fmt.Errorf("run backtest: %w", err)
	}
	out, err := protojson.MarshalOptions{Multiline: true}.Marshal(bt)
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}
