"""Produce N 1 KiB messages with librdkafka (acks=all, idempotent off, a long
message timeout) and print, as JSON, how many were delivered and how many
failed, with the errors seen. Used by TestLibrdkafkaRetriesThroughAFullDisk."""
import json
import sys

from confluent_kafka import Producer

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": False,
    "message.timeout.ms": 120000,
    "retry.backoff.ms": 200,
    "linger.ms": 5,
})
delivered = 0
failed = 0
errors = {}


def report(err, msg):
    global delivered, failed
    if err is None:
        delivered += 1
    else:
        failed += 1
        errors[err.name()] = errors.get(err.name(), 0) + 1


value = b"x" * 1000
for i in range(n):
    while True:
        try:
            p.produce(topic, value=b"%06d" % i + value, callback=report)
            break
        except BufferError:
            p.poll(0.1)
    p.poll(0)
p.flush(150)
print(json.dumps({"delivered": delivered, "failed": failed, "errors": errors}))
