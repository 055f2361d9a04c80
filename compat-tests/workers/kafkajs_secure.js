// kafkajs over SASL and/or TLS: produces `count` records with the given
// mechanism and credentials (mechanism "none": no SASL), reads them back from
// the beginning, and prints {"ev": "done", "read": n}; a failed login prints
// {"ev": "error", "error": ...}. Mechanism "oauthbearer" sends the token in
// OAUTH_TOKEN. TLS when SSL_CA names the CA file to trust;
// SSL_CERT and SSL_KEY add a client certificate.
const fs = require("fs");
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, topic, mechanism, username, password, countArg] = process.argv.slice(2);
const count = Number(countArg || "5");
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");

async function main() {
  const kafka = new Kafka({
    clientId: "kafkajs-secure",
    brokers: [bootstrap],
    logLevel: logLevel.NOTHING,
    sasl:
      mechanism === "none"
        ? undefined
        : mechanism === "oauthbearer"
          ? { mechanism, oauthBearerProvider: async () => ({ value: process.env.OAUTH_TOKEN }) }
          : { mechanism, username, password },
    ssl: process.env.SSL_CA
      ? {
          ca: [fs.readFileSync(process.env.SSL_CA)],
          cert: process.env.SSL_CERT ? fs.readFileSync(process.env.SSL_CERT) : undefined,
          key: process.env.SSL_KEY ? fs.readFileSync(process.env.SSL_KEY) : undefined,
        }
      : undefined,
    retry: { retries: 1 },
  });
  const producer = kafka.producer();
  await producer.connect();
  const values = Array.from({ length: count }, (_, i) => `kjs-${mechanism}-${i}`);
  await producer.send({ topic, messages: values.map((value) => ({ value })) });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `kjs-${mechanism}-${process.pid}` });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const want = new Set(values);
  await new Promise((resolve, reject) => {
    consumer
      .run({
        eachMessage: async ({ message }) => {
          want.delete(message.value.toString());
          if (want.size === 0) resolve();
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  emit({ ev: "done", read: count });
}

main()
  .then(() => process.exit(0))
  .catch((e) => {
    emit({ ev: "error", error: String(e), type: e.type || e.name });
    process.exit(1);
  });
