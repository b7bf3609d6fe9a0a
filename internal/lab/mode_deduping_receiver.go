package lab

// The verifying and deduping receiver: webhook.Receiver checks the
// signature and records the webhook-id in the same database transaction as
// its effect, so every redelivery is answered 200 without changing
// anything.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// DedupingReceiver is the webhook dispatcher delivering to webhook.Receiver.
const DedupingReceiver Mode = "deduping-receiver"

func init() {
	webhookModes[DedupingReceiver] = webhookReceiver{dedupe: true}
	registerMode(&modeSpec{
		mode:     DedupingReceiver,
		producer: producerSpec{acks: kgo.AllISRAcks()},
		promise: promiseSpec{words: func(sc *scenarioSpec) string {
			return "no acknowledged event lost, no " + sc.twice + " (webhook-id recorded with the effect)"
		}},
		consume: func(ctx context.Context, w *worker) error { return dispatchWebhooks(ctx, w) },
	})
}
