// Group consumer worker on kafkajs; same event lines as confluent_worker.py.
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, topic, group, optsJson] = process.argv.slice(2);
const opts = optsJson ? JSON.parse(optsJson) : {};
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");

async function main() {
  const kafka = new Kafka({ clientId: "kafkajs-worker", brokers: [bootstrap], logLevel: logLevel.WARN });
  const consumer = kafka.consumer({
    groupId: group,
    sessionTimeout: opts.session_timeout_ms || 6000,
    heartbeatInterval: 500,
    metadataMaxAge: 2000,
  });
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const parts = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b);
    emit({ ev: "assign", parts });
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let stopping = false;
  process.on("SIGTERM", async () => {
    if (stopping) return;
    stopping = true;
    await consumer.disconnect();
    emit({ ev: "closed" });
    process.exit(0);
  });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      const next = (BigInt(message.offset) + 1n).toString();
      try {
        await consumer.commitOffsets([{ topic, partition, offset: next }]);
      } catch (e) {
        emit({ ev: "commit_error", error: String(e) });
      }
      emit({ ev: "msg", p: partition, o: Number(message.offset) });
    },
  });
  emit({ ev: "ready" });
}

main().catch((e) => {
  emit({ ev: "error", error: String(e) });
  process.exit(1);
});
