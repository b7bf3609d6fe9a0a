"""A librdkafka consumer joins a group whose offsets are pending in an open
transaction; run by confluent_test.go against idem.

usage: confluent_pending_offsets.py BOOTSTRAP IN GROUP TRANSACTIONAL_ID

A transactional producer sends offsets {IN/0: 5, IN/1: 7} for GROUP to a
transaction and leaves it open. A read_committed consumer (librdkafka then
sets RequireStable on OffsetFetch, KIP-447) joins GROUP and gets both
partitions assigned; the broker must answer UNSTABLE_OFFSET_COMMIT until
the transaction ends, so the consumer receives nothing. After a second the
producer commits, and the consumer must start at offsets 5 and 7, not at
the start of the log (auto.offset.reset=earliest).

Prints one JSON object for the Go test to check; exits non-zero with the
reason on stderr when a client call fails.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def fail(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)


def consumer(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "session.timeout.ms": 6000,
    })


def main(bootstrap, in_topic, group, txn_id):
    # Group metadata without membership (generation -1): what a producer
    # that is not a group member sends.
    c = consumer(bootstrap, group)
    metadata = c.consumer_group_metadata()
    c.close()

    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
    p.init_transactions(15)
    p.begin_transaction()
    p.send_offsets_to_transaction(
        [TopicPartition(in_topic, 0, 5), TopicPartition(in_topic, 1, 7)], metadata, 15)

    assigned = []
    c = consumer(bootstrap, group)
    c.subscribe([in_topic], on_assign=lambda _, parts: assigned.extend(parts))
    early = []
    deadline = time.time() + 20
    while not assigned:
        if time.time() > deadline:
            fail("no partitions assigned before the deadline")
        m = c.poll(0.1)
        if m is not None:
            early.append("%d@%d" % (m.partition(), m.offset()))
    # The consumer asks for its committed offsets now; give it a second.
    until = time.time() + 1
    while time.time() < until:
        m = c.poll(0.1)
        if m is not None:
            early.append("%d@%d" % (m.partition(), m.offset()))

    p.commit_transaction(15)

    first = {}
    while len(first) < 2 and not early:
        if time.time() > deadline:
            fail("received the first record of %d of 2 partitions before the deadline" % len(first))
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error() is not None:
            fail("consume: %s" % m.error())
        first.setdefault(str(m.partition()), m.offset())
    c.close()
    json.dump({"assigned": len(assigned), "early": early, "first_offsets": first}, sys.stdout)


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
    except KafkaException as e:
        fail("client error: %s" % e.args[0])
