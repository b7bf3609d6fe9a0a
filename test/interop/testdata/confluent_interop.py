"""Drive idem with python3-confluent-kafka (librdkafka): create a topic with
the admin client, produce with the idempotent producer, consume with a group
and commit synchronously. Prints one JSON object with what was produced and
consumed; the Go test checks it. Exits non-zero, with the reason on stderr,
on any client error."""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main(bootstrap, topic, group, count):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1)],
        operation_timeout=10)
    for f in futures.values():
        f.result(timeout=15)  # raises KafkaException on failure
    md = admin.list_topics(topic=topic, timeout=10)
    partitions = len(md.topics[topic].partitions)
    if partitions != 3:
        raise SystemExit("topic %s has %d partitions, want 3" % (topic, partitions))

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
    })
    delivered, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append((msg.value().decode(), msg.partition(), msg.offset()))

    produced = ["py-%04d" % i for i in range(count)]
    for i, v in enumerate(produced):
        producer.produce(topic, key=("k%d" % (i % 6)).encode(), value=v.encode(),
                         headers=[("source", b"python")], on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining or errors:
        raise SystemExit("produce: %d undelivered, errors %s" % (remaining, errors[:5]))

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
    })
    consumer.subscribe([topic])
    consumed, headers = [], set()
    deadline = time.time() + 45
    while len(consumed) < count and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        consumed.append(msg.value().decode())
        for k, v in msg.headers() or []:
            headers.add("%s=%s" % (k, v.decode()))
    consumer.commit(asynchronous=False)
    consumer.close()

    json.dump({
        "produced": produced,
        "delivered": len(delivered),
        "consumed": consumed,
        "headers": sorted(headers),
    }, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
