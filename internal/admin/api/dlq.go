package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/idem-dev/idem/internal/dlq"
)

// Dead-letter topics of share groups and their redrive, over internal/dlq
// (which `idem dlq` also uses), run with the user's own client so the
// broker's ACLs decide: reading a dead-letter topic needs READ on it,
// redriving needs WRITE on the targets and CREATE/WRITE on the ledger
// topic idem.redrive.<topic>.

// DeadLetterTopics lists the dead-letter topics the user can see, with
// their record counts and the share groups that name them.
func (s *Service) DeadLetterTopics(ctx context.Context, c *Conn) ([]dlq.Topic, error) {
	return dlq.Topics(ctx, c.Client)
}

// ParseDeadLettersRequest reads a page request from the query: limit=K
// (default 50, at most MaxLimit) and the cursor of a previous page's next
// (partition=P&offset=O, both or neither). Malformed numbers are a 400.
func ParseDeadLettersRequest(q url.Values) (dlq.ListOptions, error) {
	opts := dlq.ListOptions{Limit: 50}
	if v := q.Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l <= 0 {
			return opts, badRequest("limit must be a positive integer, not %q", v)
		}
		opts.Limit = min(l, MaxLimit)
	}
	p, o := q.Get("partition"), q.Get("offset")
	if (p == "") != (o == "") {
		return opts, badRequest("give partition and offset together (a page's next), or neither")
	}
	if p != "" {
		pn, err := strconv.ParseInt(p, 10, 32)
		if err != nil || pn < 0 {
			return opts, badRequest("partition must be a non-negative integer, not %q", p)
		}
		on, err := strconv.ParseInt(o, 10, 64)
		if err != nil || on < 0 {
			return opts, badRequest("offset must be a non-negative integer, not %q", o)
		}
		opts.From = &dlq.Cursor{Partition: int32(pn), Offset: on}
	}
	return opts, nil
}

// DeadLetters answers a page of a dead-letter topic's records with their
// source topic, partition and offset, group, delivery count and reason.
// A topic that is not a dead-letter topic is 404 like a missing one.
func (s *Service) DeadLetters(ctx context.Context, c *Conn, topic string, opts dlq.ListOptions) (dlq.Page, error) {
	if err := mustBeDeadLetterTopic(ctx, c, topic); err != nil {
		return dlq.Page{}, err
	}
	return dlq.List(ctx, c.Client, topic, opts)
}

func mustBeDeadLetterTopic(ctx context.Context, c *Conn, topic string) error {
	ok, err := dlq.IsDeadLetterTopic(ctx, c.Client, topic)
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return notFound("topic %q does not exist", topic)
	}
	if err != nil {
		return err
	}
	if !ok {
		return notFound("%q is not a dead-letter topic (no errors.deadletterqueue.group.enable=true, no dlq. prefix)", topic)
	}
	return nil
}

// RedriveRequest is the body of POST /v1/dead-letters/{topic}/redrive;
// an empty body redrives everything back to the sources.
type RedriveRequest struct {
	// Target is the topic to move the records to; "" sends each back to
	// its source topic and partition.
	Target string `json:"target"`
	// Limit, when given, moves at most that many (≥ 1); the rest stay for
	// a later redrive.
	Limit *int `json:"limit"`
}

// RedriveResult is what a redrive answers: the run's counts.
type RedriveResult struct {
	Topic  string `json:"topic"`
	Target string `json:"target,omitempty"`
	dlq.Result
}

// Redrive moves a dead-letter topic's records back once (see dlq.Redrive):
// records an earlier run moved are not moved again, and a run cut short
// (the request's timeout, a crash) is finished by the next. A redrive of
// the same topic already running answers 409.
func (s *Service) Redrive(ctx context.Context, c *Conn, topic string, req RedriveRequest) (RedriveResult, error) {
	res := RedriveResult{Topic: topic, Target: req.Target}
	opts := dlq.Options{Target: req.Target}
	if req.Limit != nil {
		if *req.Limit <= 0 {
			return res, badRequest("limit must be a positive integer, not %d", *req.Limit)
		}
		opts.Limit = *req.Limit
	}
	if err := mustBeDeadLetterTopic(ctx, c, topic); err != nil {
		return res, err
	}
	if req.Target != "" {
		if _, err := dlq.IsDeadLetterTopic(ctx, c.Client, req.Target); errors.Is(err, kerr.UnknownTopicOrPartition) {
			return res, badRequest("target topic %q does not exist", req.Target)
		} else if err != nil {
			return res, err
		}
	}
	r, err := dlq.Redrive(ctx, c.Client, topic, opts)
	res.Result = r
	if errors.Is(err, dlq.ErrRedriveRunning) {
		return res, conflict("a redrive of %s is already running; try again when it has finished", topic)
	}
	return res, err
}

// decodeOptional is decode for a body that may be left out.
func decodeOptional(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return decode(r, v)
}
