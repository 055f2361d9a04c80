"""A confluent-kafka ShareConsumer (KIP-932) in explicit acknowledgement
mode, printing one JSON line per record once its acknowledgement is
confirmed by commit_sync: {"p", "o", "v", "n" (delivery count), "ack"}.

argv: bootstrap topic group opts-json, where opts may say
  "release": [values]  RELEASE these values on their first delivery
  "reject": [values]   REJECT these values
  "hold_after": N      after N acknowledged records, poll once more and keep
                       what it got without acknowledging (prints "holding")
  "conf": {...}        extra consumer configuration
SIGTERM closes the consumer cleanly (which releases held records).
"""

import json
import signal
import sys
import time

from confluent_kafka import AcknowledgeType, ShareConsumer

bootstrap, topic, group, opts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
release = set(opts.get("release", []))
reject = set(opts.get("reject", []))
hold_after = opts.get("hold_after")
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
c = ShareConsumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "share.acknowledgement.mode": "explicit",
    **opts.get("conf", {}),
})
c.subscribe([topic])


def emit(**ev):
    print(json.dumps(ev), flush=True)


acked = 0
holding = False
while not stop:
    if holding:
        time.sleep(0.1)
        continue
    msgs = c.poll(0.5)
    batch = []
    for m in msgs:
        if m.error():
            continue
        v = m.value().decode()
        if hold_after is not None and acked >= hold_after:
            batch.append((m, "held"))
            continue
        if v in reject:
            kind, name = AcknowledgeType.REJECT, "reject"
        elif v in release and m.delivery_count() == 1:
            kind, name = AcknowledgeType.RELEASE, "release"
        else:
            kind, name = AcknowledgeType.ACCEPT, "accept"
        c.acknowledge(m, kind)
        batch.append((m, name))
    if hold_after is not None and acked >= hold_after and msgs:
        holding = True
        for m, _ in batch:
            emit(ev="held", p=m.partition(), o=m.offset(), v=m.value().decode(), n=m.delivery_count())
        emit(ev="holding")
        continue
    if not batch:
        continue
    results = c.commit_sync(30)
    failed = {(tp.topic, tp.partition) for tp, err in results.items() if err is not None}
    for m, name in batch:
        if (m.topic(), m.partition()) in failed:
            emit(ev="failed", p=m.partition(), o=m.offset())
            continue
        emit(ev="msg", p=m.partition(), o=m.offset(), v=m.value().decode(), n=m.delivery_count(), ack=name)
        if name == "accept":
            acked += 1
c.close()
