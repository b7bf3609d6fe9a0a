package lab

// The worker of the webhook modes: a webhook dispatcher (SQLite store in
// the mode's directory) delivering the input topic to the lab's receiver.
// Its planned crash comes right after a delivery the receiver answered 2xx
// and before the dispatcher records it: the moment a crash makes the
// dispatcher send it again.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/webhook"
	"github.com/idem-dev/idem/webhook/sqlitestore"
)

// labRetries outlast the receiver's faults (a kill is 700 ms down).
var labRetries = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
	time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second}

// dispatchWebhooks runs the dispatcher until the producer is done and every
// event's delivery has succeeded (or died: a loss the lab then reports).
func dispatchWebhooks(ctx context.Context, w *worker) error {
	kind := webhookModes[w.spec.Mode]
	s, err := sqlitestore.Open(ctx, filepath.Join(filepath.Dir(w.spec.Deliveries), "dispatcher.db"), sqlitestore.Config{})
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Endpoint(ctx, "lab"); errors.Is(err, webhook.ErrEndpointNotFound) {
		if _, err := webhook.AddEndpoint(ctx, s, webhook.EndpointSpec{ID: "lab", URL: w.spec.Sink, Secret: labWebhookSecret, Ordered: kind.ordered}, time.Now()); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	client := &http.Client{Transport: &crashPoint{w: w, next: tr},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer tr.CloseIdleConnections()
	dp, err := webhook.New(s, webhook.Config{ClientOpts: w.clientOpts(), Topic: w.spec.Topic, Group: w.spec.Group,
		RequestTimeout: webhookRequestTimeout, Lease: 3 * time.Second, Retries: labRetries, PollInterval: 20 * time.Millisecond,
		Client: client, Name: "lab-worker", Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- dp.Run(dctx) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-stopped:
			return fmt.Errorf("dispatcher stopped: %v", err)
		case <-ctx.Done():
			cancel()
			<-stopped
			return ctx.Err()
		case <-tick.C:
		}
		// Settled, for the lab, means taken from Kafka (the offsets the
		// dispatcher stores with the deliveries) and delivered.
		offsets, err := s.Offsets().LoadOffsets(ctx, w.spec.Group)
		if err != nil {
			continue
		}
		for p, next := range offsets[w.spec.Topic] {
			w.settled(&kgo.Record{Partition: p, Offset: next - 1})
		}
		if !w.done() {
			continue
		}
		pending, err := s.Deliveries(ctx, webhook.DeliveryFilter{Status: webhook.StatusPending, Limit: 1})
		if err == nil && len(pending) == 0 {
			cancel()
			return <-stopped
		}
	}
}

// crashPoint is the dispatcher's HTTP transport with the worker's
// bookkeeping: each request is a delivery, and the planned crash comes
// after a 2xx answer, before the dispatcher can record it.
type crashPoint struct {
	w    *worker
	next http.RoundTripper
	mu   sync.Mutex
}

func (c *crashPoint) RoundTrip(req *http.Request) (*http.Response, error) {
	var e Event
	if req.GetBody != nil {
		if body, err := req.GetBody(); err == nil {
			b, _ := io.ReadAll(body)
			json.Unmarshal(b, &e)
		}
	}
	resp, err := c.next.RoundTrip(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	crashHere := c.w.delivered(&kgo.Record{Partition: -1, Offset: -1}, e)
	if crashHere && err == nil && resp.StatusCode/100 == 2 {
		crash()
	}
	return resp, err
}
