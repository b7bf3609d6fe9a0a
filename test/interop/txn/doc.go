// Package txn holds the transaction interop tests for the clients other than
// franz-go (whose GroupTransactSession copier lives in test/txn): IBM/sarama,
// python3-confluent-kafka (librdkafka 2.0.2) and kafkajs 2.2.4. Each client
// picks its own versions of the transactional APIs (InitProducerId,
// AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn) and filters
// aborted data its own way, so each must be seen to commit, abort, fence and
// read_committed against idem (issue 4).
//
// What a client wrote is always checked with a second client (franz-go,
// read_committed and read_uncommitted), so a test passes only when the log
// holds the right records and the aborted ones are there to be filtered.
//
// External clients: python3-confluent-kafka comes from Debian and runs under
// /usr/bin/python3; kafkajs is installed from npm into testdata/kafkajs by
//
//	npm install --no-audit --no-fund --prefix test/interop/txn/testdata/kafkajs kafkajs@2.2.4
//
// A missing client skips its test on a developer machine and fails it when
// CI=true: CI must never pass by skipping.
package txn
