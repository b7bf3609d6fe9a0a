package api

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/catalog"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/group"
	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/partition"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/share"
	"github.com/idem-dev/idem/internal/topics"
	"github.com/idem-dev/idem/internal/txn"
)

// sentinelPackages are the packages whose errors reach the API layer.
var sentinelPackages = []string{"group", "txn", "share", "partition", "topics", "catalog", "logstore", "config", "security"}

// familyCodes is the answer on each API family, in the order of apiFamily:
// data APIs, Produce, coordinator APIs, coordinator versions before KIP-588.
type familyCodes [4]*kerr.Error

func everywhere(e *kerr.Error) familyCodes { return familyCodes{e, e, e, e} }

var (
	cna = kerr.CoordinatorNotAvailable
	ner = kerr.NotEnoughReplicas
	ipe = kerr.InvalidProducerEpoch
)

// wantSentinelCodes pins the Kafka code of every exported sentinel of the
// internal packages, by its name in the source.
var wantSentinelCodes = map[string]struct {
	err  error
	want familyCodes
}{
	"group.ErrClosed":                   {group.ErrClosed, everywhere(cna)},
	"group.ErrInvalidGroupID":           {group.ErrInvalidGroupID, everywhere(kerr.InvalidGroupID)},
	"group.ErrInvalidSessionTimeout":    {group.ErrInvalidSessionTimeout, everywhere(kerr.InvalidSessionTimeout)},
	"group.ErrInconsistentProtocol":     {group.ErrInconsistentProtocol, everywhere(kerr.InconsistentGroupProtocol)},
	"group.ErrMemberIDRequired":         {group.ErrMemberIDRequired, everywhere(kerr.MemberIDRequired)},
	"group.ErrUnknownMember":            {group.ErrUnknownMember, everywhere(kerr.UnknownMemberID)},
	"group.ErrIllegalGeneration":        {group.ErrIllegalGeneration, everywhere(kerr.IllegalGeneration)},
	"group.ErrRebalanceInProgress":      {group.ErrRebalanceInProgress, everywhere(kerr.RebalanceInProgress)},
	"group.ErrFencedInstanceID":         {group.ErrFencedInstanceID, everywhere(kerr.FencedInstanceID)},
	"group.ErrGroupNotFound":            {group.ErrGroupNotFound, everywhere(kerr.GroupIDNotFound)},
	"group.ErrNonEmptyGroup":            {group.ErrNonEmptyGroup, everywhere(kerr.NonEmptyGroup)},
	"group.ErrSubscribedToTopic":        {group.ErrSubscribedToTopic, everywhere(kerr.GroupSubscribedToTopic)},
	"group.ErrOffsetMetadataTooLarge":   {group.ErrOffsetMetadataTooLarge, everywhere(kerr.OffsetMetadataTooLarge)},
	"group.ErrFencedMemberEpoch":        {group.ErrFencedMemberEpoch, everywhere(kerr.FencedMemberEpoch)},
	"group.ErrStaleMemberEpoch":         {group.ErrStaleMemberEpoch, everywhere(kerr.StaleMemberEpoch)},
	"group.ErrUnreleasedInstanceID":     {group.ErrUnreleasedInstanceID, everywhere(kerr.UnreleasedInstanceID)},
	"group.ErrUnsupportedAssignor":      {group.ErrUnsupportedAssignor, everywhere(kerr.UnsupportedAssignor)},
	"group.ErrInvalidRegularExpression": {group.ErrInvalidRegularExpression, everywhere(kerr.InvalidRegularExpression)},
	"group.ErrGroupMaxSize":             {group.ErrGroupMaxSize, everywhere(kerr.GroupMaxSizeReached)},
	"group.ErrInvalidRequest":           {group.ErrInvalidRequest, everywhere(kerr.InvalidRequest)},
	"group.ErrUnsupportedVersion":       {group.ErrUnsupportedVersion, everywhere(kerr.UnsupportedVersion)},
	// Without a cause it wraps; TestCoordinatorLogFailuresMapByTheirCause
	// covers the causes.
	"group.ErrStorage":             {group.ErrStorage, everywhere(cna)},
	"share.ErrStorage":             {share.ErrStorage, everywhere(cna)},
	"share.ErrClosed":              {share.ErrClosed, everywhere(cna)},
	"share.ErrInvalidRequest":      {share.ErrInvalidRequest, everywhere(kerr.InvalidRequest)},
	"share.ErrInvalidGroupID":      {share.ErrInvalidGroupID, everywhere(kerr.InvalidGroupID)},
	"share.ErrGroupNotFound":       {share.ErrGroupNotFound, everywhere(kerr.GroupIDNotFound)},
	"share.ErrNonEmptyGroup":       {share.ErrNonEmptyGroup, everywhere(kerr.NonEmptyGroup)},
	"share.ErrGroupMaxSize":        {share.ErrGroupMaxSize, everywhere(kerr.GroupMaxSizeReached)},
	"share.ErrUnknownMember":       {share.ErrUnknownMember, everywhere(kerr.UnknownMemberID)},
	"share.ErrFencedMemberEpoch":   {share.ErrFencedMemberEpoch, everywhere(kerr.FencedMemberEpoch)},
	"share.ErrSessionNotFound":     {share.ErrSessionNotFound, everywhere(kerr.ShareSessionNotFound)},
	"share.ErrInvalidSessionEpoch": {share.ErrInvalidSessionEpoch, everywhere(kerr.InvalidShareSessionEpoch)},
	"share.ErrSessionLimit":        {share.ErrSessionLimit, everywhere(kerr.ShareSessionLimitReached)},
	"share.ErrInvalidRecordState":  {share.ErrInvalidRecordState, everywhere(kerr.InvalidRecordState)},
	"share.ErrUnknownTopic":        {share.ErrUnknownTopic, everywhere(kerr.UnknownTopicID)},
	"share.ErrInvalidConfig":       {share.ErrInvalidConfig, everywhere(kerr.InvalidConfig)},
	"share.ErrInvalidOffset":       {share.ErrInvalidOffset, everywhere(kerr.InvalidRequest)},

	"txn.ErrConcurrentTransactions":    {txn.ErrConcurrentTransactions, familyCodes{kerr.ConcurrentTransactions, ner, kerr.ConcurrentTransactions, kerr.ConcurrentTransactions}},
	"txn.ErrProducerFenced":            {txn.ErrProducerFenced, familyCodes{kerr.ProducerFenced, ipe, kerr.ProducerFenced, ipe}},
	"txn.ErrInvalidProducerEpoch":      {txn.ErrInvalidProducerEpoch, everywhere(ipe)},
	"txn.ErrInvalidTxnState":           {txn.ErrInvalidTxnState, everywhere(kerr.InvalidTxnState)},
	"txn.ErrInvalidProducerIDMapping":  {txn.ErrInvalidProducerIDMapping, everywhere(kerr.InvalidProducerIDMapping)},
	"txn.ErrInvalidTransactionTimeout": {txn.ErrInvalidTransactionTimeout, everywhere(kerr.InvalidTransactionTimeout)},
	"txn.ErrTransactionalIDNotFound":   {txn.ErrTransactionalIDNotFound, everywhere(kerr.TransactionalIDNotFound)},
	"txn.ErrInvalidRequest":            {txn.ErrInvalidRequest, everywhere(kerr.InvalidRequest)},
	"txn.ErrClosed":                    {txn.ErrClosed, familyCodes{cna, ner, cna, cna}},
	"txn.ErrStorage":                   {txn.ErrStorage, familyCodes{cna, ner, cna, cna}},
	"txn.ErrUnknownPartition":          {txn.ErrUnknownPartition, everywhere(kerr.UnknownTopicOrPartition)},

	"partition.ErrOutOfOrderSequence":   {partition.ErrOutOfOrderSequence, everywhere(kerr.OutOfOrderSequenceNumber)},
	"partition.ErrInvalidProducerEpoch": {partition.ErrInvalidProducerEpoch, everywhere(ipe)},
	"partition.ErrCorruptBatch":         {partition.ErrCorruptBatch, everywhere(kerr.CorruptMessage)},
	"partition.ErrInvalidRecord":        {partition.ErrInvalidRecord, everywhere(kerr.InvalidRecord)},
	"partition.ErrInvalidTxnState":      {partition.ErrInvalidTxnState, everywhere(kerr.InvalidTxnState)},
	"partition.ErrProducerFenced":       {partition.ErrProducerFenced, familyCodes{kerr.ProducerFenced, ipe, kerr.ProducerFenced, ipe}},
	"partition.ErrClosed":               {partition.ErrClosed, everywhere(kerr.NotLeaderForPartition)},

	"topics.ErrUnknownPartition": {topics.ErrUnknownPartition, everywhere(kerr.UnknownTopicOrPartition)},
	"topics.ErrOffline":          {topics.ErrOffline, everywhere(kerr.KafkaStorageError)},
	"topics.ErrLoading":          {topics.ErrLoading, everywhere(kerr.NotLeaderForPartition)},
	"topics.ErrManagerClosed":    {topics.ErrManagerClosed, everywhere(kerr.NotLeaderForPartition)},

	"catalog.ErrTopicExists":       {catalog.ErrTopicExists, everywhere(kerr.TopicAlreadyExists)},
	"catalog.ErrUnknownTopic":      {catalog.ErrUnknownTopic, everywhere(kerr.UnknownTopicOrPartition)},
	"catalog.ErrInvalidTopic":      {catalog.ErrInvalidTopic, everywhere(kerr.InvalidTopicException)},
	"catalog.ErrInvalidPartitions": {catalog.ErrInvalidPartitions, everywhere(kerr.InvalidPartitions)},
	"catalog.ErrInvalidConfig":     {catalog.ErrInvalidConfig, everywhere(kerr.InvalidConfig)},

	"logstore.ErrCorrupt":          {logstore.ErrCorrupt, everywhere(kerr.KafkaStorageError)},
	"logstore.ErrPoisoned":         {logstore.ErrPoisoned, everywhere(kerr.KafkaStorageError)},
	"logstore.ErrClosed":           {logstore.ErrClosed, everywhere(kerr.NotLeaderForPartition)},
	"logstore.ErrInvalidBatch":     {logstore.ErrInvalidBatch, everywhere(kerr.InvalidRecord)},
	"logstore.ErrOffsetOutOfRange": {logstore.ErrOffsetOutOfRange, everywhere(kerr.OffsetOutOfRange)},
	"logstore.ErrNoSpace":          {logstore.ErrNoSpace, everywhere(kerr.KafkaStorageError)},

	"config.ErrUnknown":  {config.ErrUnknown, everywhere(kerr.InvalidConfig)},
	"config.ErrInvalid":  {config.ErrInvalid, everywhere(kerr.InvalidConfig)},
	"config.ErrReadOnly": {config.ErrReadOnly, everywhere(kerr.InvalidRequest)},

	"security.ErrStorage":                {security.ErrStorage, everywhere(kerr.KafkaStorageError)},
	"security.ErrClosed":                 {security.ErrClosed, everywhere(kerr.NotController)},
	"security.ErrNotFound":               {security.ErrNotFound, everywhere(kerr.ResourceNotFound)},
	"security.ErrDuplicate":              {security.ErrDuplicate, everywhere(kerr.DuplicateResource)},
	"security.ErrUnacceptableCredential": {security.ErrUnacceptableCredential, everywhere(kerr.UnacceptableCredential)},
	"security.ErrUnsupportedMechanism":   {security.ErrUnsupportedMechanism, everywhere(kerr.UnsupportedSaslMechanism)},
	"security.ErrBadSASL":                {security.ErrBadSASL, everywhere(kerr.SaslAuthenticationFailed)},
	"security.ErrAuthentication":         {security.ErrAuthentication, everywhere(kerr.SaslAuthenticationFailed)},
	"security.ErrInvalidACL":             {security.ErrInvalidACL, everywhere(kerr.InvalidRequest)},
	"security.ErrInvalidQuota":           {security.ErrInvalidQuota, everywhere(kerr.InvalidRequest)},
}

// exportedSentinels lists "pkg.ErrName" for every exported package-level
// variable named Err… in the non-test files of dir.
func exportedSentinels(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	var names []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range file.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				for _, id := range spec.(*ast.ValueSpec).Names {
					if id.IsExported() && strings.HasPrefix(id.Name, "Err") {
						names = append(names, file.Name.Name+"."+id.Name)
					}
				}
			}
		}
	}
	return names
}

// TestEverySentinelHasAKafkaCode fails when an internal package exports an
// error the table does not map, which would reach clients as
// UNKNOWN_SERVER_ERROR, and pins the code of every one on every API family.
func TestEverySentinelHasAKafkaCode(t *testing.T) {
	found := map[string]bool{}
	for _, pkg := range sentinelPackages {
		for _, name := range exportedSentinels(t, filepath.Join("..", "..", pkg)) {
			found[name] = true
			if _, ok := wantSentinelCodes[name]; !ok {
				t.Errorf("%s has no expected Kafka code here: add a row to errorCodes (errcodes.go) and to wantSentinelCodes", name)
			}
		}
	}
	var names []string
	for name := range wantSentinelCodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		row := wantSentinelCodes[name]
		if !found[name] {
			t.Errorf("%s is in wantSentinelCodes but no longer exported", name)
		}
		for fam, want := range row.want {
			got := errorCode(row.err, apiFamily(fam))
			if got != want.Code {
				t.Errorf("%s on family %d: %v, want %v", name, fam, kerr.ErrorForCode(got), want)
			}
			if got == kerr.UnknownServerError.Code {
				t.Errorf("%s on family %d is UNKNOWN_SERVER_ERROR", name, fam)
			}
		}
		// Wrapped, as packages return them, the answer is the same.
		if got, want := errorCode(fmt.Errorf("context: %w", row.err), dataAPIs), row.want[dataAPIs].Code; got != want {
			t.Errorf("wrapped %s: %v, want %v", name, kerr.ErrorForCode(got), kerr.ErrorForCode(want))
		}
	}
}

// TestCoordinatorLogFailuresMapByTheirCause: a coordinator's failed log is
// answered on the coordinator APIs as Kafka answers a failed append to its
// coordinator topics, by the cause: a storage error NOT_COORDINATOR, anything
// else COORDINATOR_NOT_AVAILABLE; a Produce whose transaction cannot be
// verified gets NOT_ENOUGH_REPLICAS whatever the cause.
func TestCoordinatorLogFailuresMapByTheirCause(t *testing.T) {
	wrap := func(outer, cause error) error { return fmt.Errorf("%w: %w", outer, cause) }
	enospc := fmt.Errorf("write: %w", syscall.ENOSPC)
	eio := fmt.Errorf("write: %w", syscall.EIO)
	for _, tc := range []struct {
		name string
		err  error
		fam  apiFamily
		want *kerr.Error
	}{
		{"group log poisoned", wrap(group.ErrStorage, logstore.ErrPoisoned), coordinatorAPIs, kerr.NotCoordinator},
		{"group log full", wrap(group.ErrStorage, enospc), coordinatorAPIs, kerr.NotCoordinator},
		{"group log I/O error", wrap(group.ErrStorage, eio), coordinatorAPIs, kerr.NotCoordinator},
		{"group log closed", wrap(group.ErrStorage, logstore.ErrClosed), coordinatorAPIs, kerr.NotCoordinator},
		{"group log, unknown cause", wrap(group.ErrStorage, errors.New("mystery")), coordinatorAPIs, cna},
		{"txn log poisoned", wrap(txn.ErrStorage, logstore.ErrPoisoned), coordinatorAPIs, kerr.NotCoordinator},
		{"txn log poisoned, EndTxn v1", wrap(txn.ErrStorage, logstore.ErrPoisoned), coordinatorAPIsBeforeKIP588, kerr.NotCoordinator},
		{"txn log, unknown cause", wrap(txn.ErrStorage, errors.New("mystery")), coordinatorAPIs, cna},
		{"txn log poisoned, on Produce", wrap(txn.ErrStorage, logstore.ErrPoisoned), produceAPI, ner},
		{"txn log full, on Produce", wrap(txn.ErrStorage, enospc), produceAPI, ner},
		// The partition's own storage, for contrast.
		{"partition log poisoned", logstore.ErrPoisoned, produceAPI, kerr.KafkaStorageError},
		{"partition disk full", enospc, produceAPI, kerr.KafkaStorageError},
		{"partition write I/O error", eio, produceAPI, kerr.KafkaStorageError},
	} {
		if got := errorCode(tc.err, tc.fam); got != tc.want.Code {
			t.Errorf("%s: %v, want %v", tc.name, kerr.ErrorForCode(got), tc.want)
		}
	}
}

// TestOtherErrorsHaveKafkaCodes covers the errors of the API layer itself and
// of the context a request runs in.
func TestOtherErrorsHaveKafkaCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want familyCodes
	}{
		{"nil", nil, everywhere(&kerr.Error{Message: "NONE"})},
		{"internal topic", internalTopicError("__consumer_offsets"), everywhere(kerr.InvalidTopicException)},
		{"reserved topic", errReservedTopic, everywhere(kerr.InvalidRequest)},
		{"cancelled", context.Canceled, familyCodes{kerr.NotLeaderForPartition, kerr.NotLeaderForPartition, cna, cna}},
		{"timed out", context.DeadlineExceeded, familyCodes{kerr.RequestTimedOut, kerr.RequestTimedOut, cna, cna}},
		{"unknown", errors.New("something new"), everywhere(kerr.UnknownServerError)},
	} {
		for fam, want := range tc.want {
			if got := errorCode(tc.err, apiFamily(fam)); got != want.Code {
				t.Errorf("%s on family %d: %v, want %v", tc.name, fam, kerr.ErrorForCode(got), want)
			}
		}
	}
}

// TestOffsetCommitAfterTheOffsetsLogFailed: once an fsync of the offsets log
// fails, commits are answered NOT_COORDINATOR, as Kafka answers a commit
// whose append to __consumer_offsets hit a storage error; the client looks
// the coordinator up again and retries, and nothing is acknowledged.
func TestOffsetCommitAfterTheOffsetsLogFailed(t *testing.T) {
	mem := logstore.NewMemFS()
	cfg := group.DefaultConfig()
	cfg.FS, cfg.Dir, cfg.InitialRebalanceDelay = mem, "offsets", 0
	c, err := group.NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	env := &Env{Groups: c, PartitionExists: func(string, int32) bool { return true }}
	commit := func() int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.Generation = "g", -1
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "t"
		rt.Partitions = append(rt.Partitions, kmsg.NewOffsetCommitRequestTopicPartition())
		req.Topics = append(req.Topics, rt)
		return call[*kmsg.OffsetCommitResponse](t, env, req, 8).Topics[0].Partitions[0].ErrorCode
	}
	if code := commit(); code != 0 {
		t.Fatalf("healthy commit: %v", kerr.ErrorForCode(code))
	}
	mem.SetSyncError(syscall.EIO)
	for i := range 2 { // the failed fsync, then the poisoned log
		if code := commit(); code != kerr.NotCoordinator.Code {
			t.Fatalf("commit %d after the fsync failure: %v, want NOT_COORDINATOR", i, kerr.ErrorForCode(code))
		}
	}
}
