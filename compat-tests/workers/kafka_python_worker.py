"""Group consumer worker on kafka-python; same event lines as confluent_worker.py."""

import json
import signal
import sys

from kafka import KafkaConsumer, OffsetAndMetadata
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

bootstrap, topic, group = sys.argv[1:4]
opts = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)


def emit(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


class Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        emit(ev="revoke", parts=[], removed=sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned):
        emit(ev="assign", parts=sorted(tp.partition for tp in assigned))


extra = {}
if opts.get("instance_id"):
    extra["group_instance_id"] = opts["instance_id"]
consumer = KafkaConsumer(
    bootstrap_servers=bootstrap,
    group_id=group,
    auto_offset_reset="earliest",
    enable_auto_commit=False,
    session_timeout_ms=opts.get("session_timeout_ms", 6000),
    heartbeat_interval_ms=500,
    metadata_max_age_ms=2000,
    **extra,
)
consumer.subscribe([topic], listener=Listener())
emit(ev="ready")
while not stop:
    for tp, records in consumer.poll(timeout_ms=200).items():
        for r in records:
            try:
                consumer.commit({tp: OffsetAndMetadata(r.offset + 1, "", -1)})
            except KafkaError as e:
                emit(ev="commit_error", error=str(e))
            emit(ev="msg", p=r.partition, o=r.offset)
consumer.close()
emit(ev="closed")
