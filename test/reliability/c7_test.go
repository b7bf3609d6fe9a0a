package reliability

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/testkit/txnkit"
	"github.com/idem-dev/idem/internal/verify"
)

// TestC7DelayedRequestsCannotLeakIntoLaterTransactions is C7 of
// docs/reliability.md, the KAFKA-17754 shape: a transactional producer
// runs back-to-back transactions on two partitions through a proxy that now
// and then holds a Produce or an EndTxn well past the client's timeout and
// then delivers it anyway, while the client has moved on to its next
// transaction. No aborted value may become visible, no committed value may be
// lost and no transaction may be half visible; a late request must be fenced
// (by epoch) or rejected (not in the ongoing transaction), never applied to
// a later transaction.
func TestC7DelayedRequestsCannotLeakIntoLaterTransactions(t *testing.T) {
	if testing.Short() {
		t.Skip("C7 runs for about 40 seconds")
	}
	proxy, err := newHoldProxy("")
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	// Every connection goes through the proxy: the broker advertises it
	// (so Addr() is the proxy's too; the listener gets a port chosen here).
	listen, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	proxy.SetTarget(listen)
	brokertest.Run(t, append(brokerOptions(), broker.WithKafkaAddr(listen), broker.WithAdvertisedAddr(proxy.Addr()))...)
	seeds := []string{proxy.Addr()}
	txnkit.CreateTopics(t, seeds, 2, "c7")

	const hold = 3 * time.Second // the client gives up after about 1 s
	txns := testkit.Soak(60, 600)
	h := txnkit.NewHistory()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Soak(50*time.Second, 10*time.Minute))
	defer cancel()
	faults := 0
	txnkit.Producer(ctx, t, seeds, "c7", "c7-producer", txns, h, func(i int) {
		switch i % 6 {
		case 2: // the next Produce is delayed: it lands in a later transaction's time
			proxy.Arm(0, hold)
			faults++
		case 4: // the next EndTxn is delayed: the client retries, aborts, starts anew
			proxy.Arm(26, hold)
			faults++
		}
	},
		kgo.RequestTimeoutOverhead(time.Second),
		kgo.ProduceRequestTimeout(time.Second),
	)
	time.Sleep(hold + time.Second) // let the last held request arrive before reading
	t.Logf("faults armed %d, requests held %d, delivered after the client hung up %d", faults, proxy.Held(), proxy.Late())
	if proxy.Held() < txns/6 || proxy.Late() < txns/12 {
		t.Errorf("only %d requests held and %d delivered late: the fault did not fire often enough to prove anything", proxy.Held(), proxy.Late())
	}
	txnkit.CheckOutcomes(t, seeds, "c7", h)
	txnkit.CheckNoHangingTransactions(t, seeds, "c7", 5*time.Second)
}
