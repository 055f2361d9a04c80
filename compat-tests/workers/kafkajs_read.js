// Reads partition 0 of a topic from the beginning with kafkajs and prints
// {"v": value} lines until `count` records arrived, then {"ev": "done"}.
// gzip is built into kafkajs; LZ4 is plugged in as kafkajs documents, here
// over the pure-JavaScript lz4js (no native build).
const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require("kafkajs");
const lz4 = require("lz4js");

CompressionCodecs[CompressionTypes.LZ4] = () => ({
  async compress(encoder) {
    return Buffer.from(lz4.compress(encoder.buffer));
  },
  async decompress(buffer) {
    return Buffer.from(lz4.decompress(buffer));
  },
});

const [bootstrap, topic, countArg] = process.argv.slice(2);
const count = Number(countArg);
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");

async function main() {
  const kafka = new Kafka({ clientId: "kafkajs-read", brokers: [bootstrap], logLevel: logLevel.WARN });
  const consumer = kafka.consumer({ groupId: `read-${topic}-${process.pid}` });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let seen = 0;
  await new Promise((resolve, reject) => {
    consumer
      .run({
        eachMessage: async ({ message }) => {
          emit({ v: message.value.toString() });
          seen += 1;
          if (seen >= count) resolve();
        },
      })
      .catch(reject);
    consumer.on(consumer.events.CRASH, (e) => reject(e.payload.error));
  });
  await consumer.disconnect();
  emit({ ev: "done" });
}

main().catch((e) => {
  emit({ ev: "error", error: String(e) });
  process.exit(1);
});
