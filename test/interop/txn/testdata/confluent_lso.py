"""The last stable offset as librdkafka sees it; run by confluent_test.go
against idem.

usage: confluent_lso.py BOOTSTRAP TOPIC TRANSACTIONAL_ID

TOPIC partition 0 already holds committed records. A transactional producer
writes "open-*" and leaves its transaction open; a plain producer then
writes "plain-*" behind it. A read_committed consumer starts at the end of
the partition (OFFSET_END: ListOffsets latest with isolation level
read_committed, which must answer the LSO, the first offset of the open
transaction) and receives nothing while the transaction is open (Fetch
stops at the LSO). Once the producer commits, it must receive the open-*
and then the plain-* records, in order.

Prints one JSON object for the Go test to check; exits non-zero with the
reason on stderr when a client call fails.
"""

import json
import sys
import time

from confluent_kafka import (OFFSET_END, Consumer, KafkaException, Producer,
                             TopicPartition)


def fail(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)


def produce(p, topic, values):
    for v in values:
        p.produce(topic, value=v.encode(), partition=0)
    if p.flush(15):
        fail("%d records of %s not delivered" % (len(p), values))


def main(bootstrap, topic, txn_id):
    opened = ["open-%d" % i for i in range(5)]
    plain = ["plain-%d" % i for i in range(5)]

    txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
    txn.init_transactions(15)
    txn.begin_transaction()
    produce(txn, topic, opened)
    produce(Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True}), topic, plain)

    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "py-lso-unused",  # required by librdkafka; no commits
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    c.assign([TopicPartition(topic, 0, OFFSET_END)])
    early = []
    until = time.time() + 1.5
    while time.time() < until:
        m = c.poll(0.1)
        if m is not None:
            early.append(m.error().str() if m.error() else m.value().decode())

    txn.commit_transaction(15)

    got = []
    deadline = time.time() + 15
    while not early and len(got) < len(opened) + len(plain):
        if time.time() > deadline:
            fail("read %d records after the commit before the deadline: %s" % (len(got), got))
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error() is not None:
            fail("consume: %s" % m.error())
        got.append({"offset": m.offset(), "value": m.value().decode()})
    c.close()
    json.dump({"early": early, "read": got, "want": opened + plain}, sys.stdout)


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2], sys.argv[3])
    except KafkaException as e:
        fail("client error: %s" % e.args[0])
