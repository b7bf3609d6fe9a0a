"""Consume with librdkafka's KIP-848 consumer (group.protocol=consumer,
librdkafka 2.12+): produce count values to a 3-partition topic, then read
them all with one group member using the server-side "uniform" assignor, and
commit synchronously. Prints one JSON object with what was produced and
consumed. Exits non-zero, with the reason on stderr, on any client error."""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main(bootstrap, topic, group, count):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)],
                                 operation_timeout=10).values():
        f.result(timeout=15)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    produced = ["kip848-%04d" % i for i in range(count)]
    for v in produced:
        producer.produce(topic, value=v.encode())
    if producer.flush(30):
        raise SystemExit("produce: undelivered records")

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "group.remote.assignor": "uniform",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    consumed = []
    deadline = time.time() + 45
    while len(consumed) < count and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        consumed.append(msg.value().decode())
    consumer.commit(asynchronous=False)
    consumer.close()
    json.dump({"produced": produced, "consumed": consumed}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
