// Package interop holds the tests that drive the broker with the Kafka
// clients users actually run — franz-go, IBM/sarama, segmentio/kafka-go,
// kcat and python3-confluent-kafka (librdkafka) — because each picks its own
// request versions and defaults, and a broker
// that satisfies one client routinely breaks another.
//
// kcat and python3-confluent-kafka come from Debian (apt-get install kcat
// python3-confluent-kafka). Their tests skip when the tool is missing on a
// developer machine, and fail when CI=true: CI must never pass by skipping.
package interop
