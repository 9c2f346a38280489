// Command strategies creates a cross-exchange spread strategy and a version of it
// through the usdcarb gateway, and prints both as JSON.
//
//	go run ./examples/strategies -target localhost:8080 -cacert ../../.run/stack/tls/ca.pem \
//	    -token "$(usdcarb dev-token --role analyst)"
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	usdcarbv1 "github.com/usdcarb/usdcarb/clients/go/gen/usdcarb/v1"
	"github.com/usdcarb/usdcarb/clients/go/usdcarb"
)

func main() {
	target := flag.String("target", "127.0.0.1:8080", "gateway host:port")
	token := flag.String("token", os.Getenv("USDCARB_TOKEN"), "bearer token (default $USDCARB_TOKEN)")
	id := flag.String("id", "", "strategy id (default: generated)")
	caFile := flag.String("cacert", os.Getenv("USDCARB_CA_FILE"),
		"CA to trust over TLS, e.g. the local stack's .run/stack/tls/ca.pem (default $USDCARB_CA_FILE; empty: plaintext)")
	flag.Parse()
	if *token == "" {
		log.Fatal("expected a token (-token or USDCARB_TOKEN), got none")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, *target, *token, *id, *caFile); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, target, token, id, caFile string) error {
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
		Strategy: &usdcarbv1.Strategy{
			DisplayName: "USDC/USDT spread, Binance vs Kraken",
			Kind:        usdcarbv1.StrategyKind_STRATEGY_KIND_CROSS_EXCHANGE_SPREAD,
		},
		StrategyId: id,
		RequestId:  newRequestID(), // makes the create safe to retry
	})
	if err != nil {
		return explain("create strategy", err)
	}
	version, err := client.Strategies.CreateStrategyVersion(ctx, &usdcarbv1.CreateStrategyVersionRequest{
		Parent: strategy.GetName(),
		Version: &usdcarbv1.StrategyVersion{
			Description: "first cut",
			Parameters: &usdcarbv1.StrategyParameters{Kind: &usdcarbv1.StrategyParameters_CrossExchangeSpread{
				CrossExchangeSpread: &usdcarbv1.CrossExchangeSpreadParams{
					Symbol: "USDC/USDT", VenueA: "binance", VenueB: "kraken",
					EntryBps: 15, ExitBps: 3, Quantity: 10000,
				},
			}},
		},
	})
	if err != nil {
		return explain("create version", err)
	}
	for _, m := range []proto.Message{strategy, version} {
		out, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
		if err != nil {
			return err
		}
		fmt.Println(string(out))
	}
	return nil
}

// explain adds the reason and any bad fields of a failed call to its error.
func explain(what string, err error) error {
	msg := fmt.Sprintf("%s: %v", what, err)
	if reason := usdcarb.Reason(err); reason != "" {
		msg += " [" + reason + "]"
	}
	for _, v := range usdcarb.FieldViolations(err) {
		msg += fmt.Sprintf("\n  %s: %s", v.GetField(), v.GetDescription())
	}
	return fmt.Errorf("%s", msg)
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
