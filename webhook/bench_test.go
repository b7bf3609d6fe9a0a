package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/webhook"
)

// The benchmarks measure the dispatcher end to end: the embedded broker, the
// store, a local receiver that answers at once over TCP. Run them with
//
//	go test -run '^$' -bench 'Dispatcher' -benchtime 1x -count 3 ./webhook
//
// and read the custom metrics (deliveries/s, p50/p99 first-attempt latency).

// fastReceiver answers 204 at once and counts; it notes the latency from
// the produce time in the payload to the receipt.
type fastReceiver struct {
	srv      *httptest.Server
	got      atomic.Int64
	mu       sync.Mutex
	latency  map[string][]time.Duration // endpoint → produce-to-receipt
	failPath string                     // this endpoint always fails (slowly)
}

func newFastReceiver(b testing.TB) *fastReceiver {
	r := &fastReceiver{latency: map[string][]time.Duration{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if req.URL.Path == r.failPath {
			time.Sleep(50 * time.Millisecond)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var p struct {
			Data struct {
				SentNs int64 `json:"sent_ns"`
			}
		}
		json.Unmarshal(body, &p)
		if p.Data.SentNs > 0 {
			d := time.Since(time.Unix(0, p.Data.SentNs))
			r.mu.Lock()
			r.latency[req.URL.Path] = append(r.latency[req.URL.Path], d)
			r.mu.Unlock()
		}
		r.got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(r.srv.Close)
	return r
}

func benchPayload(i int, sentNs int64) []byte {
	return []byte(`{"type":"order.created","timestamp":"2026-12-02T10:00:00Z","data":{"n":` + strconv.Itoa(i) + `,"sent_ns":` + strconv.FormatInt(sentNs, 10) + `,"pad":"` +
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `"}}`)
}

// BenchmarkDispatcherThroughput: events already in the topic, one endpoint
// that answers at once; deliveries per second from the dispatcher's start
// to the last receipt, and to the last result recorded.
func BenchmarkDispatcherThroughput(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			const n = 20000
			for range b.N {
				b.StopTimer()
				r := newRig(b, kind, withConfig(func(c *webhook.Config) { c.PollInterval = 200 * time.Millisecond }), deferStart())
				rx := newFastReceiver(b)
				r.addEndpoint(webhook.EndpointSpec{ID: "fast", URL: rx.srv.URL + "/fast"})
				cl := r.b.Client(b, kgo.ProducerLinger(5*time.Millisecond))
				var recs []*kgo.Record
				for i := range n {
					recs = append(recs, &kgo.Record{Topic: r.topic, Key: []byte(strconv.Itoa(i % 97)), Value: benchPayload(i, 0)})
				}
				if err := cl.ProduceSync(testkit.Context(b, time.Minute), recs...).FirstErr(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				r.start(b)
				var ingested time.Duration
				for i := 0; rx.got.Load() < n; i++ {
					if ingested == 0 && i%10 == 0 && r.ingested(b) >= n { // a store query every 20 ms
						ingested = time.Since(start)
					}
					time.Sleep(2 * time.Millisecond)
				}
				received := time.Since(start)
				if ingested == 0 {
					ingested = received
				}
				for len(r.deliveries(webhook.DeliveryFilter{Status: webhook.StatusPending, Limit: 1})) > 0 {
					time.Sleep(5 * time.Millisecond)
				}
				recorded := time.Since(start)
				b.StopTimer()
				r.stop()
				b.ReportMetric(float64(n)/ingested.Seconds(), "ingested/s")
				b.ReportMetric(float64(n)/received.Seconds(), "delivered/s")
				b.ReportMetric(float64(n)/recorded.Seconds(), "recorded/s")
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}

// deferStart leaves the dispatcher to the benchmark, which starts it once
// the topic is filled.
func deferStart() rigOpt { return func(r *rig) { r.noStart = true } }

// BenchmarkDispatcherLatency produces at a fixed rate (1,000 events/s for
// 5 s) and reports the first-attempt latency from the produce call to the
// receipt, p50 and p99; with a second endpoint that fails every request
// (slowly) when failing is on, to show it does not slow the healthy one.
func BenchmarkDispatcherLatency(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		for _, failing := range []bool{false, true} {
			name := kind
			if failing {
				name += "/with-failing-endpoint"
			}
			b.Run(name, func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					var toSend []time.Duration // produce to the start of the first attempt
					var sendMu sync.Mutex
					r := newRig(b, kind, withConfig(func(c *webhook.Config) {
						c.Retries = []time.Duration{time.Second, time.Second, time.Second}
						c.OnAttempt = func(a webhook.AttemptResult) {
							if a.EndpointID != "fast" || a.Attempt != 1 {
								return
							}
							if ns, err := strconv.ParseInt(a.MessageID, 10, 64); err == nil {
								sendMu.Lock()
								toSend = append(toSend, a.Started.Sub(time.Unix(0, ns)))
								sendMu.Unlock()
							}
						}
					}))
					rx := newFastReceiver(b)
					r.addEndpoint(webhook.EndpointSpec{ID: "fast", URL: rx.srv.URL + "/fast"})
					if failing {
						rx.failPath = "/failing"
						r.addEndpoint(webhook.EndpointSpec{ID: "failing", URL: rx.srv.URL + "/failing"})
					}
					cl := r.b.Client(b, kgo.ProducerLinger(0))
					// Warm up: the group has joined once the first event is through.
					cl.ProduceSync(context.Background(), &kgo.Record{Topic: r.topic, Value: benchPayload(-1, 0)})
					for rx.got.Load() < 1 {
						time.Sleep(5 * time.Millisecond)
					}
					rx.mu.Lock()
					rx.latency = map[string][]time.Duration{}
					rx.mu.Unlock()
					b.StartTimer()
					const rate, seconds = 1000, 5
					tick := time.NewTicker(time.Second / rate)
					var wg sync.WaitGroup
					for i := range rate * seconds {
						<-tick.C
						wg.Add(1)
						now := time.Now().UnixNano()
						cl.Produce(context.Background(), &kgo.Record{Topic: r.topic, Key: []byte(strconv.Itoa(i % 97)), Value: benchPayload(i, now),
							Headers: []kgo.RecordHeader{{Key: "idempotency-key", Value: []byte(strconv.FormatInt(now, 10))}}},
							func(_ *kgo.Record, err error) {
								defer wg.Done()
								if err != nil {
									b.Error(err)
								}
							})
					}
					tick.Stop()
					wg.Wait()
					deadline := time.Now().Add(30 * time.Second)
					for rx.got.Load() < rate*seconds+1 && time.Now().Before(deadline) {
						time.Sleep(5 * time.Millisecond)
					}
					b.StopTimer()
					rx.mu.Lock()
					lat := slices.Clone(rx.latency["/fast"])
					rx.mu.Unlock()
					r.stop()
					if len(lat) < rate*seconds {
						b.Fatalf("only %d of %d events received", len(lat), rate*seconds)
					}
					slices.Sort(lat)
					b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
					b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
					b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
					sendMu.Lock()
					slices.Sort(toSend)
					if len(toSend) > 0 {
						b.ReportMetric(float64(toSend[len(toSend)/2])/1e6, "p50-to-send-ms")
						b.ReportMetric(float64(toSend[len(toSend)*99/100])/1e6, "p99-to-send-ms")
					}
					sendMu.Unlock()
					b.ReportMetric(0, "ns/op")
					if failing {
						atts, _ := r.store.Attempts(context.Background(), webhook.AttemptFilter{EndpointID: "failing", Limit: 1})
						b.Logf("failing endpoint: %d+ attempts logged, last %+v", len(atts), fmt.Sprint(atts))
					}
				}
			})
		}
	}
}

// BenchmarkDispatcherIngest: events already in the topic, one endpoint
// that is disabled (its deliveries are recorded, none sent): how fast
// records become deliveries, offsets included.
func BenchmarkDispatcherIngest(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			const n = 20000
			for range b.N {
				b.StopTimer()
				r := newRig(b, kind, deferStart())
				r.addEndpoint(webhook.EndpointSpec{ID: "off", URL: "http://127.0.0.1:9/", Disabled: true})
				cl := r.b.Client(b, kgo.ProducerLinger(5*time.Millisecond))
				var recs []*kgo.Record
				for i := range n {
					recs = append(recs, &kgo.Record{Topic: r.topic, Value: benchPayload(i, 0)})
				}
				if err := cl.ProduceSync(testkit.Context(b, time.Minute), recs...).FirstErr(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				r.start(b)
				for {
					st, err := r.store.Stats(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					if st.Pending["off"] >= n {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				took := time.Since(start)
				b.StopTimer()
				r.stop()
				b.ReportMetric(float64(n)/took.Seconds(), "ingested/s")
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}
