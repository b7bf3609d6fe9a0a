"""A transactional copier on python3-confluent-kafka (librdkafka), run by
confluent_test.go against idem.

usage: confluent_txn.py BOOTSTRAP IN OUT GROUP TRANSACTIONAL_ID COUNT BATCH

1. A group consumer (read_committed, no auto commit) reads IN; a
   transactional producer copies each batch of at most BATCH records to the
   same partition of OUT and commits the consumed positions with
   send_offsets_to_transaction, all in one transaction. The second batch is
   aborted on purpose; the copier then rewinds to the committed offsets and
   copies it again. It stops after COUNT records were copied in committed
   transactions.
2. Zombie fencing: the copier opens one more transaction and writes a
   "zombie" record to OUT partition 0. A second producer with the same
   transactional.id runs init_transactions, which must fence the first and
   abort its open transaction. The first producer's next transactional call
   (commit_transaction) must fail with a fatal error. The second producer
   then commits one record to every partition of OUT.
3. A librdkafka read_committed consumer reads OUT from the start.

Prints one JSON object for the Go test to check; exits non-zero with the
reason on stderr when a step that must succeed fails.
"""

import json
import sys
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError,
                             KafkaException, Producer, TopicPartition)


def fail(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)


def err_info(e):
    """The fields of a KafkaError the Go test reports."""
    return {"name": e.name(), "code": e.code(), "str": e.str(),
            "fatal": e.fatal(), "retriable": e.retriable(),
            "txn_requires_abort": e.txn_requires_abort()}


def producer(bootstrap, txn_id):
    return Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 30000,
        "linger.ms": 5,
    })


def rewind(consumer):
    """Seeks every assigned partition back to the group's committed offset
    (the start of the log when there is none): what a copier does after an
    abort."""
    for tp in consumer.committed(consumer.assignment(), timeout=10):
        if tp.error:
            fail("committed offsets for rewind: %s" % tp.error)
        if tp.offset < 0:
            tp.offset = OFFSET_BEGINNING
        consumer.seek(tp)


def copy(bootstrap, in_topic, out_topic, group, txn_id, count, batch):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "session.timeout.ms": 6000,
    })
    consumer.subscribe([in_topic])
    p = producer(bootstrap, txn_id)
    p.init_transactions(15)

    copied, aborted_batches, transactions, aborted_values = 0, 0, 0, []
    deadline = time.time() + 40
    while copied < count:
        if time.time() > deadline:
            fail("copied %d of %d records before the deadline" % (copied, count))
        msgs = consumer.consume(num_messages=batch, timeout=0.5)
        for m in msgs:
            if m.error() is not None:
                fail("consume: %s" % m.error())
        if not msgs:
            continue
        transactions += 1
        p.begin_transaction()
        for m in msgs:
            p.produce(out_topic, key=m.key(), value=m.value(), partition=m.partition())
        # The positions after this batch, and the group metadata that lets
        # the broker fence a copier that lost its group membership (KIP-447).
        p.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                      consumer.consumer_group_metadata(), 15)
        if transactions == 2:
            # Flush first: abort_transaction purges what was not sent yet,
            # and the aborted copies must reach the log for the test to
            # show that read_committed consumers skip them.
            if p.flush(15):
                fail("the copies of the aborted transaction were not delivered")
            p.abort_transaction(15)
            aborted_batches += 1
            aborted_values += [m.value().decode() for m in msgs]
            rewind(consumer)
            continue
        p.commit_transaction(15)
        copied += len(msgs)
    consumer.close()
    return p, copied, transactions, aborted_batches, aborted_values


def fence(bootstrap, out_topic, txn_id, zombie, partitions):
    zombie.begin_transaction()
    zombie.produce(out_topic, value=b"py-zombie", partition=0)
    if zombie.flush(15):
        fail("the zombie's record was not delivered")

    # The new instance: InitProducerId bumps the epoch, which fences the
    # zombie and aborts its open transaction.
    successor = producer(bootstrap, txn_id)
    successor.init_transactions(30)

    fenced = None
    try:
        zombie.commit_transaction(15)
    except KafkaException as e:
        fenced = err_info(e.args[0])
    # A fatal error is sticky: any later transactional call fails too.
    later = None
    try:
        zombie.begin_transaction()
    except KafkaException as e:
        later = err_info(e.args[0])

    after = ["py-after-fence-p%d" % i for i in range(partitions)]
    successor.begin_transaction()
    for i, v in enumerate(after):
        successor.produce(out_topic, value=v.encode(), partition=i)
    successor.commit_transaction(15)
    return fenced, later, after


def read_committed(bootstrap, topic, group, count):
    """Reads topic from the start with a new read_committed group member
    until count records arrived: librdkafka's own filtering of aborted
    transactions (Fetch AbortedTransactions and the abort markers)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "session.timeout.ms": 6000,
    })
    consumer.subscribe([topic])
    got = []
    deadline = time.time() + 20
    while len(got) < count:
        if time.time() > deadline:
            fail("%s read %d of %d records of %s: %s" % (group, len(got), count, topic, got))
        for m in consumer.consume(num_messages=count - len(got), timeout=0.5):
            if m.error() is not None:
                fail("read_committed consume: %s" % m.error())
            got.append({"partition": m.partition(), "value": m.value().decode()})
    consumer.close()
    return got


def main(bootstrap, in_topic, out_topic, group, txn_id, count, batch):
    zombie, copied, transactions, aborted, aborted_values = copy(
        bootstrap, in_topic, out_topic, group, txn_id, count, batch)
    fenced, later, after = fence(bootstrap, out_topic, txn_id, zombie, 2)
    readers = read_committed(bootstrap, out_topic, group + "-readers", copied + len(after))
    json.dump({
        "copied": copied,
        "transactions": transactions,
        "aborted_transactions": aborted,
        "aborted_values": aborted_values,
        "fenced": fenced,
        "after_fenced": later,
        "after_fence_values": after,
        "read_committed": readers,
    }, sys.stdout)


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5],
             int(sys.argv[6]), int(sys.argv[7]))
    except KafkaException as e:
        fail("client error: %s" % json.dumps(err_info(e.args[0])))
