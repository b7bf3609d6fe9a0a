package api

// ListTransactions, versions 0–1 (KIP-664; v1 adds the KIP-994 duration
// filter: only transactions open at least that long). State filters are
// Kafka's state names; unknown ones are echoed in UnknownStateFilters and
// match nothing, as Kafka does.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/txn"
)

func init() { register(66, 0, 1, handleListTransactions) }

func handleListTransactions(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	if env.Txn == nil {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	var f txn.ListFilter
	for _, name := range req.StateFilters {
		s, ok := txn.ParseState(name)
		if !ok {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, name)
			continue
		}
		f.States = append(f.States, s)
	}
	if len(req.StateFilters) > 0 && len(f.States) == 0 {
		return resp, nil // only unknown states asked for: nothing matches
	}
	f.ProducerIDs = req.ProducerIDFilters
	if req.Version >= 1 && req.DurationFilterMillis >= 0 {
		f.MinDuration = max(time.Duration(req.DurationFilterMillis)*time.Millisecond, time.Nanosecond)
	}
	infos, err := env.Txn.List(f)
	if err != nil {
		resp.ErrorCode = errorCode(err, coordinatorAPIs)
		return resp, nil
	}
	for _, info := range infos {
		if !allowedTxnID(env, conn, security.OpDescribe, info.TransactionalID) {
			continue // not listed: the principal may not see it
		}
		st := kmsg.NewListTransactionsResponseTransactionState()
		st.TransactionalID = info.TransactionalID
		st.ProducerID = info.ProducerID
		st.TransactionState = info.State.String()
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return resp, nil
}
