package api

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Transaction is one transactional id, as GET /v1/transactions shows it.
type Transaction struct {
	TransactionalID string `json:"transactional_id"`
	State           string `json:"state"`
	ProducerID      int64  `json:"producer_id"`
	ProducerEpoch   int16  `json:"producer_epoch"`
	TimeoutMs       int32  `json:"timeout_ms"`
	// StartedAt and AgeMs are set while a transaction is open.
	StartedAt  *time.Time   `json:"started_at,omitempty"`
	AgeMs      int64        `json:"age_ms"`
	Partitions []Assignment `json:"partitions"`
	// Hanging: open longer than its timeout, which the coordinator should
	// have aborted by now.
	Hanging bool   `json:"hanging"`
	Error   string `json:"error,omitempty"`
}

func openState(s string) bool {
	return s == "Ongoing" || s == "PrepareCommit" || s == "PrepareAbort" || s == "PrepareEpochFence"
}

// TransactionsPage lists one page of the transactional ids with their
// state; only the page's ids are described.
func (s *Service) TransactionsPage(ctx context.Context, c *Conn, opts ListOptions) (ListPage[Transaction], error) {
	listed, err := c.Admin.ListTransactions(ctx, nil, nil)
	if err != nil {
		return ListPage[Transaction]{}, err
	}
	ids, matching := opts.page(listed.TransactionalIDs())
	out := ListPage[Transaction]{Items: []Transaction{}, Matching: matching}
	if len(ids) == 0 {
		return out, nil
	}
	described, err := c.Admin.DescribeTransactions(ctx, ids...)
	if err != nil {
		return ListPage[Transaction]{}, err
	}
	now := time.Now()
	for _, d := range described.Sorted() {
		out.Items = append(out.Items, transaction(d, now))
	}
	return out, nil
}

// TransactionCounts is how many transactional ids are in each kind of
// state, for the delivery-contract page.
type TransactionCounts struct {
	Open, Committed, Aborted, Hanging int
}

// CountTransactions counts the transactional ids by state from the list
// alone; only the open ones are described (their start time tells whether
// they hang), so the cost follows the open transactions, not every id the
// coordinator remembers.
func (s *Service) CountTransactions(ctx context.Context, c *Conn) (TransactionCounts, error) {
	listed, err := c.Admin.ListTransactions(ctx, nil, nil)
	if err != nil {
		return TransactionCounts{}, err
	}
	var n TransactionCounts
	var open []string
	for id, t := range listed {
		switch {
		case t.State == "CompleteCommit":
			n.Committed++
		case t.State == "CompleteAbort":
			n.Aborted++
		case openState(t.State):
			n.Open++
			open = append(open, id)
		}
	}
	if len(open) == 0 {
		return n, nil
	}
	described, err := c.Admin.DescribeTransactions(ctx, open...)
	if err != nil {
		return TransactionCounts{}, err
	}
	now := time.Now()
	for _, d := range described.Sorted() {
		if transaction(d, now).Hanging {
			n.Hanging++
		}
	}
	return n, nil
}

func transaction(d kadm.DescribedTransaction, now time.Time) Transaction {
	t := Transaction{TransactionalID: d.TxnID, State: d.State, ProducerID: d.ProducerID, ProducerEpoch: d.ProducerEpoch,
		TimeoutMs: d.TimeoutMillis, Partitions: []Assignment{}}
	if d.Err != nil {
		t.Error = d.Err.Error()
	}
	if openState(d.State) && d.StartTimestamp > 0 {
		at := time.UnixMilli(d.StartTimestamp).UTC()
		t.StartedAt = &at
		t.AgeMs = now.Sub(at).Milliseconds()
		t.Hanging = d.State == "Ongoing" && t.AgeMs > int64(d.TimeoutMillis)
	}
	for _, tt := range d.Topics.Sorted() {
		t.Partitions = append(t.Partitions, Assignment{Topic: tt.Topic, Partitions: tt.Partitions})
	}
	return t
}

// AbortTransaction aborts the open transaction of a transactional id the way
// Kafka does when a new producer instance starts with the same id: an
// InitProducerId for the id bumps the producer epoch, which fences the
// running producer (its next request fails with PRODUCER_FENCED) and makes
// the coordinator abort the open transaction. It waits (up to ctx) until
// the abort is complete and answers the transaction's state then.
func (s *Service) AbortTransaction(ctx context.Context, c *Conn, id string) (Transaction, error) {
	d, err := describeTxn(ctx, c, id)
	if err != nil {
		return Transaction{}, err
	}
	if d.State != "Ongoing" {
		return Transaction{}, conflict("transaction %q is %s, not Ongoing: there is nothing to abort", id, d.State)
	}
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID = &id
	req.TransactionTimeoutMillis = d.TimeoutMillis
	req.ProducerID, req.ProducerEpoch = -1, -1
	resp, err := req.RequestWith(ctx, c.Client)
	if err != nil {
		return Transaction{}, err
	}
	// CONCURRENT_TRANSACTIONS: the abort was started and is completing.
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil && !errors.Is(err, kerr.ConcurrentTransactions) {
		return Transaction{}, err
	}
	for {
		d, err = describeTxn(ctx, c, id)
		if err != nil {
			return Transaction{}, err
		}
		if !openState(d.State) {
			return transaction(d, time.Now()), nil
		}
		select {
		case <-ctx.Done():
			return Transaction{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func describeTxn(ctx context.Context, c *Conn, id string) (kadm.DescribedTransaction, error) {
	ds, err := c.Admin.DescribeTransactions(ctx, id)
	if err != nil && !errors.Is(err, kerr.TransactionalIDNotFound) {
		return kadm.DescribedTransaction{}, err
	}
	d, ok := ds[id]
	if !ok || errors.Is(d.Err, kerr.TransactionalIDNotFound) || errors.Is(err, kerr.TransactionalIDNotFound) {
		return kadm.DescribedTransaction{}, notFound("transactional id %q does not exist", id)
	}
	return d, d.Err
}

// ShareGroup is one share group (KIP-932), as GET /v1/share-groups shows it.
type ShareGroup struct {
	Group   string        `json:"group"`
	State   string        `json:"state"`
	Epoch   int32         `json:"epoch"`
	Members []ShareMember `json:"members"`
	Error   string        `json:"error,omitempty"`
}

// ShareMember is a member of a share group.
type ShareMember struct {
	MemberID    string       `json:"member_id"`
	ClientID    string       `json:"client_id"`
	ClientHost  string       `json:"client_host"`
	Subscribed  []string     `json:"subscribed"`
	Assignments []Assignment `json:"assignments"`
}

// ShareGroupsPage lists one page of the share groups with their members;
// only the page's groups are described.
func (s *Service) ShareGroupsPage(ctx context.Context, c *Conn, opts ListOptions) (ListPage[ShareGroup], error) {
	listed, err := c.Admin.ListGroupsByType(ctx, []string{"share"})
	if err != nil {
		return ListPage[ShareGroup]{}, err
	}
	ids, matching := opts.page(listed.Groups())
	page := ListPage[ShareGroup]{Items: []ShareGroup{}, Matching: matching}
	if len(ids) == 0 {
		return page, nil
	}
	described, err := c.Admin.DescribeShareGroups(ctx, ids...)
	if err != nil {
		return ListPage[ShareGroup]{}, err
	}
	for _, id := range ids {
		lg := listed[id]
		g := ShareGroup{Group: lg.Group, State: lg.State, Members: []ShareMember{}}
		if d, ok := described[lg.Group]; ok {
			g.State, g.Epoch = d.GroupState, d.GroupEpoch
			if d.Err != nil {
				g.Error = d.Err.Error()
			}
			for _, m := range d.Members {
				sm := ShareMember{MemberID: m.MemberID, ClientID: m.ClientID, ClientHost: m.ClientHost,
					Subscribed: m.SubscribedTopicNames, Assignments: []Assignment{}}
				if sm.Subscribed == nil {
					sm.Subscribed = []string{}
				}
				for _, t := range m.Assignment.Sorted() {
					sm.Assignments = append(sm.Assignments, Assignment{Topic: t.Topic, Partitions: t.Partitions})
				}
				g.Members = append(g.Members, sm)
			}
		}
		page.Items = append(page.Items, g)
	}
	return page, nil
}
