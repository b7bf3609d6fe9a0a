package lab

// The deduping receiver behind an ordered endpoint: the dispatcher sends a
// key's next event only after the previous one succeeded, so each key's
// events are applied in order, while different keys proceed in parallel.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// OrderedReceiver is DedupingReceiver with ordering per key on the endpoint.
const OrderedReceiver Mode = "ordered-receiver"

func init() {
	webhookModes[OrderedReceiver] = webhookReceiver{dedupe: true, ordered: true}
	registerMode(&modeSpec{
		mode:     OrderedReceiver,
		producer: producerSpec{acks: kgo.AllISRAcks()},
		promise: promiseSpec{inOrder: true, words: func(sc *scenarioSpec) string {
			return "no acknowledged event lost, no " + sc.twice + ", each key's events applied in order"
		}},
		consume: func(ctx context.Context, w *worker) error { return dispatchWebhooks(ctx, w) },
	})
}
