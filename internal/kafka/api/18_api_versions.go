package api

// ApiVersions, versions 0–4.
//
// The table comes from the registry, so an API is advertised exactly when this
// broker has a handler for it. The ranges follow what the clients idem is tested
// with need (test/interop); several minimums are deliberately old (Produce 0,
// FindCoordinator 0, JoinGroup 0, InitProducerId 0, ListOffsets 1) because
// librdkafka 2.0.2 switches features on only when fixed old versions overlap
// the broker's range.
// TestAdvertisedVersionsAreServed (api_versions_test.go) sends a minimal
// request at every advertised version of every key over a real connection and
// checks it is served, and that the versions just outside are refused; the
// one exception it allows is Produce v0–2 (00_produce.go).
//
// Compared with Kafka 4.x: the minimums match Kafka 4.1+ (KIP-896 raised them
// in 4.0; 4.1 lowered JoinGroup back to 0, KAFKA-19444) except CreateTopics
// (0 here, 2 in Kafka) and DescribeLogDirs (0, Kafka 1), whose old versions
// are served and harmless; the maximums stop where a feature is not
// implemented (skipped_features.md).
//
// Version notes:
//   - v0–v2: ErrorCode, ApiKeys (v1+ ThrottleMillis).
//   - v3+: flexible; the request carries ClientSoftwareName/Version (not
//     validated: a mismatch would only make librdkafka fall back to v0);
//     the response carries SupportedFeatures and FinalizedFeatures (KIP-584,
//     tagged fields) for the features idem implements, as Kafka 4 sends
//     them: the supported range, and the finalized level with min = max =
//     the level, with FinalizedFeaturesEpoch 1 (clients read features only
//     when the epoch is not -1). Features:
//     group.version 1: the KIP-848 consumer rebalance protocol
//     (ConsumerGroupHeartbeat and ConsumerGroupDescribe).
//     transaction.version 2: KIP-890 part 2 (Produce v12, TxnOffsetCommit
//     v5, EndTxn v5 bump the epoch per transaction); franz-go switches to it
//     when it sees the finalized level 2 and those versions.
//     Nothing is sent to v0–2, which have no such fields.
//   - A request above v4 is answered by the server in the v0 layout with
//     UNSUPPORTED_VERSION (see UnsupportedApiVersions); the response header is
//     always v0, even for flexible versions.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(18, 0, 4, handleApiVersions) }

func handleApiVersions(_ context.Context, _ *Env, _ *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	fillApiKeys(resp)
	fillFeatures(resp)
	return resp, nil
}

// feature is one feature flag idem implements: the levels it supports and
// the level in force (always the highest: a single node has no older
// brokers to wait for).
type feature struct {
	name               string
	minLevel, maxLevel int16
	finalized          int16
}

// features are sorted by name.
var features = []feature{
	{name: "group.version", minLevel: 0, maxLevel: 1, finalized: 1},
	{name: "transaction.version", minLevel: 0, maxLevel: 2, finalized: 2},
}

func fillFeatures(resp *kmsg.ApiVersionsResponse) {
	for _, f := range features {
		sf := kmsg.NewApiVersionsResponseSupportedFeature()
		sf.Name, sf.MinVersion, sf.MaxVersion = f.name, f.minLevel, f.maxLevel
		resp.SupportedFeatures = append(resp.SupportedFeatures, sf)
		if f.finalized > 0 {
			ff := kmsg.NewApiVersionsResponseFinalizedFeature()
			ff.Name, ff.MinVersionLevel, ff.MaxVersionLevel = f.name, f.finalized, f.finalized
			resp.FinalizedFeatures = append(resp.FinalizedFeatures, ff)
		}
	}
	if len(resp.FinalizedFeatures) > 0 {
		resp.FinalizedFeaturesEpoch = 1
	}
}

func fillApiKeys(resp *kmsg.ApiVersionsResponse) {
	for _, v := range Versions() {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = v.Key, v.Min, v.Max
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
}

// UnsupportedApiVersions is the v0-layout answer to an ApiVersions request newer
// than we serve: UNSUPPORTED_VERSION plus our whole table (KIP-511), so that the
// client retries at a version in range.
func UnsupportedApiVersions() *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(0)
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	fillApiKeys(resp)
	return resp
}
