"""Consume-transform-produce worker on confluent-kafka: reads `in_topic` in group
`group` (read_committed), writes b"T:" + value to the same partition of
`out_topic`, and commits the input offsets in the same transaction. Prints one
JSON line per committed transaction. Abortable errors abort and rewind to the
committed offsets; a fatal error (fenced) exits with code 3."""

import json
import signal
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

bootstrap, in_topic, out_topic, group, txn_id = sys.argv[1:6]
# Inputs per transaction: small, so a kill lands mid-stream and mid-transaction.
per_txn = int(sys.argv[6]) if len(sys.argv) > 6 else 200


def emit(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


stopping = False


def on_term(*_):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_term)

# When every connection drops at once (the broker is killed), librdkafka 2.16
# re-bootstraps (KIP-1102) and its transaction coordinator handle can stay
# stuck terminating; keeping the learned broker avoids that client bug.
RECOVERY = {"metadata.recovery.strategy": "none"}

consumer = Consumer({
    **RECOVERY,
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 6000,
})
producer = Producer({
    **RECOVERY,
    "bootstrap.servers": bootstrap,
    "transactional.id": txn_id,
    "transaction.timeout.ms": 10000,
    "linger.ms": 5,
})
producer.init_transactions(60)
emit(ev="ready")
consumer.subscribe([in_topic])


def rewind():
    parts = consumer.assignment()
    if not parts:
        return
    for tp in consumer.committed(parts, timeout=30):
        consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))


def run_once(msgs):
    producer.begin_transaction()
    for m in msgs:
        producer.produce(out_topic, key=m.key(), value=b"T:" + m.value(), partition=m.partition())
    producer.send_offsets_to_transaction(
        consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 60
    )
    while True:
        try:
            producer.commit_transaction(60)
            return
        except KafkaException as e:
            if e.args[0].retriable():
                continue
            raise


while not stopping:
    msgs = [m for m in consumer.consume(per_txn, 0.5) if not m.error()]
    if not msgs:
        continue
    try:
        run_once(msgs)
        emit(ev="committed", n=len(msgs))
    except KafkaException as e:
        err = e.args[0]
        if err.fatal():
            emit(ev="fatal", error=str(err))
            sys.exit(3)
        emit(ev="abort", error=str(err))
        try:
            producer.abort_transaction(60)
        except KafkaException as e2:
            if e2.args[0].fatal():
                emit(ev="fatal", error=str(e2.args[0]))
                sys.exit(3)
        rewind()
consumer.close()
emit(ev="closed")
