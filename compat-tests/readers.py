"""Read a whole topic back with each stock client: shared by the tests that
check what consumers see (transactions, compression, compaction). Each reader
returns the records' values, or (key, value) pairs with `keys=True`, in the
order that client delivered them, and stops once at least `want` records came
and the topic stayed quiet for a moment (or after a minute)."""

import asyncio
import json
import pathlib
import shutil
import subprocess
import time

from confluent_kafka import Consumer

HERE = pathlib.Path(__file__).resolve().parent
WORKERS = HERE / "workers"


def _pick(keys, k, v):
    return (k, v) if keys else v


def read_confluent(bootstrap, topic, isolation, want, group=None, idle=3.0, keys=False):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group or f"rd-{topic}-{isolation}-{time.time()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    c.subscribe([topic])
    got, deadline, last = [], time.time() + 60, time.time()
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            if len(got) >= want and time.time() - last > idle:
                break
            continue
        if m.error():
            continue
        got.append(_pick(keys, m.key(), m.value()))
        last = time.time()
    c.close()
    return got


def read_kafka_python(bootstrap, topic, want, keys=False, isolation="read_committed"):
    from kafka import KafkaConsumer

    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation,
        consumer_timeout_ms=3000,
    )
    got, deadline = [], time.time() + 60
    while time.time() < deadline:
        batch = [_pick(keys, m.key, m.value) for m in c]
        got += batch
        if len(got) >= want and not batch:
            break
    c.close()
    return got


def read_aiokafka(bootstrap, topic, want, keys=False, isolation="read_committed"):
    from aiokafka import AIOKafkaConsumer

    async def run():
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level=isolation,
        )
        await c.start()
        got, deadline, idle = [], time.time() + 60, 0
        try:
            while time.time() < deadline:
                batches = await c.getmany(timeout_ms=500)
                n = sum(len(v) for v in batches.values())
                for msgs in batches.values():
                    got += [_pick(keys, m.key, m.value) for m in msgs]
                idle = idle + 1 if n == 0 else 0
                if len(got) >= want and idle >= 4:
                    break
        finally:
            await c.stop()
        return got

    return asyncio.run(run())


def read_kafkajs(bootstrap, topic, want):
    """Values of the first `want` records of partition 0 (kafkajs, with LZ4 over lz4js)."""
    node = shutil.which("node")
    assert node and (HERE / "node_modules" / "lz4js").exists(), "run-all.sh installs kafkajs"
    r = subprocess.run(
        [node, str(WORKERS / "kafkajs_read.js"), bootstrap, topic, str(want)],
        capture_output=True, timeout=120,
    )
    lines = [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]
    errors = [line for line in lines if line.get("ev") == "error"]
    assert r.returncode == 0 and not errors, (errors, r.stderr.decode()[-2000:])
    return [line["v"].encode() for line in lines if "v" in line]


def read_kcat(bootstrap, topic):
    """Every value of the topic, read by kcat (Debian's librdkafka 2.0.2)."""
    r = subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"],
        capture_output=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr.decode()
    return [v for v in r.stdout.split(b"\n") if v]
