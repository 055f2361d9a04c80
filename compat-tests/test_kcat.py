"""kcat (Debian's, librdkafka 2.0.2) against Sluice: -L, produce and consume in every codec, restart."""

import json
import subprocess

import pytest

from conftest import CODECS

N = 10_000


def kcat(b, *args, input=None):
    r = subprocess.run(["kcat", "-b", b.bootstrap, *args], input=input, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def test_metadata_lists_broker_and_topics(broker):
    kcat(broker, "-P", "-t", "listed", input=b"one\n")
    md = json.loads(kcat(broker, "-L", "-J"))
    assert md["brokers"][0]["id"] == 1
    assert md["brokers"][0]["name"] == broker.bootstrap
    topics = {t["topic"]: t for t in md["topics"]}
    assert topics["listed"]["partitions"][0]["leader"] == 1


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_every_codec(broker, codec):
    topic = f"kc-{codec}"
    lines = [b"key%d:value-%d-%s" % (i, i, b"z" * (i % 300)) for i in range(N)]
    kcat(broker, "-P", "-t", topic, "-K:", "-z", codec, "-H", "origin=kcat", input=b"\n".join(lines) + b"\n")

    def read():
        out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%k:%s|%h\n")
        return out.splitlines()

    want = [line + b"|origin=kcat" for line in lines]
    assert read() == want
    broker.restart()
    assert read() == want
