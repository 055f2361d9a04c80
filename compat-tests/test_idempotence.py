"""An idempotent producer whose connections are cut mid-stream by a loopback
proxy, and whose broker restarts in the middle, writes every message exactly
once and in order: retries of batches whose acknowledgement was lost are
recognised as duplicates, across the restart too (producer state is rebuilt
from its snapshot and the log)."""

import socket
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import free_port


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to the broker and, every `period` seconds, cuts
    every open connection (both ways at once), as a flaky network would."""

    def __init__(self, target_port, period):
        self.port = free_port()
        self.target_port = target_port
        self.period = period
        self.conns = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.cutting = True
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._cutter, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _cutter(self):
        while not self.stop.wait(self.period):
            if not self.cutting:
                continue
            with self.lock:
                conns, self.conns = self.conns, []
            if conns:
                self.cuts += 1
            for s in conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.listener.close()


def test_cut_connections_and_a_restart_write_each_message_once(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("idem", 1, 1)])["idem"].result(timeout=30)
    # Metadata tells the producer where the broker is: point the advertised
    # address at the proxy so every connection goes through it.
    broker.stop()
    proxy = CuttingProxy(broker.port, period=0.3)
    broker.extra_args += ["--advertised-listener", f"127.0.0.1:{proxy.port}"]
    broker.start()
    n = 3000
    p = Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{proxy.port}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "batch.num.messages": 50,
            "message.timeout.ms": 120000,
            "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            # When every connection drops at once, current librdkafka forgets the
            # brokers it learned and re-bootstraps (KIP-1102), against any broker;
            # this test is about retries on the same broker, so it keeps them.
            "metadata.recovery.strategy": "none",
        }
    )
    failed = []
    try:
        for i in range(n):
            p.produce("idem", value=b"%d" % i, partition=0, on_delivery=lambda err, msg: err and failed.append(err))
            p.poll(0)
            if i % 100 == 0:
                time.sleep(0.05)
            if i == n // 2:
                # With batches in flight: the restart closes their connections.
                broker.restart()
        assert p.flush(120) == 0
        assert not failed, failed[:3]
        assert proxy.cuts > 0, "the proxy never cut a connection"
        # Read back through the proxy (the address the broker advertises), uncut.
        proxy.cutting = False
        c = Consumer({"bootstrap.servers": f"127.0.0.1:{proxy.port}", "group.id": "idem-read", "enable.auto.commit": False})
        c.assign([TopicPartition("idem", 0, 0)])
        got = []
        deadline = time.time() + 60
        while len(got) < n and time.time() < deadline:
            m = c.poll(1)
            if m is not None and not m.error():
                got.append(int(m.value()))
        low, high = c.get_watermark_offsets(TopicPartition("idem", 0), timeout=10)
        c.close()
    finally:
        proxy.close()
    assert high == n, f"{high} records stored for {n} produced: duplicates or losses"
    assert got == list(range(n)), "messages out of order, duplicated or missing"


def test_describe_producers_lists_idempotent_producers_across_a_restart(broker):
    from kafka import TopicPartition as KpTopicPartition
    from kafka.admin import KafkaAdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("described-producers", 1, 1)])["described-producers"].result(timeout=30)
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 0})
    for i in range(10):
        p.produce("described-producers", value=b"%d" % i, partition=0, timestamp=1_700_000_000_000 + i)
        p.flush(30)
    tp = KpTopicPartition("described-producers", 0)

    def describe():
        a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            return a.describe_producers([tp])[tp]
        finally:
            a.close()

    before = describe()
    state = before.active_producers if hasattr(before, "active_producers") else before["active_producers"]
    assert len(state) == 1, state
    s = state[0]
    get = (lambda k: getattr(s, k)) if hasattr(s, "producer_id") else (lambda k: s[k])
    assert get("producer_id") >= 0 and get("producer_epoch") == 0
    assert get("last_sequence") == 9
    assert get("last_timestamp") == 1_700_000_000_009
    broker.restart()
    after = describe()
    state2 = after.active_producers if hasattr(after, "active_producers") else after["active_producers"]
    assert [repr(x) for x in state2] == [repr(x) for x in state], "producer state not kept across the restart"
