// kafkajs transactions: a transactional producer commits and aborts, then a
// read_committed consumer (kafkajs' default) and a read_uncommitted one read the
// topic back. Prints one JSON line with what each saw.
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, topic] = process.argv.slice(2);

async function readAll(kafka, group, readUncommitted, want) {
  const consumer = kafka.consumer({ groupId: group, readUncommitted, sessionTimeout: 6000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const got = [];
  await consumer.run({ eachMessage: async ({ message }) => { got.push(message.value.toString()); } });
  const deadline = Date.now() + 30000;
  while (got.length < want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  // A little longer, so anything that should not be there has the chance to show.
  await new Promise((r) => setTimeout(r, 1500));
  await consumer.disconnect();
  return got;
}

async function main() {
  const kafka = new Kafka({ clientId: "kafkajs-txn", brokers: [bootstrap], logLevel: logLevel.WARN });
  const producer = kafka.producer({ transactionalId: "kafkajs-txn", idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const send = async (prefix, commit) => {
    const txn = await producer.transaction();
    await txn.send({ topic, messages: Array.from({ length: 20 }, (_, i) => ({ key: `${i}`, value: `${prefix}-${i}` })) });
    if (commit) await txn.commit();
    else await txn.abort();
  };
  await send("c1", true);
  await send("a1", false);
  await send("c2", true);
  await producer.disconnect();
  const committed = await readAll(kafka, "kjs-rc", false, 40);
  const all = await readAll(kafka, "kjs-ru", true, 60);
  process.stdout.write(JSON.stringify({ committed, all }) + "\n");
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
