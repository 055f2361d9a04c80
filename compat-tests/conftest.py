"""Harness: runs the release `sluice` binary on a free port with a fresh data dir."""

import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "release" / "sluice"))

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def scrape(broker):
    """The broker's metrics: {(name, sorted labels): value}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(broker.metrics_url + "/metrics", timeout=10).read().decode()
    samples = {}
    # The parser raises on anything that is not valid text format.
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    """One sample of a scrape, or None."""
    return samples.get((name, tuple(sorted(labels.items()))))


# Ports already handed out in this run: the kernel may give a just-released
# port again, and a broker whose metrics and Kafka ports collide cannot start.
_ISSUED = set()


def refused(conf):
    """The errors a confluent-kafka client with `conf` got; it must not have
    connected (its metadata request fails)."""
    from confluent_kafka import KafkaException, Producer
    errors = []
    p = Producer({**conf, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        p.list_topics(timeout=5)
    p.poll(1)
    return errors


def free_port():
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ISSUED:
            _ISSUED.add(port)
            return port


class Broker:
    """A broker subprocess that can be stopped, killed and started again on the same port and data."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = pathlib.Path(data_dir)
        self.port = free_port()
        self.extra_args = list(extra_args)
        self.metrics_port = free_port()
        if not any(a.startswith("--metrics-listen") for a in self.extra_args):
            self.extra_args += ["--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        self.proc = None
        self.log_path = self.data_dir.parent / "sluice.log"

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self):
        return f"http://127.0.0.1:{self.metrics_port}"

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "--listen", self.bootstrap, "--data-dir", str(self.data_dir), *self.extra_args],
            stdout=log,
            stderr=log,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sluice did not start listening within 30 s")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            code = self.proc.wait(timeout=30)
        else:
            code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        code = self.stop()
        assert code == 0, f"clean shutdown exited with {code}"
        return self.start()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "data").start()
    yield b
    b.stop()


def payloads(n, seed):
    """Deterministic messages: (key, value, headers, timestamp_ms) with varied sizes and empty values."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.choice([0, 1, 10, 100, 1000, rng.randint(0, 4000)])
        value = bytes(rng.getrandbits(8) for _ in range(size)) if size < 200 else (b"%d-" % i) * (size // 4)
        key = b"key-%d" % i
        headers = [("idx", b"%d" % i), ("empty", b"")]
        out.append((key, value, headers, 1_700_000_000_000 + i))
    return out


def check_round_trip(got, msgs, partitions):
    """`got[p]` holds (key, value, headers, timestamp, offset) per partition; message i
    was produced to partition i % len(partitions). Compares byte for byte, offsets too."""
    for p in partitions:
        want = [m for i, m in enumerate(msgs) if i % len(partitions) == p]
        have = got[p]
        assert len(have) == len(want), f"partition {p}: {len(have)} of {len(want)}"
        for off, (w, h) in enumerate(zip(want, have)):
            assert h[4] == off, f"partition {p}: offset {h[4]} where {off} was expected"
            assert tuple(h[:4]) == w, f"partition {p} offset {off}"
