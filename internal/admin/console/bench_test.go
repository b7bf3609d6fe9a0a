package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
)

// pageEvery is how often the benchmark's reader loads the overview and
// the next page of the message browser: an operator refreshing both every
// second, busier than a person.
const pageEvery = time.Second

// BenchmarkConsoleCostOnProduce measures acks=all produce throughput with
// the console closed, and open (see pageEvery). The target: the
// open console costs at most 5 %. Runs must last several seconds, and on
// a shared machine closed and open runs should alternate:
//
//	go test -c -o console.test ./internal/admin/console
//	for m in closed open closed open; do ./console.test -test.run '^$' -test.bench ConsoleCost/$m -test.benchtime 10000000x; done
func BenchmarkConsoleCostOnProduce(b *testing.B) {
	for _, open := range []bool{false, true} {
		name := "closed"
		if open {
			name = "open"
		}
		b.Run(name, func(b *testing.B) {
			br := brokertest.Run(b, broker.WithTopics("load"), broker.WithProperty("num.partitions", "4"))
			ctx := context.Background()
			producer := br.Client(b)
			value := make([]byte, 200)
			var wg sync.WaitGroup
			stop := make(chan struct{})
			pages := 0
			if open {
				wg.Go(func() {
					tick := time.NewTicker(pageEvery)
					defer tick.Stop()
					for offset := 0; ; offset += 20 {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						for _, path := range []string{"/", fmt.Sprintf("/topics/load/partitions/0?offset=%d", offset)} {
							resp, err := http.Get(br.AdminURL() + path)
							if err != nil {
								b.Error(err)
								return
							}
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							pages++
						}
					}
				})
			}
			var errs sync.Map
			b.ResetTimer()
			for range b.N {
				producer.Produce(ctx, &kgo.Record{Topic: "load", Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						errs.Store(err.Error(), true)
					}
				})
			}
			if err := producer.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
			errs.Range(func(k, _ any) bool { b.Errorf("produce: %v", k); return true })
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(pages), "pages")
		})
	}
}
