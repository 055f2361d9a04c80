//! End-to-end benchmark: starts the release broker on a fresh data directory and
//! drives it with librdkafka (the `rdkafka` crate), next to the machine's floor
//! measured in the same run. Writes `docs/benchmarks.md`.
//!
//! Run with `cargo bench --features bench-e2e --bench e2e`. `SLUICE_BENCH_SCALE`
//! (default 1.0) scales every message count and duration; `SLUICE_BENCH_STARTUP_GB`
//! (default 10) sizes the log for the restart measurement; `SLUICE_BENCH_OUT`
//! overrides the report path.
//!
//! Figures are reported, never asserted: this is a measurement, not a test.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

/// Decimal megabyte, as MB/s is usually quoted.
const MB: f64 = 1e6;

// ---------------------------------------------------------------------------
// The broker under test
// ---------------------------------------------------------------------------

/// A broker child process on its own data directory and port.
struct Broker {
    /// The child process.
    child: Child,
    /// Where it listens.
    addr: String,
    /// Where its stderr goes.
    log_path: PathBuf,
}

/// Process CPU (user + system) and memory, read from /proc.
#[derive(Clone, Copy, Debug, Default)]
struct ProcStat {
    /// User + system CPU seconds so far.
    cpu_s: f64,
    /// Resident set size now, bytes.
    rss: u64,
    /// Peak resident set size, bytes.
    rss_peak: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn proc_stat(pid: &str) -> ProcStat {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu_s = (ticks(11) + ticks(12)) / clock_ticks();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    ProcStat {
        cpu_s,
        rss: kib("VmRSS:"),
        rss_peak: kib("VmHWM:"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Broker {
    /// Starts the broker and returns it with the time from spawn to the first
    /// accepted connection.
    fn start(data_dir: &Path, port: u16) -> (Broker, Duration) {
        // `SLUICE_BENCH_BROKER` runs another build of the broker in place of this one.
        let exe = std::env::var("SLUICE_BENCH_BROKER")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").to_string());
        Broker::start_exe(&exe, data_dir, port)
    }

    /// Starts the broker binary `exe`.
    fn start_exe(exe: &str, data_dir: &Path, port: u16) -> (Broker, Duration) {
        Broker::start_full(exe, data_dir, port, &[], "warn")
    }

    /// Starts this build with extra flags and log filter.
    fn start_with(data_dir: &Path, port: u16, args: &[&str], rust_log: &str) -> (Broker, Duration) {
        Broker::start_full(env!("CARGO_BIN_EXE_sluice"), data_dir, port, args, rust_log)
    }

    /// Starts the broker binary `exe` with extra flags and log filter.
    fn start_full(
        exe: &str,
        data_dir: &Path,
        port: u16,
        args: &[&str],
        rust_log: &str,
    ) -> (Broker, Duration) {
        let addr = format!("127.0.0.1:{port}");
        let log_path = data_dir.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("broker log");
        let t0 = Instant::now();
        let child = Command::new(exe)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(&addr)
            .args(args)
            .env("RUST_LOG", rust_log)
            // Metrics on, as by default, on a port of its own (an environment
            // variable, which builds without the flag ignore).
            .env("SLUICE_METRICS_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn broker");
        let mut broker = Broker {
            child,
            addr,
            log_path,
        };
        loop {
            if TcpStream::connect(&broker.addr).is_ok() {
                break;
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!(
                    "broker exited with {status} during start-up; see {}",
                    broker.log_path.display()
                );
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "broker start-up");
            std::thread::sleep(Duration::from_micros(200));
        }
        (broker, t0.elapsed())
    }

    fn stat(&self) -> ProcStat {
        proc_stat(&self.child.id().to_string())
    }

    /// Clean shutdown (SIGTERM) and wait.
    fn stop(mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// Counts delivery failures so a run that lost messages is reported, not hidden.
#[derive(Default)]
struct Counting {
    /// Messages whose delivery failed.
    failed: AtomicU64,
    /// First failure seen.
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().expect("lock");
            if first.is_none() {
                *first = Some(e.to_string());
            }
        }
    }
}

/// Records the time from `send()` to each delivery report (the producer's share
/// of the end-to-end latency, linger included).
struct AckTimer {
    /// Shared clock origin with the consumer side.
    epoch: Instant,
    /// Send-to-ack times in seconds.
    samples: Mutex<Vec<f64>>,
    /// Failed deliveries.
    failed: AtomicU64,
}

impl ClientContext for AckTimer {}

impl ProducerContext for AckTimer {
    type DeliveryOpaque = Box<u64>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: Box<u64>) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = self.epoch.elapsed().as_nanos() as u64;
        let s = now.saturating_sub(*sent_ns) as f64 / 1e9;
        self.samples.lock().expect("lock").push(s);
    }
}

fn producer(addr: &str, acks: &str) -> BaseProducer<Counting> {
    producer_with(addr, acks, &[])
}

/// A producer with extra client settings (`security.protocol` and the like).
fn producer_with(addr: &str, acks: &str, extra: &[(&str, String)]) -> BaseProducer<Counting> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", addr).set("acks", acks);
    for (k, v) in extra {
        cfg.set(*k, v);
    }
    cfg.create_with_context(Counting::default())
        .expect("producer")
}

fn consumer(addr: &str) -> BaseConsumer {
    consumer_with(addr, &[])
}

/// A consumer with extra client settings.
fn consumer_with(addr: &str, extra: &[(&str, String)]) -> BaseConsumer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", addr)
        .set("group.id", "sluice-bench")
        .set("enable.auto.commit", "false");
    for (k, v) in extra {
        cfg.set(*k, v);
    }
    cfg.create().expect("consumer")
}

/// An admin client and a runtime to wait on its futures.
fn admin(addr: &str) -> (AdminClient<DefaultClientContext>, tokio::runtime::Runtime) {
    let admin = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    (admin, rt)
}

fn create_topic(addr: &str, name: &str, partitions: i32) {
    let (admin, rt) = admin(addr);
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let res = rt
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .expect("create topics");
    for r in res {
        r.expect("topic created");
    }
}

fn delete_topic(addr: &str, name: &str) {
    let (admin, rt) = admin(addr);
    let res = rt
        .block_on(admin.delete_topics(&[name], &AdminOptions::new()))
        .expect("delete topics");
    for r in res {
        r.expect("topic deleted");
    }
}

/// Sends one record, waiting for queue space when the client's buffer is full.
fn send(p: &BaseProducer<Counting>, topic: &str, partition: i32, payload: &[u8]) {
    send_record(
        p,
        BaseRecord::<(), [u8]>::to(topic)
            .payload(payload)
            .partition(partition),
    );
}

/// Sends `record`, waiting for queue space when the client's buffer is full.
fn send_record<K: rdkafka::message::ToBytes + ?Sized>(
    p: &BaseProducer<Counting>,
    mut record: BaseRecord<'_, K, [u8]>,
) {
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                p.poll(Duration::from_millis(1));
            }
            Err((e, _)) => panic!("send: {e}"),
        }
    }
}

/// Produces `count` records of `size` bytes round-robin over `partitions` and waits
/// for every delivery report. Returns the elapsed time.
fn produce_run(
    addr: &str,
    topic: &str,
    partitions: i32,
    size: usize,
    count: u64,
    acks: &str,
) -> Duration {
    produce_run_with(addr, &[], topic, partitions, size, count, acks)
}

/// [`produce_run`] with extra client settings.
fn produce_run_with(
    addr: &str,
    extra: &[(&str, String)],
    topic: &str,
    partitions: i32,
    size: usize,
    count: u64,
    acks: &str,
) -> Duration {
    let p = producer_with(addr, acks, extra);
    // Warm the connection and metadata before the clock starts.
    p.client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let payload = payload(size);
    let t0 = Instant::now();
    for i in 0..count {
        send(&p, topic, (i % partitions as u64) as i32, &payload);
        if i % 1024 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(300)).expect("flush");
    let elapsed = t0.elapsed();
    let failed = p.context().failed.load(Ordering::Relaxed);
    assert_eq!(
        failed,
        0,
        "{failed} deliveries failed: {:?}",
        p.context().first_error.lock().expect("lock")
    );
    elapsed
}

/// Produces `count` records of `size` bytes to partition 0 with an idempotent
/// producer (acks=all); with `per_txn`, in transactions of that many records,
/// each committed before the next begins. Returns the elapsed time.
fn txn_produce_run(
    addr: &str,
    topic: &str,
    size: usize,
    count: u64,
    per_txn: Option<u64>,
) -> Duration {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", addr)
        .set("enable.idempotence", "true");
    if per_txn.is_some() {
        cfg.set("transactional.id", format!("bench-{topic}"));
    }
    let p: BaseProducer<Counting> = cfg
        .create_with_context(Counting::default())
        .expect("producer");
    p.client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    if per_txn.is_some() {
        p.init_transactions(Duration::from_secs(30))
            .expect("init_transactions");
    }
    let payload = payload(size);
    let t0 = Instant::now();
    let mut i = 0;
    while i < count {
        let n = per_txn.unwrap_or(count).min(count - i);
        if per_txn.is_some() {
            p.begin_transaction().expect("begin");
        }
        for j in 0..n {
            send(&p, topic, 0, &payload);
            if j % 1024 == 0 {
                p.poll(Duration::ZERO);
            }
        }
        if per_txn.is_some() {
            // Deliver everything first, polling briskly: librdkafka's own flush
            // inside commit waits in 100 ms steps when reports are pending.
            while p.in_flight_count() > 0 {
                p.poll(Duration::from_millis(1));
            }
            p.commit_transaction(Duration::from_secs(60))
                .expect("commit");
        }
        i += n;
    }
    p.flush(Duration::from_secs(300)).expect("flush");
    let elapsed = t0.elapsed();
    assert_eq!(p.context().failed.load(Ordering::Relaxed), 0);
    elapsed
}

/// Reads partition 0 of `topic` from the beginning with `isolation`; returns
/// the elapsed time.
fn isolated_consume_run(addr: &str, topic: &str, count: u64, isolation: &str) -> Duration {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "sluice-bench-txn")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    let t0 = Instant::now();
    let mut got = 0;
    while got < count {
        if let Some(m) = c.poll(Duration::from_secs(10)) {
            m.expect("message");
            got += 1;
        } else {
            panic!("consume stalled at {got} of {count}");
        }
    }
    t0.elapsed()
}

/// Transactions (issue 11): an idempotent producer without transactions next
/// to transactional ones committing every 10,000, 1,000 and 100 records (1 KiB,
/// acks=all, one partition), then the transactional topic read with
/// read_committed and read_uncommitted. Medians of `rounds`.
fn transactions_section(md: &mut String, work: &Path) {
    let size = 1024;
    let count = scaled(2.5e8 / size as f64);
    let rounds = 3;
    let _ = writeln!(
        md,
        "## Transactions (issue 11)
"
    );
    let _ = writeln!(
        md,
        "One producer, {size} B records to one partition, acks=all, idempotent in every row; \
         {} MB per run, {rounds} runs per row, medians. Each commit makes the transaction's \
         state durable, writes and fsyncs a COMMIT marker in the partition, and records the \
         transaction complete.\n",
        count * size as u64 / 1_000_000
    );
    let _ = writeln!(
        md,
        "| records per transaction | msgs/s | MB/s | transactions/s | broker CPU s/GB |\n|---|---|---|---|---|"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut consume = (Vec::new(), Vec::new());
    for per_txn in [None, Some(10_000u64), Some(1_000), Some(100)] {
        let mut rate = Vec::new();
        let mut cpu = Vec::new();
        for round in 0..rounds {
            let dir = work.join("txn");
            let _ = std::fs::remove_dir_all(&dir);
            let (broker, _) = Broker::start(&dir, free_port());
            let addr = broker.addr.clone();
            create_topic(&addr, "tx", 1);
            let b0 = broker.stat();
            let elapsed = txn_produce_run(&addr, "tx", size, count, per_txn);
            let b1 = broker.stat();
            let gb = (count * size as u64) as f64 / 1e9;
            rate.push(count as f64 / elapsed.as_secs_f64());
            cpu.push((b1.cpu_s - b0.cpu_s) / gb);
            if per_txn == Some(1_000) && round == 0 {
                for (isolation, out) in [
                    ("read_committed", &mut consume.0),
                    ("read_uncommitted", &mut consume.1),
                ] {
                    for _ in 0..rounds {
                        let t = isolated_consume_run(&addr, "tx", count, isolation);
                        out.push(gb * 1e9 / t.as_secs_f64());
                    }
                }
            }
            broker.stop();
            let _ = std::fs::remove_dir_all(&dir);
        }
        let msgs = median(&mut rate);
        let label = per_txn.map_or("none (idempotent only)".to_string(), |n| n.to_string());
        let txns = per_txn.map_or("-".to_string(), |n| format!("{:.0}", msgs / n as f64));
        let _ = writeln!(
            md,
            "| {label} | {msgs:.0} | {} | {txns} | {:.2} |",
            mb(msgs * size as f64),
            median(&mut cpu)
        );
    }
    let _ = writeln!(
        md,
        "\nReading the 1,000-per-transaction topic back ({} MB, markers included, {rounds} runs): \
         read_committed {} MB/s, read_uncommitted {} MB/s.\n",
        count * size as u64 / 1_000_000,
        mb(median(&mut consume.0)),
        mb(median(&mut consume.1)),
    );
}

/// Produces `count` keyed records of `size` bytes (keys cycle through
/// `keys` distinct values) to partition 0 of `topic`, acks=1; returns the
/// elapsed time.
fn keyed_produce_run(addr: &str, topic: &str, size: usize, count: u64, keys: u64) -> Duration {
    let p = producer(addr, "1");
    p.client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let payload = payload(size);
    let t0 = Instant::now();
    for i in 0..count {
        let key = format!("key-{:08}", i % keys);
        send_record(
            &p,
            BaseRecord::<str, [u8]>::to(topic)
                .key(&key)
                .payload(&payload)
                .partition(0),
        );
        if i % 1024 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(300)).expect("flush");
    assert_eq!(
        p.context().failed.load(Ordering::Relaxed),
        0,
        "deliveries failed"
    );
    t0.elapsed()
}

/// The broker log's `cleaned` lines so far: (bytes replaced, seconds) summed.
fn cleaned_so_far(log: &Path) -> (u64, f64, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let field = |line: &str, name: &str| -> Option<f64> {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        line[at..].split_whitespace().next()?.parse().ok()
    };
    let mut out = (0u64, 0.0f64, 0usize);
    for line in text.lines().filter(|l| l.contains(" cleaned ")) {
        if let (Some(before), Some(secs)) = (field(line, "before"), field(line, "seconds")) {
            out.0 += before as u64;
            out.1 += secs;
            out.2 += 1;
        }
    }
    out
}

/// Log compaction (issue 12): how fast the cleaner rewrites a dirty log, and
/// what a cleaning running alongside costs produce and consume.
/// Makes a CA and a certificate for 127.0.0.1 with the openssl command;
/// returns (the broker's keystore PEM, the CA PEM).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("cert dir");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=bench CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "server.ext",
    ]);
    let keystore = dir.join("keystore.pem");
    let pem = std::fs::read_to_string(dir.join("server.pem")).expect("cert")
        + &std::fs::read_to_string(dir.join("server.key")).expect("key");
    std::fs::write(&keystore, pem).expect("keystore");
    (keystore, dir.join("ca.pem"))
}

/// TLS next to plaintext (issue 13): one broker with a PLAINTEXT and an SSL
/// listener; the same produce and consume through each, with the broker's CPU
/// time per run.
fn tls_section(md: &mut String, work: &Path) {
    let size = 1024;
    let partitions = 4;
    let count = scaled(2e8 / size as f64);
    let rounds = 3;
    let (keystore, ca) = make_certs(&work.join("tls-certs"));
    let data = work.join("tls-data");
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port();
    let ssl_port = free_port();
    let listeners = format!("PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port}");
    let keystore = keystore.to_string_lossy().into_owned();
    let (broker, _) = Broker::start_with(
        &data,
        port,
        &[
            "--listeners",
            &listeners,
            "--ssl-keystore-location",
            &keystore,
        ],
        "warn",
    );
    let plain_addr = broker.addr.clone();
    let ssl_addr = format!("127.0.0.1:{ssl_port}");
    let ssl_extra = vec![
        ("security.protocol", "SSL".to_string()),
        ("ssl.ca.location", ca.to_string_lossy().into_owned()),
    ];
    let mb = (count * size as u64) as f64 / 1e6;
    let _ = writeln!(md, "## TLS (issue 13)\n");
    let _ = writeln!(
        md,
        "One broker with a PLAINTEXT and an SSL listener (rustls with ring; TLS 1.3 \
        with the cipher suite librdkafka's OpenSSL prefers; RSA-2048 certificate). Each run produces \
        {count} records of {size} B ({mb:.0} MB) over {partitions} partitions with acks=1, then \
        reads them back from the start with one consumer; {rounds} runs per listener, \
        alternating, medians. Broker CPU is user+system seconds per run. This kernel has no \
        `tls` ULP, so kernel TLS is not available: TLS fetches go through the buffered path \
        (the segment read in 256 KiB chunks, encrypted by rustls) while plaintext uses \
        `sendfile`.\n"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut results: Vec<(&str, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)> = vec![
        ("PLAINTEXT", vec![], vec![], vec![], vec![]),
        ("SSL", vec![], vec![], vec![], vec![]),
    ];
    for round in 0..rounds {
        for (label, prod, cons, pcpu, ccpu) in results.iter_mut() {
            let (addr, extra): (&str, &[(&str, String)]) = if *label == "SSL" {
                (&ssl_addr, &ssl_extra)
            } else {
                (&plain_addr, &[])
            };
            let topic = format!("tls-{label}-{round}");
            create_topic(&plain_addr, &topic, partitions);
            let c0 = broker.stat().cpu_s;
            let t = produce_run_with(addr, extra, &topic, partitions, size, count, "1");
            let c1 = broker.stat().cpu_s;
            let (ct, bytes) = consume_run_with(addr, extra, &topic, partitions, count);
            let c2 = broker.stat().cpu_s;
            assert_eq!(bytes, count * size as u64);
            prod.push(mb / t.as_secs_f64());
            cons.push(mb / ct.as_secs_f64());
            pcpu.push(c1 - c0);
            ccpu.push(c2 - c1);
            delete_topic(&plain_addr, &topic);
        }
    }
    let _ = writeln!(
        md,
        "| listener | produce MB/s | broker CPU s (produce) | consume MB/s | broker CPU s (consume) |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for (label, prod, cons, pcpu, ccpu) in results.iter_mut() {
        let _ = writeln!(
            md,
            "| {label} | {:.0} | {:.2} | {:.0} | {:.2} |",
            median(prod),
            median(pcpu),
            median(cons),
            median(ccpu)
        );
    }
    let _ = writeln!(md);
    broker.stop();
}

fn compaction_section(md: &mut String, work: &Path) {
    let size = 1024;
    let count = scaled(2e8 / size as f64);
    let keys = (count / 10).max(1);
    let rounds = 3;
    let topic_configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "16777216"),
        ("segment.ms", "1000"),
    ];
    let _ = writeln!(md, "## Compaction and broker-side compression (issue 12)\n");
    let _ = writeln!(
        md,
        "One partition of a `cleanup.policy=compact` topic (16 MiB segments), {size} B values \
        under {keys} keys, ten versions each: {} MB written with acks=1, then one record \
        after `segment.ms` so every segment is sealed. The cleaner (one thread, \
        no I/O limit, 128 MiB map) cleans it; its rate is the bytes it replaced over the \
        time its cleanings took (from the broker's log). Then {} MB more are produced while \
        the cleaner works (produce rate), and the whole partition is read from the start to \
        its end, as a new consumer of the table would (bytes and time), next to the same \
        runs with the cleaner off (`--log-cleaner-threads 0`); {rounds} runs, medians.\n",
        count * size as u64 / 1_000_000,
        count * size as u64 / 1_000_000,
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut clean_rate = Vec::new();
    let mut rows = Vec::new();
    for threads in ["1", "0"] {
        let (mut produce, mut consume) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let dir = work.join("compact");
            let _ = std::fs::remove_dir_all(&dir);
            let (broker, _) = Broker::start_with(
                &dir,
                free_port(),
                &[
                    "--log-cleaner-threads",
                    threads,
                    "--log-cleaner-backoff-ms",
                    "200",
                ],
                "warn,sluice::storage::cleaner=info",
            );
            let addr = broker.addr.clone();
            let (admin, rt) = admin(&addr);
            let mut topic = NewTopic::new("cmp", 1, TopicReplication::Fixed(1));
            for (k, v) in topic_configs {
                topic = topic.set(k, v);
            }
            for r in rt
                .block_on(admin.create_topics([&topic], &AdminOptions::new()))
                .expect("create")
            {
                r.expect("created");
            }
            keyed_produce_run(&addr, "cmp", size, count, keys);
            std::thread::sleep(Duration::from_millis(1100));
            keyed_produce_run(&addr, "cmp", size, 1, keys);
            if threads == "1" {
                let written = count * size as u64;
                let deadline = Instant::now() + Duration::from_secs(600);
                loop {
                    let (before, secs, _) = cleaned_so_far(&broker.log_path);
                    if before >= written {
                        clean_rate.push(before as f64 / secs.max(1e-9));
                        break;
                    }
                    assert!(Instant::now() < deadline, "the cleaner did not finish");
                    std::thread::sleep(Duration::from_millis(100));
                }
                // Dirty the log again, so the next runs overlap a cleaning.
                keyed_produce_run(&addr, "cmp", size, count, keys);
                std::thread::sleep(Duration::from_millis(1100));
                keyed_produce_run(&addr, "cmp", size, 1, keys);
            } else {
                keyed_produce_run(&addr, "cmp", size, count, keys);
                std::thread::sleep(Duration::from_millis(1100));
                keyed_produce_run(&addr, "cmp", size, 1, keys);
            }
            // Measured: produce while the cleaner works (when on), then consume.
            let t = keyed_produce_run(&addr, "cmp", size, count, keys);
            produce.push((count * size as u64) as f64 / t.as_secs_f64());
            if let Ok(ms) = std::env::var("SLUICE_BENCH_COMPACT_SETTLE_MS") {
                std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            }
            let c = consumer(&addr);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("cmp", 0, Offset::Beginning)
                .expect("tpl");
            c.assign(&tpl).expect("assign");
            let (_, high) = c
                .fetch_watermarks("cmp", 0, Duration::from_secs(10))
                .expect("watermarks");
            let t0 = Instant::now();
            let mut bytes = 0u64;
            loop {
                match c.poll(Duration::from_millis(500)) {
                    Some(Ok(m)) => {
                        bytes += m.payload().map_or(0, |p| p.len() as u64);
                        if m.offset() + 1 >= high {
                            break;
                        }
                    }
                    Some(Err(e)) => panic!("consume: {e}"),
                    None => assert!(t0.elapsed() < Duration::from_secs(600), "consume stalled"),
                }
            }
            consume.push((t0.elapsed().as_secs_f64(), bytes as f64));
            broker.stop();
            let _ = std::fs::remove_dir_all(&dir);
        }
        consume.sort_by(|a, b| a.0.total_cmp(&b.0));
        rows.push((threads, median(&mut produce), consume[consume.len() / 2]));
    }
    let _ = writeln!(
        md,
        "Cleaning rate: {} MB/s of log replaced.\n",
        mb(median(&mut clean_rate))
    );
    let _ = writeln!(
        md,
        "| cleaner | produce MB/s | read from the start: MB | seconds |\n|---|---|---|---|"
    );
    for (threads, produce, consume) in rows {
        let label = if threads == "1" {
            "on, cleaning alongside"
        } else {
            "off (baseline)"
        };
        let _ = writeln!(
            md,
            "| {label} | {} | {:.0} | {:.2} |",
            mb(produce),
            consume.1 / 1e6,
            consume.0
        );
    }
    let _ = writeln!(md);
    // Broker-side compression: what recompressing on append costs a producer.
    let _ = writeln!(
        md,
        "Broker-side compression: one producer (librdkafka, acks=1, default batching) sends \
         {} MB of {size} B records to one partition; the topic's `compression.type` \
         recompresses batches in another codec on append. {rounds} runs, medians.\n",
        count * size as u64 / 1_000_000
    );
    let _ = writeln!(
        md,
        "| producer codec | topic compression.type | produce MB/s | broker CPU s/GB |\n|---|---|---|---|"
    );
    for (codec, topic_codec) in [
        ("none", "producer"),
        ("none", "lz4"),
        ("lz4", "lz4"),
        ("gzip", "zstd"),
    ] {
        let (mut rate, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let dir = work.join("codec");
            let _ = std::fs::remove_dir_all(&dir);
            let (broker, _) = Broker::start_with(&dir, free_port(), &[], "warn");
            let addr = broker.addr.clone();
            let (admin, rt) = admin(&addr);
            let topic = NewTopic::new("z", 1, TopicReplication::Fixed(1))
                .set("compression.type", topic_codec);
            for r in rt
                .block_on(admin.create_topics([&topic], &AdminOptions::new()))
                .expect("create")
            {
                r.expect("created");
            }
            let p: BaseProducer<Counting> = ClientConfig::new()
                .set("bootstrap.servers", &addr)
                .set("acks", "1")
                .set("compression.type", codec)
                .create_with_context(Counting::default())
                .expect("producer");
            p.client()
                .fetch_metadata(Some("z"), Duration::from_secs(10))
                .expect("metadata");
            let body = payload(size);
            let b0 = broker.stat();
            let t0 = Instant::now();
            for i in 0..count {
                send(&p, "z", 0, &body);
                if i % 1024 == 0 {
                    p.poll(Duration::ZERO);
                }
            }
            p.flush(Duration::from_secs(300)).expect("flush");
            let t = t0.elapsed();
            let b1 = broker.stat();
            assert_eq!(
                p.context().failed.load(Ordering::Relaxed),
                0,
                "deliveries failed"
            );
            let gb = (count * size as u64) as f64 / 1e9;
            rate.push(gb * 1e9 / t.as_secs_f64());
            cpu.push((b1.cpu_s - b0.cpu_s) / gb);
            broker.stop();
            let _ = std::fs::remove_dir_all(&dir);
        }
        let _ = writeln!(
            md,
            "| {codec} | {topic_codec} | {} | {:.2} |",
            mb(median(&mut rate)),
            median(&mut cpu)
        );
    }
    let _ = writeln!(md);
}

/// Record values: not all one byte, so nothing downstream can cheat on them.
fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

/// Consumes `count` records from every partition of `topic` from the beginning
/// with default consumer settings; returns elapsed time and payload bytes.
fn consume_run(addr: &str, topic: &str, partitions: i32, count: u64) -> (Duration, u64) {
    consume_run_with(addr, &[], topic, partitions, count)
}

/// [`consume_run`] with extra client settings.
fn consume_run_with(
    addr: &str,
    extra: &[(&str, String)],
    topic: &str,
    partitions: i32,
    count: u64,
) -> (Duration, u64) {
    let c = consumer_with(addr, extra);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut got = 0u64;
    let mut bytes = 0u64;
    let t0 = Instant::now();
    while got < count {
        match c.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                got += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => panic!("consume stalled at {got}/{count}"),
        }
    }
    (t0.elapsed(), bytes)
}

// ---------------------------------------------------------------------------
// The machine's floor
// ---------------------------------------------------------------------------

/// Environment variable that turns this binary into the loopback sink process.
const SINK_ROLE: &str = "SLUICE_BENCH_TCP_SINK";

/// Child role: read the socket to EOF, print the byte count.
fn tcp_sink(addr: &str) {
    let mut s = TcpStream::connect(addr).expect("sink connect");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => panic!("sink read: {e}"),
        }
    }
    println!("{total}");
}

/// Loopback TCP throughput between this process and a child, in bytes/s.
fn floor_tcp(bytes: u64) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let child = Command::new(std::env::current_exe().expect("exe"))
        .env(SINK_ROLE, &addr)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sink");
    let (mut s, _) = l.accept().expect("accept");
    let buf = vec![7u8; 1 << 20];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        s.write_all(&buf).expect("write");
        sent += buf.len() as u64;
    }
    drop(s);
    let out = child.wait_with_output().expect("sink");
    let elapsed = t0.elapsed();
    let got: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("sink count");
    assert_eq!(got, sent);
    sent as f64 / elapsed.as_secs_f64()
}

/// fdatasync latency after a 4 KiB append: sorted samples in seconds.
fn floor_fdatasync(dir: &Path, n: usize) -> Vec<f64> {
    let path = dir.join("fdatasync.probe");
    let mut f = std::fs::File::create(&path).expect("probe");
    let block = vec![1u8; 4096];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        f.write_all(&block).expect("write");
        f.sync_data().expect("fdatasync");
        samples.push(t0.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_file(&path);
    samples.sort_by(f64::total_cmp);
    samples
}

/// Durable write bandwidth as group commit gets it: one thread appends `chunk`s
/// while another calls fdatasync back to back; bytes/s until the last byte is
/// synced.
fn floor_durable_write(dir: &Path, bytes: u64, chunk: usize) -> f64 {
    let path = dir.join("write.probe");
    let f = std::fs::File::create(&path).expect("probe");
    let syncer = f.try_clone().expect("clone");
    let done = std::sync::atomic::AtomicBool::new(false);
    let buf = payload(chunk);
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Acquire) {
                syncer.sync_data().expect("fdatasync");
            }
        });
        let mut w = &f;
        let mut written = 0u64;
        while written < bytes {
            w.write_all(&buf).expect("write");
            written += chunk as u64;
        }
        done.store(true, Ordering::Release);
    });
    f.sync_data().expect("fdatasync");
    let rate = bytes as f64 / t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    rate
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------
// Latency
// ---------------------------------------------------------------------------

/// Produce-to-consume latency at a fixed rate with default client settings:
/// sorted end-to-end samples and sorted send-to-ack samples, in seconds (the
/// first second is warm-up and not counted).
fn latency_run(addr: &str, topic: &str, rate: u64, seconds: f64) -> (Vec<f64>, Vec<f64>) {
    let epoch = Instant::now();
    let total = (rate as f64 * seconds) as u64;
    let warmup = rate;
    let c = consumer(addr);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let addr_p = addr.to_string();
    let topic_p = topic.to_string();
    let producer_thread = std::thread::spawn(move || {
        let timer = AckTimer {
            epoch,
            samples: Mutex::new(Vec::with_capacity(total as usize)),
            failed: AtomicU64::new(0),
        };
        let p: BaseProducer<AckTimer> = ClientConfig::new()
            .set("bootstrap.servers", &addr_p)
            .create_with_context(timer)
            .expect("producer");
        p.client()
            .fetch_metadata(Some(&topic_p), Duration::from_secs(10))
            .expect("metadata");
        let mut value = payload(100);
        let start = Instant::now();
        for i in 0..total {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            loop {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                p.poll(due - now);
            }
            let ns = epoch.elapsed().as_nanos() as u64;
            value[..8].copy_from_slice(&ns.to_le_bytes());
            let record = BaseRecord::<(), [u8], Box<u64>>::with_opaque_to(&topic_p, Box::new(ns))
                .payload(&value[..])
                .partition(0);
            if let Err((e, _)) = p.send(record) {
                panic!("send at a fixed rate: {e}");
            }
        }
        p.flush(Duration::from_secs(60)).expect("flush");
        assert_eq!(p.context().failed.load(Ordering::Relaxed), 0);
        let mut acks = std::mem::take(&mut *p.context().samples.lock().expect("lock"));
        acks.drain(..(warmup as usize).min(acks.len()));
        acks.sort_by(f64::total_cmp);
        acks
    });
    let mut samples = Vec::with_capacity(total as usize);
    let mut got = 0u64;
    while got < total {
        match c.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                let now = epoch.elapsed().as_nanos() as u64;
                let v = m.payload().expect("payload");
                let sent = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
                if got >= warmup {
                    samples.push(now.saturating_sub(sent) as f64 / 1e9);
                }
                got += 1;
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => panic!("latency consumer stalled at {got}/{total}"),
        }
    }
    let acks = producer_thread.join().expect("producer thread");
    samples.sort_by(f64::total_cmp);
    (samples, acks)
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn self_cpu() -> f64 {
    proc_stat("self").cpu_s
}

fn mb(bytes_per_s: f64) -> String {
    format!("{:.0}", bytes_per_s / MB)
}

fn ms(s: f64) -> String {
    if s < 0.01 {
        format!("{:.2}", s * 1e3)
    } else {
        format!("{:.1}", s * 1e3)
    }
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1024.0 * 1024.0))
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {:.0} GiB RAM, Linux {}",
        mem as f64 / (1024.0 * 1024.0),
        kernel.trim()
    )
}

/// One produce configuration's result.
struct ProduceRow {
    size: usize,
    acks: &'static str,
    partitions: i32,
    count: u64,
    elapsed: Duration,
    broker_cpu: f64,
    client_cpu: f64,
    rss_peak: u64,
}

impl ProduceRow {
    fn bytes(&self) -> u64 {
        self.count * self.size as u64
    }
    fn rate(&self) -> f64 {
        self.bytes() as f64 / self.elapsed.as_secs_f64()
    }
}

fn scaled(n: f64) -> u64 {
    let scale: f64 = std::env::var("SLUICE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n * scale).round() as u64).max(1)
}

fn main() {
    if let Ok(addr) = std::env::var(SINK_ROLE) {
        tcp_sink(&addr);
        return;
    }
    // `cargo bench` passes `--bench`; anything else (a filter) is not supported.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = root.join("target").join("bench-e2e");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let out_path = std::env::var("SLUICE_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("docs").join("benchmarks.md"));
    let startup_gb: f64 = std::env::var("SLUICE_BENCH_STARTUP_GB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);

    // Profiling aid: `SLUICE_BENCH_ONLY=1024/all/16` runs that one produce
    // configuration (then a consume of it) against a broker and prints the figures,
    // leaving the report alone. `SLUICE_BENCH_BROKER_PID_FILE` receives the pid;
    // `SLUICE_BENCH_CONSUME_MARK` is written when the consume starts.
    if let Ok(only) = std::env::var("SLUICE_BENCH_ONLY") {
        profile_one(&work, &only);
        return;
    }
    // `SLUICE_BENCH_COMPACT_ONLY=1` runs only the compaction section and prints it.
    if std::env::var("SLUICE_BENCH_COMPACT_ONLY").is_ok() {
        let mut md = String::new();
        compaction_section(&mut md, &work);
        println!("{md}");
        return;
    }
    // `SLUICE_BENCH_TLS_ONLY=1` runs only the TLS section and prints it.
    if std::env::var("SLUICE_BENCH_TLS_ONLY").is_ok() {
        let mut md = String::new();
        tls_section(&mut md, &work);
        println!("{md}");
        return;
    }
    // `SLUICE_BENCH_TXN_ONLY=1` runs only the transactions section and prints it.
    if std::env::var("SLUICE_BENCH_TXN_ONLY").is_ok() {
        let mut md = String::new();
        transactions_section(&mut md, &work);
        println!("{md}");
        return;
    }
    // `SLUICE_BENCH_BASELINE_ONLY=1` runs only the comparison against
    // `SLUICE_BENCH_BASELINE` and prints it, leaving the report alone.
    if std::env::var("SLUICE_BENCH_BASELINE_ONLY").is_ok() {
        if let Ok(baseline) = std::env::var("SLUICE_BENCH_BASELINE") {
            let mut md = String::new();
            baseline_section(&mut md, &work, &baseline);
            println!("{md}");
        }
        return;
    }

    eprintln!("floor: loopback TCP, fdatasync, durable write");
    let tcp = floor_tcp(scaled(4.0 * 1024.0 * 1024.0 * 1024.0));
    let sync = floor_fdatasync(&work, scaled(2000.0) as usize);
    let durable = floor_durable_write(&work, scaled(2.0 * 1024.0 * 1024.0 * 1024.0), 1 << 20);

    // Start-up on an empty data directory, and idle memory.
    let port = free_port();
    let (broker, startup_empty) = Broker::start(&work.join("data"), port);
    std::thread::sleep(Duration::from_millis(500));
    let idle_empty = broker.stat();
    let addr = broker.addr.clone();

    // Produce throughput matrix.
    let mut produce_rows = Vec::new();
    for &(size, base) in &[(1024usize, 1024.0 * 1024.0), (100, 4_000_000.0)] {
        for &acks in &["all", "1"] {
            for &partitions in &[1, 16] {
                let topic = format!("produce-{size}-{acks}-{partitions}");
                create_topic(&addr, &topic, partitions);
                let count = scaled(base);
                eprintln!("produce {count} x {size} B, acks={acks}, {partitions} partition(s)");
                let (b0, c0) = (broker.stat(), self_cpu());
                let elapsed = produce_run(&addr, &topic, partitions, size, count, acks);
                let (b1, c1) = (broker.stat(), self_cpu());
                produce_rows.push(ProduceRow {
                    size,
                    acks,
                    partitions,
                    count,
                    elapsed,
                    broker_cpu: b1.cpu_s - b0.cpu_s,
                    client_cpu: c1 - c0,
                    rss_peak: b1.rss_peak,
                });
                // The 1 KiB single-partition log is kept for the consume run; the others
                // are deleted so their dirty pages do not weigh on later runs.
                if !(size == 1024 && acks == "1" && partitions == 1) {
                    delete_topic(&addr, &topic);
                }
            }
        }
    }

    // Consume from the page cache with default settings.
    let consume_count = scaled(1024.0 * 1024.0);
    eprintln!("consume {consume_count} x 1 KiB");
    let (b0, c0) = (broker.stat(), self_cpu());
    let (consume_elapsed, consume_bytes) = consume_run(&addr, "produce-1024-1-1", 1, consume_count);
    let (b1, c1) = (broker.stat(), self_cpu());
    let consume_broker_cpu = b1.cpu_s - b0.cpu_s;
    let consume_client_cpu = c1 - c0;
    delete_topic(&addr, "produce-1024-1-1");

    // Produce-to-consume latency at fixed rates.
    let mut latency_rows = Vec::new();
    for &rate in &[1000u64, 5000, 20000] {
        let topic = format!("latency-{rate}");
        create_topic(&addr, &topic, 1);
        eprintln!("latency at {rate} msg/s");
        let seconds = scaled(10.0) as f64;
        let (samples, acks) = latency_run(&addr, &topic, rate, seconds.max(2.0));
        latency_rows.push((rate, samples, acks));
        delete_topic(&addr, &topic);
    }

    // Many partitions and many connections, against the shapes that isolate each.
    let wide_total = scaled(256.0 * 1024.0);
    let mut wide_rows = Vec::new();
    for &(conns, parts) in &[(1u64, 1000i32), (100, 16), (100, 1000)] {
        eprintln!("wide: {conns} producers over {parts} partitions");
        wide_rows.push(wide_run(&broker, conns, parts, wide_total / conns));
    }
    let after_load = broker.stat();
    broker.stop();

    // Start-up on a large log after a clean shutdown.
    let (broker, _) = Broker::start(&work.join("data"), port);
    create_topic(&addr, "bulk", 8);
    let bulk_count = (startup_gb * 1e9 / 1024.0) as u64;
    eprintln!("bulk: {bulk_count} x 1 KiB for the restart measurement");
    let _ = produce_run(&addr, "bulk", 8, 1024, bulk_count, "1");
    broker.stop();
    let stored = dir_bytes(&work.join("data"));
    let (broker, startup_full) = Broker::start(&work.join("data"), port);
    std::thread::sleep(Duration::from_millis(500));
    let idle_full = broker.stat();
    broker.stop();
    let _ = std::fs::remove_dir_all(&work);

    // -----------------------------------------------------------------------
    let mut md = String::new();
    let commit = sh(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let (_, rdk) = rdkafka::util::get_rdkafka_version();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo bench --features bench-e2e --bench e2e` (see `benches/e2e.rs`); \
         every figure below comes from one run of that command. Client and broker share \
         the machine. MB = 10^6 bytes of record values; CPU is user + system seconds \
         from `/proc`.\n"
    );
    let _ = writeln!(md, "- Machine: {}", machine());
    let _ = writeln!(md, "- Commit: `{commit}`, run {date}");
    let _ = writeln!(
        md,
        "- Client: librdkafka {rdk} through the `rdkafka` crate, default settings except `acks` where stated"
    );
    let _ = writeln!(
        md,
        "- Broker: release build, default flags, data under `target/bench-e2e/`\n"
    );

    let _ = writeln!(md, "## The machine's floor\n");
    let _ = writeln!(md, "| measure | value |\n|---|---|");
    let _ = writeln!(
        md,
        "| loopback TCP, two processes, 1 MiB writes | {} MB/s |",
        mb(tcp)
    );
    let _ = writeln!(
        md,
        "| fdatasync after a 4 KiB append ({} samples) | p50 {} ms, p99 {} ms |",
        sync.len(),
        ms(quantile(&sync, 0.5)),
        ms(quantile(&sync, 0.99))
    );
    let _ = writeln!(
        md,
        "| durable sequential write: 1 MiB appends, fdatasync back to back on a second thread (group commit) | {} MB/s |\n",
        mb(durable)
    );

    let _ = writeln!(md, "## Produce\n");
    let _ = writeln!(
        md,
        "One producer, records round-robin over the partitions, until every delivery report is in.\n"
    );
    let _ = writeln!(
        md,
        "| record | acks | partitions | records | msgs/s | MB/s | vs TCP floor | vs durable-write floor | broker CPU s/GB | client CPU s/GB | broker peak RSS MiB |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &produce_rows {
        let gb = r.bytes() as f64 / 1e9;
        let _ = writeln!(
            md,
            "| {} B | {} | {} | {} | {:.0} | {} | {:.2} | {} | {:.2} | {:.2} | {} |",
            r.size,
            r.acks,
            r.partitions,
            r.count,
            r.count as f64 / r.elapsed.as_secs_f64(),
            mb(r.rate()),
            r.rate() / tcp,
            if r.acks == "all" {
                format!("{:.2}", r.rate() / durable)
            } else {
                "-".into()
            },
            r.broker_cpu / gb,
            r.client_cpu / gb,
            mib(r.rss_peak),
        );
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Consume\n");
    let crate_ = consume_bytes as f64 / consume_elapsed.as_secs_f64();
    let cgb = consume_bytes as f64 / 1e9;
    let _ = writeln!(
        md,
        "Default consumer settings, `assign()` from the beginning, 1 KiB records already in the page cache.\n"
    );
    let _ = writeln!(
        md,
        "| workload | records | MB/s | vs TCP floor | broker CPU s/GB | client CPU s/GB |\n|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        md,
        "| 1 partition | {} | {} | {:.2} | {:.3} | {:.2} |",
        consume_count,
        mb(crate_),
        crate_ / tcp,
        consume_broker_cpu / cgb,
        consume_client_cpu / cgb
    );
    let _ = writeln!(
        md,
        "\nReads of 1,000-partition topics are under *Many partitions* below.\n"
    );

    let _ = writeln!(md, "## Produce-to-consume latency\n");
    let _ = writeln!(
        md,
        "100 B records at a fixed rate, one partition, default producer (linger 5 ms, acks=all) and consumer settings; time from `send()` to the consumer's `poll()` returning the record; the first second is warm-up.\n"
    );
    let _ = writeln!(
        md,
        "| rate msg/s | samples | p50 ms | p99 ms | p99.9 ms | max ms | send-to-ack p50 ms | send-to-ack p99 ms |\n|---|---|---|---|---|---|---|---|"
    );
    for (rate, s, a) in &latency_rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            rate,
            s.len(),
            ms(quantile(s, 0.5)),
            ms(quantile(s, 0.99)),
            ms(quantile(s, 0.999)),
            ms(quantile(s, 1.0)),
            ms(quantile(a, 0.5)),
            ms(quantile(a, 0.99)),
        );
    }
    let _ = writeln!(
        md,
        "\nThe floor here is the producer's own `linger.ms` (5 ms by default): a record waits up to that long before its batch is sent, which send-to-ack shows. The broker's share is send-to-ack minus linger (an fdatasync, p99 {} ms above) plus the fetch wake-up.",
        ms(quantile(&sync, 0.99))
    );
    let _ = writeln!(md);

    let _ = writeln!(md, "## Many partitions, many connections\n");
    let _ = writeln!(
        md,
        "Producers (one connection each, acks=all) write 1 KiB records round-robin over every partition of a fresh topic; one consumer then reads the whole topic. The first two rows separate the cost of partitions from the cost of connections.\n"
    );
    let _ = writeln!(
        md,
        "| producers | partitions | records | produce MB/s | broker CPU s/GB | client CPU s/GB | broker peak RSS MiB | consume MB/s | consume broker CPU s/GB |\n|---|---|---|---|---|---|---|---|---|"
    );
    for w in &wide_rows {
        let gb = w.bytes as f64 / 1e9;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.2} | {:.2} | {} | {} | {:.3} |",
            w.conns,
            w.partitions,
            w.bytes / 1024,
            mb(w.bytes as f64 / w.produce.as_secs_f64()),
            w.broker_cpu / gb,
            w.client_cpu / gb,
            mib(w.rss_peak),
            mb(w.bytes as f64 / w.consume.as_secs_f64()),
            w.consume_cpu / gb
        );
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Start-up and memory\n");
    let _ = writeln!(md, "| measure | value |\n|---|---|");
    let _ = writeln!(
        md,
        "| start-up to accepting connections, empty data dir | {} ms |",
        ms(startup_empty.as_secs_f64())
    );
    let _ = writeln!(md, "| idle RSS, empty | {} MiB |", mib(idle_empty.rss));
    let _ = writeln!(
        md,
        "| RSS after all of the above (idle, topics deleted) | {} MiB (peak {} MiB) |",
        mib(after_load.rss),
        mib(after_load.rss_peak)
    );
    let _ = writeln!(
        md,
        "| start-up after a clean shutdown, {:.1} GB stored | {} ms |",
        stored as f64 / 1e9,
        ms(startup_full.as_secs_f64())
    );
    let _ = writeln!(
        md,
        "| idle RSS with {:.1} GB stored | {} MiB |\n",
        stored as f64 / 1e9,
        mib(idle_full.rss)
    );

    // Targets of issue 4, checked against the figures above.
    let row = |size: usize, acks: &str, parts: i32| {
        produce_rows
            .iter()
            .find(|r| r.size == size && r.acks == acks && r.partitions == parts)
    };
    let mut targets: Vec<(String, String, bool)> = Vec::new();
    targets.push((
        "consume 1 KiB, default settings: >= 450 MB/s, <= 0.1 broker CPU s/GB".into(),
        format!("{} MB/s, {:.3} s/GB", mb(crate_), consume_broker_cpu / cgb),
        crate_ >= 450.0 * MB && consume_broker_cpu / cgb <= 0.1,
    ));
    if let Some(r) = row(1024, "all", 1) {
        let gb = r.bytes() as f64 / 1e9;
        targets.push((
            "produce 1 KiB acks=all (1 partition): >= 700 MB/s, <= 0.3 broker CPU s/GB".into(),
            format!("{} MB/s, {:.2} s/GB", mb(r.rate()), r.broker_cpu / gb),
            r.rate() >= 700.0 * MB && r.broker_cpu / gb <= 0.3,
        ));
    }
    if let Some((_, s, _)) = latency_rows.iter().find(|(r, _, _)| *r == 5000) {
        let p99 = quantile(s, 0.99);
        targets.push((
            "produce-to-consume p99 at 5,000 msg/s of 100 B: <= 5 ms".into(),
            format!("{} ms", ms(p99)),
            p99 <= 0.005,
        ));
    }
    targets.push((
        "idle RSS < 30 MB (empty, and with the large log)".into(),
        format!(
            "{:.1} MB / {:.1} MB",
            idle_empty.rss as f64 / MB,
            idle_full.rss as f64 / MB
        ),
        (idle_empty.rss as f64) < 30.0 * MB && (idle_full.rss as f64) < 30.0 * MB,
    ));
    targets.push((
        "start-up < 100 ms empty".into(),
        format!("{} ms", ms(startup_empty.as_secs_f64())),
        startup_empty < Duration::from_millis(100),
    ));
    targets.push((
        format!(
            "start-up < 2 s on {:.1} GB after a clean shutdown (target is stated for 10 GB)",
            stored as f64 / 1e9
        ),
        format!("{} ms", ms(startup_full.as_secs_f64())),
        startup_full < Duration::from_secs(2),
    ));
    validation_section(
        &mut md,
        &root,
        row(1024, "all", 1).map(|r| r.broker_cpu / (r.bytes() as f64 / 1e9)),
    );
    if let Ok(baseline) = std::env::var("SLUICE_BENCH_BASELINE") {
        baseline_section(&mut md, &work, &baseline);
    }
    transactions_section(&mut md, &work);
    compaction_section(&mut md, &work);
    tls_section(&mut md, &work);
    let _ = writeln!(md, "## Targets (issue 4)\n");
    let _ = writeln!(md, "| target | measured | met |\n|---|---|---|");
    for (t, m, ok) in &targets {
        let _ = writeln!(md, "| {t} | {m} | {} |", if *ok { "yes" } else { "**no**" });
    }

    std::fs::write(&out_path, &md).expect("write report");
    println!("{md}");
    eprintln!("report written to {}", out_path.display());
}

/// `SLUICE_BENCH_BASELINE=<path to another sluice binary>`: a few produce shapes
/// against that build and this one, alternating, on the same machine in the same
/// run, so a change's cost is not confused with the machine's.
fn baseline_section(md: &mut String, work: &Path, baseline: &str) {
    let this = env!("CARGO_BIN_EXE_sluice");
    std::fs::create_dir_all(work).expect("work dir");
    let shapes: [(usize, &str, i32); 3] = [(1024, "all", 1), (100, "1", 1), (100, "all", 16)];
    let rounds = 3;
    // `SLUICE_BENCH_BASELINE_LABEL` names the baseline (a commit) in the report.
    let label =
        std::env::var("SLUICE_BENCH_BASELINE_LABEL").unwrap_or_else(|_| baseline.to_string());
    let _ = writeln!(md, "## Against a baseline build\n");
    let _ = writeln!(
        md,
        "`{label}` and this build, alternating, {rounds} rounds of each shape ({} MB each); \
         medians. Broker CPU is per GB of record values.\n",
        scaled(5e8) / 1_000_000
    );
    let _ = writeln!(
        md,
        "| record | acks | partitions | baseline MB/s | this MB/s | baseline broker CPU s/GB | this broker CPU s/GB |\n|---|---|---|---|---|---|---|"
    );
    for (size, acks, partitions) in shapes {
        let mut runs: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, exe) in [baseline, this].into_iter().enumerate() {
                let dir = work.join(format!("baseline-{i}"));
                let _ = std::fs::remove_dir_all(&dir);
                let (broker, _) = Broker::start_exe(exe, &dir, free_port());
                let addr = broker.addr.clone();
                create_topic(&addr, "ab", partitions);
                let count = scaled(5e8 / size as f64);
                let b0 = broker.stat();
                let elapsed = produce_run(&addr, "ab", partitions, size, count, acks);
                let b1 = broker.stat();
                let gb = (count * size as u64) as f64 / 1e9;
                runs[i].push((gb * 1e9 / elapsed.as_secs_f64(), (b1.cpu_s - b0.cpu_s) / gb));
                broker.stop();
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let [old, new] = runs;
        let (mut om, mut oc): (Vec<f64>, Vec<f64>) = old.into_iter().unzip();
        let (mut nm, mut nc): (Vec<f64>, Vec<f64>) = new.into_iter().unzip();
        let _ = writeln!(
            md,
            "| {size} B | {acks} | {partitions} | {} | {} | {:.2} | {:.2} |",
            mb(median(&mut om)),
            mb(median(&mut nm)),
            median(&mut oc),
            median(&mut nc)
        );
    }
    let _ = writeln!(md);
}

/// The mean time (ns) and throughput bytes of a criterion benchmark, from the
/// files `cargo bench --bench log` leaves under `target/criterion/`.
fn criterion_result(root: &std::path::Path, dir: &str) -> Option<(f64, f64)> {
    let base = root.join("target").join("criterion").join(dir).join("new");
    let est = std::fs::read_to_string(base.join("estimates.json")).ok()?;
    let bench = std::fs::read_to_string(base.join("benchmark.json")).ok()?;
    let number_after = |text: &str, key: &str| -> Option<f64> {
        let at = text.find(key)? + key.len();
        let rest = &text[at..];
        let end = rest.find([',', '}'])?;
        rest[..end].trim().parse().ok()
    };
    let mean = number_after(&est[est.find("\"mean\"")?..], "\"point_estimate\":")?;
    let bytes = number_after(&bench, "\"Bytes\":")?;
    Some((mean, bytes))
}

/// Record validation per codec, from the criterion run of `benches/log.rs`
/// (`cargo bench --bench log -- validate`, run before this benchmark), next to
/// the broker CPU of an uncompressed 1 KiB acks=all produce measured above.
fn validation_section(md: &mut String, root: &std::path::Path, produce_s_per_gb: Option<f64>) {
    let Some((header_ns, bytes)) = criterion_result(root, "validate/header_crc_none") else {
        let _ = writeln!(
            md,
            "## Record validation\n\nNot measured in this run: `cargo bench --bench log -- validate` first.\n"
        );
        return;
    };
    let s_per_gb = |ns: f64| ns / bytes;
    let _ = writeln!(md, "## Record validation\n");
    let _ = writeln!(
        md,
        "Every produced batch is validated in full before it is stored (issue 9). From \
         `cargo bench --bench log -- validate`: one batch of 16 records of 1 KiB ({bytes:.0} bytes \
         uncompressed), text-like values; CPU per GB of uncompressed records. The first row is \
         what produce checked before (header and CRC-32C), measured in the same run; \
         \"codec alone\" inflates the same payload with the codec's library."
    );
    if let Some(p) = produce_s_per_gb {
        let _ = writeln!(
            md,
            "For scale: an uncompressed 1 KiB acks=all produce above cost the broker {p:.2} CPU s/GB in all.\n"
        );
    }
    let _ = writeln!(
        md,
        "| batch | validation µs | CPU s/GB | codec alone µs |\n|---|---|---|---|"
    );
    let _ = writeln!(
        md,
        "| uncompressed, header and CRC only | {:.2} | {:.3} | - |",
        header_ns / 1e3,
        s_per_gb(header_ns)
    );
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let Some((ns, _)) = criterion_result(root, &format!("validate/full_{codec}")) else {
            continue;
        };
        let alone = criterion_result(root, &format!("validate/inflate_only_{codec}"))
            .map_or("-".to_string(), |(n, _)| format!("{:.1}", n / 1e3));
        let _ = writeln!(
            md,
            "| {codec}, full | {:.2} | {:.3} | {alone} |",
            ns / 1e3,
            s_per_gb(ns)
        );
    }
    let _ = writeln!(md);
}

/// One many-partitions run.
struct WideRow {
    /// Producer instances, one connection each.
    conns: u64,
    /// Partitions of the topic.
    partitions: i32,
    /// Record value bytes produced (and consumed).
    bytes: u64,
    /// Time until every delivery report was in.
    produce: Duration,
    /// Time to consume everything back.
    consume: Duration,
    /// Broker CPU seconds while producing.
    broker_cpu: f64,
    /// This process's CPU seconds while producing.
    client_cpu: f64,
    /// Broker peak RSS after producing.
    rss_peak: u64,
    /// Broker CPU seconds while consuming.
    consume_cpu: f64,
}

/// `conns` producers each send `per_conn` 1 KiB records round-robin over every
/// partition of a fresh `partitions`-wide topic (starting at different
/// partitions); then one consumer reads the topic back.
fn wide_run(broker: &Broker, conns: u64, partitions: i32, per_conn: u64) -> WideRow {
    let topic = format!("wide-{conns}-{partitions}");
    let addr = broker.addr.clone();
    create_topic(&addr, &topic, partitions);
    let producers: Vec<BaseProducer<Counting>> = (0..conns)
        .map(|_| {
            let p = producer(&addr, "all");
            p.client()
                .fetch_metadata(Some(&topic), Duration::from_secs(30))
                .expect("metadata");
            p
        })
        .collect();
    let (b0, c0) = (broker.stat(), self_cpu());
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for (c, p) in producers.iter().enumerate() {
            let topic = &topic;
            scope.spawn(move || {
                let value = payload(1024);
                for i in 0..per_conn {
                    let part = ((c as u64 * 7 + i) % partitions as u64) as i32;
                    send(p, topic, part, &value);
                    if i % 256 == 0 {
                        p.poll(Duration::ZERO);
                    }
                }
                p.flush(Duration::from_secs(300)).expect("flush");
                assert_eq!(p.context().failed.load(Ordering::Relaxed), 0);
            });
        }
    });
    let produce = t0.elapsed();
    let (b1, c1) = (broker.stat(), self_cpu());
    drop(producers);
    let (consume, bytes) = consume_run(&addr, &topic, partitions, conns * per_conn);
    let b2 = broker.stat();
    delete_topic(&addr, &topic);
    WideRow {
        conns,
        partitions,
        bytes,
        produce,
        consume,
        broker_cpu: b1.cpu_s - b0.cpu_s,
        client_cpu: c1 - c0,
        rss_peak: b1.rss_peak,
        consume_cpu: b2.cpu_s - b1.cpu_s,
    }
}

/// Runs one produce configuration `size/acks/partitions` and a consume of it.
fn profile_one(work: &Path, spec: &str) {
    let parts: Vec<&str> = spec.split('/').collect();
    let (Some(size), Some(acks), Some(partitions)) = (
        parts.first().and_then(|s| s.parse::<usize>().ok()),
        parts.get(1),
        parts.get(2).and_then(|s| s.parse::<i32>().ok()),
    ) else {
        panic!("SLUICE_BENCH_ONLY wants size/acks/partitions, e.g. 1024/all/16");
    };
    let (broker, _) = Broker::start(&work.join("data"), free_port());
    if let Ok(f) = std::env::var("SLUICE_BENCH_BROKER_PID_FILE") {
        std::fs::write(f, broker.child.id().to_string()).expect("pid file");
    }
    let addr = broker.addr.clone();
    create_topic(&addr, "only", partitions);
    let count = scaled(1e9 / size as f64);
    let (b0, c0) = (broker.stat(), self_cpu());
    let elapsed = produce_run(&addr, "only", partitions, size, count, acks);
    let (b1, c1) = (broker.stat(), self_cpu());
    let gb = (count * size as u64) as f64 / 1e9;
    println!(
        "produce {size} B acks={acks} x{partitions}: {} MB/s, broker {:.2} s/GB, client {:.2} s/GB",
        mb(gb * 1e9 / elapsed.as_secs_f64()),
        (b1.cpu_s - b0.cpu_s) / gb,
        (c1 - c0) / gb
    );
    if let Ok(f) = std::env::var("SLUICE_BENCH_CONSUME_MARK") {
        std::fs::write(f, "consume").expect("mark file");
    }
    let (b0, c0) = (broker.stat(), self_cpu());
    let (elapsed, bytes) = consume_run(&addr, "only", partitions, count);
    let (b1, c1) = (broker.stat(), self_cpu());
    let gb = bytes as f64 / 1e9;
    println!(
        "consume: {} MB/s, broker {:.3} s/GB, client {:.2} s/GB",
        mb(bytes as f64 / elapsed.as_secs_f64()),
        (b1.cpu_s - b0.cpu_s) / gb,
        (c1 - c0) / gb
    );
    broker.stop();
}

/// Disk space used by the files under `dir` (allocated blocks, not apparent size).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += std::os::unix::fs::MetadataExt::blocks(&m) * 512,
                Err(_) => {}
            }
        }
    }
    total
}
