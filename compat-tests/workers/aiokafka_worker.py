"""Group consumer worker on aiokafka; same event lines as confluent_worker.py."""

import asyncio
import json
import signal
import sys

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

bootstrap, topic, group = sys.argv[1:4]
opts = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}


def emit(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


class Listener(ConsumerRebalanceListener):
    async def on_partitions_revoked(self, revoked):
        emit(ev="revoke", parts=[], removed=sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned):
        emit(ev="assign", parts=sorted(tp.partition for tp in assigned))


async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        group_instance_id=opts.get("instance_id"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=opts.get("session_timeout_ms", 6000),
        heartbeat_interval_ms=500,
        metadata_max_age_ms=2000,
    )
    await consumer.start()
    consumer.subscribe([topic], listener=Listener())
    emit(ev="ready")
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=200)
        for tp, records in batches.items():
            for r in records:
                try:
                    await consumer.commit({TopicPartition(tp.topic, tp.partition): r.offset + 1})
                except KafkaError as e:
                    emit(ev="commit_error", error=str(e))
                emit(ev="msg", p=r.partition, o=r.offset)
    await consumer.stop()
    emit(ev="closed")


asyncio.run(main())
