package reliability

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"

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
//
// It runs twice: with franz-go as it comes, which sees the
// transaction.version feature and uses transaction version 2 (KIP-890 part
// 2: every EndTxn bumps the epoch, so the late request is fenced by the
// broker whatever the client does), and with franz-go held to transaction
// version 1 (Produce at most v11), where the protocol itself cannot tell a
// late request from a current one and only the client's re-initialisation
// after an unconfirmed EndTxn fences it. The proxy checks which protocol
// each run really spoke. c7_late_test.go shows the version 1 hole and its
// closing request by request.
func TestC7DelayedRequestsCannotLeakIntoLaterTransactions(t *testing.T) {
	if testing.Short() {
		t.Skip("C7 runs for about 80 seconds")
	}
	tv1 := kversion.Stable()
	tv1.SetMaxKeyVersion(0, 11) // Produce: franz-go then keeps to transaction version 1
	for _, tc := range []struct {
		name string
		opts []kgo.Opt
		// want: the highest Produce and EndTxn versions the run must show.
		produce, endTxn int16
	}{
		{name: "tv2", produce: 12, endTxn: 5},
		{name: "tv1", opts: []kgo.Opt{kgo.MaxVersions(tv1)}, produce: 11, endTxn: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := runC7(t, tc.opts...)
			if got := proxy.MaxVersion(0); got != tc.produce {
				t.Errorf("the producer sent Produce up to v%d, want v%d", got, tc.produce)
			}
			if got := proxy.MaxVersion(26); got != tc.endTxn {
				t.Errorf("the producer sent EndTxn up to v%d, want v%d", got, tc.endTxn)
			}
			// Version 1 adds partitions explicitly. (A new franz-go client
			// runs its first transaction at version 1 too, before it has
			// seen the broker's features, so version 2 runs show some.)
			if tc.endTxn < 5 && proxy.MaxVersion(24) < 0 {
				t.Errorf("no AddPartitionsToTxn: transaction version 1 needs it")
			}
		})
	}
}

// runC7 is one run of C7 with the producer's extra options; it returns the
// proxy so the caller can check what went through it.
func runC7(t *testing.T, opts ...kgo.Opt) *holdProxy {
	proxy, err := newHoldProxy("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
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
		append([]kgo.Opt{
			kgo.RequestTimeoutOverhead(time.Second),
			kgo.ProduceRequestTimeout(time.Second),
		}, opts...)...,
	)
	time.Sleep(hold + time.Second) // let the last held request arrive before reading
	t.Logf("faults armed %d, requests held %d, delivered after the client hung up %d", faults, proxy.Held(), proxy.Late())
	if proxy.Held() < txns/6 || proxy.Late() < txns/12 {
		t.Errorf("only %d requests held and %d delivered late: the fault did not fire often enough to prove anything", proxy.Held(), proxy.Late())
	}
	txnkit.CheckOutcomes(t, seeds, "c7", h)
	txnkit.CheckNoHangingTransactions(t, seeds, "c7", 5*time.Second)
	return proxy
}
