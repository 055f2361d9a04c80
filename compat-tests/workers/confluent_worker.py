"""Group consumer worker on confluent-kafka (librdkafka).

Prints one JSON line per event on stdout: {"ev": "assign"|"revoke", "parts": [...]}
after each rebalance callback and {"ev": "msg", "p": partition, "o": offset} per
record (after its offset was committed synchronously), with its topic "t". SIGTERM closes the
consumer (which leaves the group) and exits 0.
"""

import json
import signal
import sys

from confluent_kafka import Consumer, KafkaException

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


conf = {
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "session.timeout.ms": opts.get("session_timeout_ms", 6000),
    "heartbeat.interval.ms": 500,
    "topic.metadata.refresh.interval.ms": 2000,
}
if opts.get("instance_id"):
    conf["group.instance.id"] = opts["instance_id"]
kip848 = opts.get("protocol") == "consumer"
if kip848:
    # KIP-848: the broker sets the session and heartbeat and assigns
    # (librdkafka refuses the classic settings with this protocol).
    conf["group.protocol"] = "consumer"
    del conf["session.timeout.ms"], conf["heartbeat.interval.ms"]
    if opts.get("assignor"):
        conf["group.remote.assignor"] = opts["assignor"]
elif opts.get("assignor"):
    conf["partition.assignment.strategy"] = opts["assignor"]
consumer = Consumer(conf)
cooperative = kip848 or opts.get("assignor") == "cooperative-sticky"
owned = set()


def on_assign(c, parts):
    owned.update(p.partition for p in parts)
    if cooperative:
        c.incremental_assign(parts)
    emit(ev="assign", parts=sorted(owned), added=sorted(p.partition for p in parts))


def on_revoke(c, parts):
    owned.difference_update(p.partition for p in parts)
    if cooperative:
        c.incremental_unassign(parts)
    emit(ev="revoke", parts=sorted(owned), removed=sorted(p.partition for p in parts))


consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
emit(ev="ready")
while not stop:
    m = consumer.poll(0.2)
    if m is None:
        continue
    if m.error():
        emit(ev="error", error=str(m.error()))
        continue
    try:
        consumer.commit(message=m, asynchronous=False)
    except KafkaException as e:
        # A commit that fails in a rebalance is retried by at-least-once redelivery.
        emit(ev="commit_error", error=str(e))
    emit(ev="msg", p=m.partition(), o=m.offset(), t=m.topic())
consumer.close()
emit(ev="closed")
