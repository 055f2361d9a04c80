"""Group consumers while their topics change under them: a subscribed topic is
deleted (cooperative-sticky), and a regex subscription sees matching topics come
and go. The consumer must keep consuming what remains, and close and exit
promptly. Each consumer runs in a subprocess so a hang in close or destroy
fails the test instead of blocking it.

librdkafka 2.0.2 to 2.6.0 (Debian's kcat) hang in destroy after a consumed
partition's topic was deleted, against Apache Kafka too (librdkafka #4724,
fixed in 2.6.1); docs/compat.md has the details. These tests use the current
librdkafka bundled with confluent-kafka.
"""

import json
import subprocess
import sys
import textwrap
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

CONSUMER = textwrap.dedent(
    """
    import json, sys, time
    from confluent_kafka import Consumer
    bootstrap, group, subscription, seconds, config = sys.argv[1:6]
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": 1000}
    conf.update(json.loads(config))
    c = Consumer(conf)
    c.subscribe(json.loads(subscription))
    deadline = time.time() + float(seconds)
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            print(json.dumps({"topic": m.topic(), "value": m.value().decode()}), flush=True)
        print(json.dumps({"assignment": sorted({tp.topic for tp in c.assignment()})}), flush=True)
    c.close()
    print(json.dumps({"closed": True}), flush=True)
    """
)


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(a, *names):
    for f in a.create_topics([NewTopic(n, 2, 1) for n in names]).values():
        f.result(timeout=30)


def produce(broker, topic, values):
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for v in values:
        p.produce(topic, value=v.encode())
    assert p.flush(30) == 0


class Consumer:
    """A consumer subprocess that runs for `seconds`, then closes and exits."""

    def __init__(self, broker, group, subscription, seconds, config=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CONSUMER, broker.bootstrap, group, json.dumps(subscription), str(seconds), json.dumps(config or {})],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines = []

    def finish(self, timeout):
        """Waits for the process to close and exit; returns its events."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError("the consumer did not close and exit in time")
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_cooperative_consumer_survives_a_deleted_subscribed_topic(broker):
    a = admin(broker)
    create(a, "keep", "drop")
    produce(broker, "keep", ["k1", "k2"])
    produce(broker, "drop", ["d1"])
    c = Consumer(broker, "coop", ["keep", "drop"], 14, {"partition.assignment.strategy": "cooperative-sticky"})
    time.sleep(5)
    for f in a.delete_topics(["drop"]).values():
        f.result(timeout=30)
    time.sleep(2)
    produce(broker, "keep", ["k3"])
    events = c.finish(timeout=60)
    assert events[-1] == {"closed": True}
    values = {e["value"] for e in events if "value" in e}
    assert {"k1", "k2", "d1", "k3"} <= values, values


def test_regex_subscription_follows_topics_created_and_deleted(broker):
    a = admin(broker)
    create(a, "re-first", "unrelated")
    produce(broker, "re-first", ["f1"])
    c = Consumer(broker, "regex", ["^re-.*"], 16)
    time.sleep(5)
    create(a, "re-second")
    produce(broker, "re-second", ["s1"])
    time.sleep(5)
    for f in a.delete_topics(["re-first"]).values():
        f.result(timeout=30)
    events = c.finish(timeout=60)
    assert events[-1] == {"closed": True}
    values = {e["value"] for e in events if "value" in e}
    assert {"f1", "s1"} <= values, values
    assignments = [e["assignment"] for e in events if "assignment" in e]
    assert ["re-first", "re-second"] in assignments, "the new matching topic was never assigned"
    assert assignments[-1] == ["re-second"], assignments[-1]
    assert all("unrelated" not in x for x in assignments)
