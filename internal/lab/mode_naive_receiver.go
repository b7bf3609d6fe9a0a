package lab

// The naive receiver: the dispatcher delivers at least once, and the
// receiver verifies the signature and applies every request it is sent.
// Every retry of a delivery whose answer was lost (a timeout, a reset, a
// crash of the dispatcher after the 2xx) changes the world again.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// NaiveReceiver is the webhook dispatcher delivering to a receiver that
// does not deduplicate.
const NaiveReceiver Mode = "naive-receiver"

func init() {
	webhookModes[NaiveReceiver] = webhookReceiver{}
	registerMode(&modeSpec{
		mode:     NaiveReceiver,
		producer: producerSpec{acks: kgo.AllISRAcks()},
		promise: promiseSpec{mayDuplicate: true, words: func(sc *scenarioSpec) string {
			return "no acknowledged event lost; duplicates change the world (at-least-once delivery)"
		}},
		consume: func(ctx context.Context, w *worker) error { return dispatchWebhooks(ctx, w) },
	})
}
