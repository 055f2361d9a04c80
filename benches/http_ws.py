#!/usr/bin/env python3
"""Consume throughput over the HTTP gateway against librdkafka, same data, same run.

Starts the release broker (`target/release/sluice`) with `--http-listen` on a
fresh data directory, produces N records of S bytes to one partition with
librdkafka (confluent-kafka), then reads them all back four ways, each timed
from the first request to the last record:

- librdkafka (confluent-kafka Consumer, `assign()` from the beginning): the baseline;
- a WebSocket consumer with a credit window of 1,000 records, re-granting
  500 whenever 500 arrived (the `websockets` sync client);
- the same with a window of 10,000;
- REST Proxy v2 records calls (`GET .../records`, binary format).

All clients are Python; each decodes every record (librdkafka hands bytes,
the HTTP clients parse JSON and base64), so the client is part of what is
measured. Prints a Markdown table for docs/benchmarks.md.

Run with the compat venv: `compat-tests/.venv/bin/python benches/http_ws.py [N] [S]`.
"""

import base64
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from websockets.sync.client import connect

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "release" / "sluice"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def librdkafka(bootstrap):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False})
    c.assign([TopicPartition("bench", 0, 0)])
    got = 0
    start = time.perf_counter()
    while got < N:
        for m in c.consume(1000, 1.0):
            if not m.error():
                got += 1
                _ = m.value()
    elapsed = time.perf_counter() - start
    c.close()
    return elapsed


def websocket(url, window):
    got = 0
    half = window // 2
    start = time.perf_counter()
    with connect(f"{url}/v1/ws/consume?topic=bench&offset=earliest", max_size=64 << 20) as ws:
        ws.send(json.dumps({"type": "credit", "records": window}))
        unacked = 0
        while got < N:
            frame = json.loads(ws.recv())
            for r in frame["records"]:
                base64.b64decode(r["value"])
            n = len(frame["records"])
            got += n
            unacked += n
            if unacked >= half:
                ws.send(json.dumps({"type": "credit", "records": unacked}))
                unacked = 0
    return time.perf_counter() - start


def rest(url):
    h = {"Content-Type": "application/vnd.kafka.v2+json"}
    base = requests.post(f"{url}/consumers/rest-bench", headers=h,
                         data=json.dumps({"format": "binary", "auto.offset.reset": "earliest"})).json()["base_uri"]
    requests.post(base + "/assignments", headers=h,
                  data=json.dumps({"partitions": [{"topic": "bench", "partition": 0}]}))
    s = requests.Session()
    got = 0
    start = time.perf_counter()
    while got < N:
        r = s.get(base + "/records", params={"timeout": 1000, "max_bytes": 8 << 20},
                  headers={"Accept": "application/vnd.kafka.binary.v2+json"})
        for rec in r.json():
            base64.b64decode(rec["value"])
            got += 1
    elapsed = time.perf_counter() - start
    requests.delete(base)
    return elapsed


def main():
    data = pathlib.Path(tempfile.mkdtemp(prefix="sluice-http-bench-"))
    port, http = free_port(), free_port()
    proc = subprocess.Popen([BIN, "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
                             "--metrics-listen", "off", "--http-listen", f"127.0.0.1:{http}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bootstrap, url = f"127.0.0.1:{port}", f"http://127.0.0.1:{http}"
    try:
        for _ in range(300):
            try:
                requests.get(url + "/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20})
        value = b"x" * SIZE
        for i in range(N):
            while True:
                try:
                    p.produce("bench", value=value, partition=0)
                    break
                except BufferError:
                    p.poll(0.05)
        assert p.flush(120) == 0
        rows = []
        for name, run in [("librdkafka (confluent-kafka), baseline", lambda: librdkafka(bootstrap)),
                          ("WebSocket, credit window 1,000", lambda: websocket(url.replace("http", "ws"), 1000)),
                          ("WebSocket, credit window 10,000", lambda: websocket(url.replace("http", "ws"), 10000)),
                          ("REST Proxy v2 records calls", lambda: rest(url))]:
            cpu0 = cpu_seconds(proc.pid)
            secs = run()
            broker_cpu = cpu_seconds(proc.pid) - cpu0
            mb = N * SIZE / 1e6
            rows.append((name, N / secs, mb / secs, broker_cpu / (mb / 1000)))
        print(f"{N} records of {SIZE} B, one partition, page cache warm after the produce\n")
        print("| consumer | records/s | MB/s | broker CPU s/GB |")
        print("|---|---|---|---|")
        for name, rps, mbs, cpu in rows:
            print(f"| {name} | {rps:,.0f} | {mbs:.1f} | {cpu:.1f} |")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
