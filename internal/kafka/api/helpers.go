package api

// Small helpers shared by the API files.

import (
	"context"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
)

// untilClosing derives a context that also ends when the broker starts
// shutting down, so a request waiting for a rebalance (JoinGroup, SyncGroup)
// does not hold up Close until the drain timeout. The goroutine ends with
// cancel.
func untilClosing(ctx context.Context, closing <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if closing != nil {
		go func() {
			select {
			case <-closing:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

// deref reads a nullable string field; null reads as "".
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// clientHost formats the peer as Kafka does in DescribeGroups: "/1.2.3.4".
func clientHost(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return "/" + host
	}
	return "/" + remote
}

// parseInt parses a validated numeric config value, falling back to def.
func parseInt(s string, def int64) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return def
	}
	return n
}

// partitionAnswers collects the per-partition codes of a request that lists
// topics and their partitions and hands the partitions that exist to the
// group coordinator in one call (OffsetCommit, TxnOffsetCommit,
// OffsetDelete).
type partitionAnswers struct {
	codes  [][]int16 // codes[i][j] answers partition j of request topic i; 0 until known
	handed [][2]int  // (topic, partition) index of each partition handed on, in order
	group  int16     // a group-level error, for every handed partition
	// denied, if set, answers every partition (a group or transactional
	// id the principal may not use): nothing is handed on.
	denied int16
}

func newPartitionAnswers(topics int) *partitionAnswers {
	return &partitionAnswers{codes: make([][]int16, topics)}
}

// topic makes room for the answers of request topic i.
func (a *partitionAnswers) topic(i, partitions int) {
	a.codes[i] = make([]int16, partitions)
}

// hand reports whether partition j of request topic i exists and goes to the
// coordinator; one that does not is answered UNKNOWN_TOPIC_OR_PARTITION now.
func (a *partitionAnswers) hand(env *Env, i, j int, topic string, partition int32) bool {
	if env.PartitionExists != nil && !env.PartitionExists(topic, partition) {
		a.codes[i][j] = kerr.UnknownTopicOrPartition.Code
		return false
	}
	a.handed = append(a.handed, [2]int{i, j})
	return true
}

// settle answers the handed partitions from the coordinator: with err's code
// for all of them when err is set, else each with its own error from errs
// (in the order they were handed).
func (a *partitionAnswers) settle(errs []error, err error, fam apiFamily) {
	if err != nil {
		a.fail(errorCode(err, fam))
		return
	}
	for k, at := range a.handed {
		a.codes[at[0]][at[1]] = errorCode(errs[k], fam)
	}
}

// deny answers partition j of request topic i TOPIC_AUTHORIZATION_FAILED.
func (a *partitionAnswers) deny(i, j int) { a.codes[i][j] = kerr.TopicAuthorizationFailed.Code }

// fail answers every handed partition with code.
func (a *partitionAnswers) fail(code int16) { a.group = code }

// code is the answer for partition j of request topic i.
func (a *partitionAnswers) code(i, j int) int16 {
	if a.denied != 0 {
		return a.denied
	}
	if c := a.codes[i][j]; c != 0 {
		return c
	}
	return a.group
}
