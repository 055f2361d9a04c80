//! Every setting and limit of the broker, with its default and the reason for it.
//! Each flag can also be set through an environment variable (`SLUICE_*`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::log::LogConfig;

/// Broker configuration, parsed from flags and `SLUICE_*` environment variables.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-wire-compatible message broker"
)]
pub struct Config {
    /// Address to accept Kafka client connections on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,

    /// Address of the HTTP listener serving `/metrics` (Prometheus), `/healthz` and
    /// `/readyz`; `off` disables it. Loopback by default: metrics name topics and groups.
    #[arg(long, env = "SLUICE_METRICS_LISTEN", default_value = "127.0.0.1:9644", value_parser = parse_listen)]
    pub metrics_listen: Listen,

    /// Most partitions reported one by one in `/metrics` (offsets, sizes, lag);
    /// partitions past it are summed per topic (and per group and topic for lag) under
    /// `partition="_other"`, so a broker with many partitions keeps a bounded scrape.
    #[arg(long, env = "SLUICE_METRICS_PARTITIONS_MAX", default_value_t = 2000)]
    pub metrics_partitions_max: usize,

    /// Most HTTP connections open at once on the metrics listener; more wait in its backlog.
    #[arg(long, env = "SLUICE_METRICS_CONNECTIONS_MAX", default_value_t = 64)]
    pub metrics_connections_max: usize,

    /// Address of the HTTP gateway: the REST Proxy v2 API, WebSocket and
    /// Server-Sent Events consumers, and the web console. Off by default (it
    /// serves data); `--http-listen` alone binds `127.0.0.1:8082`.
    #[arg(long, env = "SLUICE_HTTP_LISTEN", default_value = "off", value_parser = parse_listen,
        num_args = 0..=1, default_missing_value = "127.0.0.1:8082")]
    pub http_listen: Listen,

    /// Serve the gateway over HTTPS with the `--ssl-keystore-*` certificate.
    #[arg(long, env = "SLUICE_HTTP_TLS", default_value_t = false)]
    pub http_tls: bool,

    /// How gateway callers authenticate: `none` (everyone is `User:ANONYMOUS`),
    /// `basic` (HTTP Basic against the SCRAM users, as SASL/PLAIN), `bearer`
    /// (a JWT validated as OAUTHBEARER's), or `basic,bearer`.
    #[arg(long, env = "SLUICE_HTTP_AUTH", default_value = "none")]
    pub http_auth: String,

    /// The gateway's base URL as clients reach it (in `base_uri` of new
    /// consumer instances); by default the scheme and `Host` of the request.
    #[arg(long, env = "SLUICE_HTTP_ADVERTISED_URL")]
    pub http_advertised_url: Option<String>,

    /// Web origins (`https://app.example.com`, comma-separated; `*` for
    /// any) whose pages may call the gateway from a browser, besides its own
    /// (the console). Others are refused: a page from anywhere could
    /// otherwise read and write topics with the visitor's credentials.
    #[arg(long, env = "SLUICE_HTTP_ALLOWED_ORIGINS", default_value = "")]
    pub http_allowed_origins: String,

    /// Most gateway connections open at once; more wait in its backlog. Each
    /// long poll, WebSocket or SSE stream holds one for its life.
    #[arg(long, env = "SLUICE_HTTP_CONNECTIONS_MAX", default_value_t = 256)]
    pub http_connections_max: usize,

    /// A gateway connection that moves no byte either way for this long is
    /// closed (streams send keep-alives well within it).
    #[arg(long, env = "SLUICE_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub http_idle_timeout_ms: u64,

    /// Largest request body the gateway reads (a produce request's records):
    /// bodies are held in memory whole, so this bounds each connection's share.
    #[arg(long, env = "SLUICE_HTTP_REQUEST_BODY_MAX_BYTES", default_value_t = 8 << 20)]
    pub http_request_body_max_bytes: usize,

    /// Most records one records request returns, whatever `max_bytes` allows:
    /// tiny records cost far more memory than their key and value bytes.
    #[arg(
        long,
        env = "SLUICE_HTTP_CONSUMER_REQUEST_RECORDS_MAX",
        default_value_t = 50_000
    )]
    pub http_consumer_request_records_max: usize,

    /// Most REST consumer instances at once (each is a group member with a
    /// heartbeat task and positions); creating more answers 429.
    #[arg(
        long,
        env = "SLUICE_HTTP_CONSUMER_INSTANCES_MAX",
        default_value_t = 1000
    )]
    pub http_consumer_instances_max: usize,

    /// Most REST consumer instances one principal may hold, so one caller
    /// cannot take every slot of `--http-consumer-instances-max`.
    #[arg(
        long,
        env = "SLUICE_HTTP_CONSUMER_INSTANCES_PER_PRINCIPAL_MAX",
        default_value_t = 500
    )]
    pub http_consumer_instances_per_principal_max: usize,

    /// A REST consumer instance not used for this long is closed and leaves
    /// its group (REST Proxy's `consumer.instance.timeout.ms`).
    #[arg(
        long,
        env = "SLUICE_HTTP_CONSUMER_INSTANCE_TIMEOUT_MS",
        default_value_t = 300_000
    )]
    pub http_consumer_instance_timeout_ms: u64,

    /// How long a records request waits for data when it names no `timeout`
    /// (REST Proxy's `consumer.request.timeout.ms`).
    #[arg(
        long,
        env = "SLUICE_HTTP_CONSUMER_REQUEST_TIMEOUT_MS",
        default_value_t = 1_000
    )]
    pub http_consumer_request_timeout_ms: u64,

    /// The longest a records request may wait, whatever it asks: a parked
    /// request holds a connection, so it must end well within the idle timeout.
    #[arg(
        long,
        env = "SLUICE_HTTP_CONSUMER_REQUEST_TIMEOUT_MAX_MS",
        default_value_t = 30_000
    )]
    pub http_consumer_request_timeout_max_ms: u64,

    /// Most record bytes (keys and values) one records request returns,
    /// whatever `max_bytes` asks: the response is built in memory.
    #[arg(long, env = "SLUICE_HTTP_CONSUMER_REQUEST_MAX_BYTES", default_value_t = 8 << 20)]
    pub http_consumer_request_max_bytes: u64,

    /// Most record credit a WebSocket consumer may hold at once (records
    /// granted and not yet sent); a grant past it is refused. Bounds what one
    /// socket can ask the broker to push without reading.
    #[arg(
        long,
        env = "SLUICE_HTTP_WS_CREDIT_RECORDS_MAX",
        default_value_t = 10_000
    )]
    pub http_ws_credit_records_max: u64,

    /// Most key and value bytes read from the log for one WebSocket or SSE
    /// frame: what a stream holds in memory at a time.
    #[arg(long, env = "SLUICE_HTTP_WS_FRAME_BYTES_MAX", default_value_t = 1 << 20)]
    pub http_ws_frame_bytes_max: u64,

    /// How often an idle WebSocket is pinged (and an SSE stream sends a
    /// comment), keeping it inside the idle timeout and finding dead peers.
    #[arg(
        long,
        env = "SLUICE_HTTP_WS_PING_INTERVAL_MS",
        default_value_t = 20_000
    )]
    pub http_ws_ping_interval_ms: u64,

    /// Most records a WebSocket producer has in flight (one append and its
    /// acknowledgements at a time; the socket is not read meanwhile).
    #[arg(
        long,
        env = "SLUICE_HTTP_WS_PRODUCE_INFLIGHT_MAX",
        default_value_t = 1000
    )]
    pub http_ws_produce_inflight_max: usize,

    /// HOST:PORT that clients are told to connect to (in Metadata).
    /// Defaults to the listen address; set it when clients reach the broker through another name.
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,

    /// Kafka's `listeners`: `NAME://HOST:PORT` entries, comma-separated, each
    /// with its security protocol from `--listener-security-protocol-map`
    /// (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL). Replaces `--listen` when given.
    #[arg(long, env = "SLUICE_LISTENERS")]
    pub listeners: Option<String>,

    /// Kafka's `listener.security.protocol.map`: `NAME:PROTOCOL` pairs; a
    /// listener named after a protocol has that protocol by default.
    #[arg(
        long,
        env = "SLUICE_LISTENER_SECURITY_PROTOCOL_MAP",
        default_value = ""
    )]
    pub listener_security_protocol_map: String,

    /// Kafka's `advertised.listeners`: `NAME://HOST:PORT` per listener that
    /// clients must reach by another address than the one bound.
    #[arg(long, env = "SLUICE_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,

    /// SASL mechanisms SASL listeners enable (Kafka's `sasl.enabled.mechanisms`):
    /// any of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN (checked against the SCRAM
    /// users; sends the password in clear text on a SASL_PLAINTEXT listener)
    /// and OAUTHBEARER (see `--sasl-oauthbearer-*`).
    #[arg(
        long,
        env = "SLUICE_SASL_ENABLED_MECHANISMS",
        default_value = "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"
    )]
    pub sasl_enabled_mechanisms: String,

    /// Kafka's `connections.max.reauth.ms`: a SASL session's lifetime, told to
    /// the client in SaslAuthenticate; a client that has not re-authenticated
    /// by then has its connection closed at its next request. 0: sessions last
    /// as long as their connection (credential changes then reach open
    /// connections only when they reconnect).
    #[arg(long, env = "SLUICE_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0)]
    pub connections_max_reauth_ms: u64,

    /// Failed SASL authentications allowed from one address within
    /// `--auth-failures-window-ms`; after that, attempts from the address fail
    /// unchecked until the window ends, which makes guessing passwords slow.
    /// 0 turns the limit off.
    #[arg(long, env = "SLUICE_AUTH_FAILURES_PER_IP_MAX", default_value_t = 20)]
    pub auth_failures_per_ip_max: u32,

    /// The window of `--auth-failures-per-ip-max`.
    #[arg(long, env = "SLUICE_AUTH_FAILURES_WINDOW_MS", default_value_t = 60_000)]
    pub auth_failures_window_ms: u64,

    /// Most source addresses whose failures are counted at once (about 50
    /// bytes each); beyond that, new addresses are not limited until old
    /// windows end, so a spread-out attack cannot grow memory.
    #[arg(
        long,
        env = "SLUICE_AUTH_FAILURES_ADDRESSES_MAX",
        default_value_t = 65_536
    )]
    pub auth_failures_addresses_max: usize,

    /// Kafka's `quota.window.size.seconds`, in ms: quota rates are sampled in
    /// windows this long.
    #[arg(long, env = "SLUICE_QUOTA_WINDOW_MS", default_value_t = 1000)]
    pub quota_window_ms: u64,

    /// Kafka's `quota.window.num`: windows a quota rate is measured over
    /// (the longest a client is throttled at once is all of them).
    #[arg(long, env = "SLUICE_QUOTA_WINDOW_NUM", default_value_t = 11)]
    pub quota_window_num: usize,

    /// Most quota buckets (users, client ids) measured at once, about 200
    /// bytes each; idle ones are dropped to make room.
    #[arg(long, env = "SLUICE_QUOTA_BUCKETS_MAX", default_value_t = 100_000)]
    pub quota_buckets_max: usize,

    /// Kafka's `authorizer.class.name`: `acl` enforces the ACLs (managed with
    /// CreateAcls, DescribeAcls and DeleteAcls) on every request; `none` (the
    /// default, as Kafka without an authorizer) allows everything and refuses
    /// the ACL APIs with SECURITY_DISABLED.
    #[arg(long, env = "SLUICE_AUTHORIZER", default_value = "none", value_parser = ["none", "acl"])]
    pub authorizer: String,

    /// Kafka's `super.users`: principals allowed everything whatever the ACLs
    /// say, `;`-separated (`User:admin;User:CN=ops,O=Acme`).
    #[arg(long, env = "SLUICE_SUPER_USERS", default_value = "")]
    pub super_users: String,

    /// Kafka's `allow.everyone.if.no.acl.found`: a resource that no ACL covers
    /// is open to every principal (otherwise only to super users).
    #[arg(
        long,
        env = "SLUICE_ALLOW_EVERYONE_IF_NO_ACL_FOUND",
        default_value_t = false
    )]
    pub allow_everyone_if_no_acl_found: bool,

    /// Kafka's `sasl.oauthbearer.jwks.endpoint.url`: where the keys
    /// OAUTHBEARER tokens must be signed with are published, as a JWKS
    /// document: `https://`, `http://` or `file://`. Fetched at start and
    /// every `--sasl-oauthbearer-jwks-endpoint-refresh-ms`.
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_JWKS_ENDPOINT_URL")]
    pub sasl_oauthbearer_jwks_endpoint_url: Option<String>,

    /// Kafka's `sasl.oauthbearer.jwks.endpoint.refresh.ms`: how often the
    /// JWKS is fetched again (an identity provider rotates its keys); a token
    /// naming an unknown key brings the next fetch forward.
    #[arg(
        long,
        env = "SLUICE_SASL_OAUTHBEARER_JWKS_ENDPOINT_REFRESH_MS",
        default_value_t = 3_600_000
    )]
    pub sasl_oauthbearer_jwks_endpoint_refresh_ms: u64,

    /// Kafka's `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms`: the first
    /// wait after a failed fetch (doubled after each failure).
    #[arg(
        long,
        env = "SLUICE_SASL_OAUTHBEARER_JWKS_ENDPOINT_RETRY_BACKOFF_MS",
        default_value_t = 100
    )]
    pub sasl_oauthbearer_jwks_endpoint_retry_backoff_ms: u64,

    /// Kafka's `sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms`: the
    /// longest wait between failed fetches, and the least time between
    /// fetches brought forward by unknown keys (so a client sending made-up
    /// key ids cannot make the broker hammer its identity provider).
    #[arg(
        long,
        env = "SLUICE_SASL_OAUTHBEARER_JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS",
        default_value_t = 10_000
    )]
    pub sasl_oauthbearer_jwks_endpoint_retry_backoff_max_ms: u64,

    /// PEM file of the CA certificates an `https://` JWKS endpoint is checked
    /// against; without it, the system's CA store.
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_JWKS_TRUSTSTORE_LOCATION")]
    pub sasl_oauthbearer_jwks_truststore_location: Option<PathBuf>,

    /// Longest one JWKS fetch may take, connect to last byte: a stalled
    /// identity provider must not hold the refresher forever.
    #[arg(
        long,
        env = "SLUICE_SASL_OAUTHBEARER_JWKS_FETCH_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub sasl_oauthbearer_jwks_fetch_timeout_ms: u64,

    /// Largest JWKS document accepted, 1 MiB: a key set is a few KiB, and the
    /// response is read into memory.
    #[arg(
        long,
        env = "SLUICE_SASL_OAUTHBEARER_JWKS_MAX_BYTES",
        default_value_t = 1 << 20
    )]
    pub sasl_oauthbearer_jwks_max_bytes: usize,

    /// Kafka's `sasl.oauthbearer.expected.issuer`: the `iss` signed tokens must carry.
    #[arg(long, env = "SLUICE_SASL_OAUTHBEARER_EXPECTED_ISSUER")]
    pub sasl_oauthbearer_expected_issuer: Option<String>,

    /// Kafka's `sasl.oauthbearer.expected.audience`: comma-separated; a signed
    /// token's `aud` must name one of them.
    #[arg(
        long,
        env = "SLUICE_SASL_OAUTHBEARER_EXPECTED_AUDIENCE",
        default_value = ""
    )]
    pub sasl_oauthbearer_expected_audience: String,

    /// Kafka's `sasl.oauthbearer.sub.claim.name`: the claim naming the principal.
    #[arg(
        long,
        env = "SLUICE_SASL_OAUTHBEARER_SUB_CLAIM_NAME",
        default_value = "sub"
    )]
    pub sasl_oauthbearer_sub_claim_name: String,

    /// Kafka's `sasl.oauthbearer.clock.skew.seconds`: tolerated clock
    /// difference for a token's times.
    #[arg(
        long,
        env = "SLUICE_SASL_OAUTHBEARER_CLOCK_SKEW_SECONDS",
        default_value_t = 30
    )]
    pub sasl_oauthbearer_clock_skew_seconds: u64,

    /// Accept unsigned OAUTHBEARER tokens (`alg: none`), as Kafka's default
    /// unsecured validator does; for development only, and required to be said
    /// out loud: OAUTHBEARER without this flag needs a JWKS.
    #[arg(
        long,
        env = "SLUICE_SASL_OAUTHBEARER_UNSECURED_TOKENS",
        default_value_t = false
    )]
    pub sasl_oauthbearer_unsecured_tokens: bool,

    /// PEM file holding the TLS certificate chain (leaf first) and its
    /// unencrypted private key, for SSL and SASL_SSL listeners (Kafka's
    /// `ssl.keystore.location` with `ssl.keystore.type=PEM`). Re-read when it
    /// changes (see `--ssl-reload-interval-ms`).
    #[arg(long, env = "SLUICE_SSL_KEYSTORE_LOCATION")]
    pub ssl_keystore_location: Option<PathBuf>,

    /// PEM file of the CA certificates that client certificates must chain to
    /// (Kafka's `ssl.truststore.location`); needed when `--ssl-client-auth` is
    /// `requested` or `required`.
    #[arg(long, env = "SLUICE_SSL_TRUSTSTORE_LOCATION")]
    pub ssl_truststore_location: Option<PathBuf>,

    /// Kafka's `ssl.client.auth`: `required` refuses clients without a trusted
    /// certificate, `requested` asks for one and accepts none, `none` does not ask.
    /// A certificate's subject becomes the principal on SSL listeners.
    #[arg(long, env = "SLUICE_SSL_CLIENT_AUTH", default_value = "none", value_parser = parse_client_auth)]
    pub ssl_client_auth: ClientAuth,

    /// Kafka's `ssl.enabled.protocols`: TLSv1.2 and/or TLSv1.3.
    #[arg(
        long,
        env = "SLUICE_SSL_ENABLED_PROTOCOLS",
        default_value = "TLSv1.2,TLSv1.3"
    )]
    pub ssl_enabled_protocols: String,

    /// How often the keystore and truststore are checked for changes; changed
    /// files are loaded for new connections without a restart (certificate
    /// rotation). A stat of two files: cheap, but no reason to do it often.
    /// 0 turns reloading off.
    #[arg(long, env = "SLUICE_SSL_RELOAD_INTERVAL_MS", default_value_t = 10_000)]
    pub ssl_reload_interval_ms: u64,

    /// Longest a new TLS connection may take to finish its handshake: a client
    /// that connects and stalls must not hold a connection slot.
    #[arg(
        long,
        env = "SLUICE_SSL_HANDSHAKE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub ssl_handshake_timeout_ms: u64,

    /// Directory holding topic data and broker metadata; created if missing.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "./sluice-data")]
    pub data_dir: PathBuf,

    /// This broker's node id, reported in Metadata; fixed for the life of the data dir.
    #[arg(long, env = "SLUICE_NODE_ID", default_value_t = 1)]
    pub node_id: i32,

    /// Partitions of an auto-created topic, or of CreateTopics with num_partitions -1.
    #[arg(long, env = "SLUICE_DEFAULT_PARTITIONS", default_value_t = 1)]
    pub default_partitions: i32,

    /// Most partitions one topic may have: each holds open files and mapped
    /// indexes, so this bounds what one CreateTopics can make the broker open.
    #[arg(long, env = "SLUICE_PARTITIONS_MAX", default_value_t = 10_000)]
    pub partitions_max: i32,

    /// Create unknown topics when a client's Metadata request names them (and allows it),
    /// as Kafka's auto.create.topics.enable. Produce to an unknown topic is an error, as in Kafka.
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS", default_value_t = true, action = ArgAction::Set)]
    pub auto_create_topics: bool,

    /// Largest request frame accepted; larger ones close the connection before any allocation
    /// (Kafka's socket.request.max.bytes).
    #[arg(long, env = "SLUICE_REQUEST_BYTES_MAX", default_value_t = 100 * 1024 * 1024)]
    pub request_bytes_max: u32,

    /// Most client connections open at once; further connections wait in the accept queue.
    #[arg(long, env = "SLUICE_CONNECTIONS_MAX", default_value_t = 4096)]
    pub connections_max: usize,

    /// Most connections from one client address; more are closed at once (Kafka's
    /// max.connections.per.ip), so one host cannot take every slot.
    #[arg(long, env = "SLUICE_CONNECTIONS_MAX_PER_IP", default_value_t = 1024)]
    pub connections_max_per_ip: usize,

    /// Close a connection with no request for this long (Kafka's connections.max.idle.ms);
    /// also the longest a response may take to send.
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT_MS", default_value_t = 600_000)]
    pub idle_timeout_ms: u64,

    /// Once a request's first byte arrives, the whole request must arrive within this,
    /// or the connection is closed: a client trickling bytes cannot hold a slot forever.
    #[arg(long, env = "SLUICE_REQUEST_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_read_timeout_ms: u64,

    /// How often data acknowledged with acks=0/1 is fsynced; acks=all is always fsynced before the reply.
    #[arg(long, env = "SLUICE_FLUSH_INTERVAL_MS", default_value_t = 1000)]
    pub flush_interval_ms: u64,

    /// Upper bound on a Fetch's max_wait_ms, so no request parks forever.
    #[arg(long, env = "SLUICE_FETCH_WAIT_MS_MAX", default_value_t = 60_000)]
    pub fetch_wait_ms_max: u64,

    /// Upper bound on a Fetch response's size whatever the client asks for (Kafka's fetch.max.bytes).
    #[arg(long, env = "SLUICE_FETCH_BYTES_MAX", default_value_t = 55 * 1024 * 1024)]
    pub fetch_bytes_max: u32,

    /// Roll to a new segment at this size (default segment.bytes for topics).
    #[arg(long, env = "SLUICE_SEGMENT_BYTES", default_value_t = 1 << 30)]
    pub segment_bytes: u64,

    /// Roll a segment after this many ms (default segment.ms for topics).
    #[arg(long, env = "SLUICE_SEGMENT_MS", default_value_t = 7 * 24 * 3600 * 1000)]
    pub segment_ms: i64,

    /// Delete segments older than this (default retention.ms for topics; -1 keeps forever).
    #[arg(long, env = "SLUICE_RETENTION_MS", default_value_t = 7 * 24 * 3600 * 1000)]
    pub retention_ms: i64,

    /// Delete old segments while a partition is larger than this (default retention.bytes; -1 no limit).
    #[arg(long, env = "SLUICE_RETENTION_BYTES", default_value_t = -1)]
    pub retention_bytes: i64,

    /// How often retention runs over all partitions (Kafka's log.retention.check.interval.ms).
    #[arg(
        long,
        env = "SLUICE_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 300_000
    )]
    pub retention_check_interval_ms: u64,

    /// Log cleaner threads compacting `cleanup.policy=compact` topics; 0 turns
    /// compaction off (Kafka's log.cleaner.threads; log.cleaner.enable=false).
    #[arg(long, env = "SLUICE_LOG_CLEANER_THREADS", default_value_t = 1)]
    pub log_cleaner_threads: usize,

    /// Memory for the cleaner's key -> offset maps, shared by its threads; a
    /// cleaning covers as much of the dirty log as fits (Kafka's
    /// log.cleaner.dedupe.buffer.size, 128 MiB: about 2.8 million keys).
    #[arg(long, env = "SLUICE_LOG_CLEANER_DEDUPE_BUFFER_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub log_cleaner_dedupe_buffer_bytes: u64,

    /// Bytes per second the cleaner may read plus write, so compaction does not
    /// starve produce and fetch of disk bandwidth; 0 is unlimited (Kafka's
    /// log.cleaner.io.max.bytes.per.second, unlimited by default).
    #[arg(
        long,
        env = "SLUICE_LOG_CLEANER_IO_BYTES_PER_SECOND",
        default_value_t = 0
    )]
    pub log_cleaner_io_bytes_per_second: u64,

    /// Pause of an idle cleaner thread before it looks for dirty logs again
    /// (Kafka's log.cleaner.backoff.ms).
    #[arg(long, env = "SLUICE_LOG_CLEANER_BACKOFF_MS", default_value_t = 15_000)]
    pub log_cleaner_backoff_ms: u64,

    /// Largest record batch accepted (default max.message.bytes for topics).
    #[arg(long, env = "SLUICE_MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024 + 12)]
    pub max_message_bytes: u64,

    /// Time to let in-flight requests finish on shutdown before connections are dropped.
    #[arg(long, env = "SLUICE_SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,

    /// Largest decompressed size of one batch: produce validation inflates compressed
    /// batches to check their records (larger ones are refused with INVALID_RECORD), and
    /// ListOffsets by timestamp looks inside batches (larger ones are answered from the header).
    #[arg(long, env = "SLUICE_DECOMPRESSED_BATCH_BYTES_MAX", default_value_t = 64 * 1024 * 1024)]
    pub decompressed_batch_bytes_max: u64,

    /// Bound on queued fsync requests; producers wait (backpressure) when it is full.
    #[arg(long, env = "SLUICE_SYNC_QUEUE_MAX", default_value_t = 4096)]
    pub sync_queue_max: usize,

    /// fsyncs in flight at once when a group commit covers many partitions: the
    /// device and the journal merge concurrent flushes, where one at a time would
    /// cost a device flush per partition (1,000 partitions: hundreds of ms).
    #[arg(long, env = "SLUICE_SYNC_PARALLELISM", default_value_t = 16)]
    pub sync_parallelism: usize,

    /// A group commit covering at least this many partitions uses one `syncfs` of
    /// the data filesystem instead of an fdatasync per partition: with hundreds of
    /// partitions the per-file journal commits and device flushes dominate CPU.
    /// It also flushes other dirty files on that filesystem, hence a threshold.
    #[arg(long, env = "SLUICE_SYNCFS_PARTITIONS_MIN", default_value_t = 64)]
    pub syncfs_partitions_min: usize,

    /// How long an empty group waits for more members before its first generation
    /// (Kafka's group.initial.rebalance.delay.ms): consumers starting together share one
    /// rebalance. 0 by default, as Kafka's shipped server.properties sets it, so a consumer
    /// gets its partitions at once; Kafka's code default of 3000 suits production fleets
    /// that start many consumers together (each new member extends the wait by this much).
    #[arg(
        long,
        env = "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 0
    )]
    pub group_initial_rebalance_delay_ms: i64,

    /// Smallest session timeout a member may ask for (group.min.session.timeout.ms):
    /// shorter ones make members flap on a GC pause.
    #[arg(
        long,
        env = "SLUICE_GROUP_SESSION_TIMEOUT_MS_MIN",
        default_value_t = 6000
    )]
    pub group_session_timeout_ms_min: i32,

    /// Largest session timeout a member may ask for (group.max.session.timeout.ms):
    /// bounds how long a dead consumer keeps its partitions.
    #[arg(
        long,
        env = "SLUICE_GROUP_SESSION_TIMEOUT_MS_MAX",
        default_value_t = 1_800_000
    )]
    pub group_session_timeout_ms_max: i32,

    /// Most members in one group (group.max.size, and group.consumer.max.size
    /// for KIP-848 groups); bounds a JoinGroup response and its memory.
    #[arg(long, env = "SLUICE_GROUP_MEMBERS_MAX", default_value_t = 1000)]
    pub group_members_max: usize,

    /// Kafka's `group.consumer.session.timeout.ms`: a KIP-848 member silent
    /// this long is removed and its partitions go to the others.
    #[arg(
        long,
        env = "SLUICE_GROUP_CONSUMER_SESSION_TIMEOUT_MS",
        default_value_t = 45_000
    )]
    pub group_consumer_session_timeout_ms: i32,

    /// Kafka's `group.consumer.heartbeat.interval.ms`: how often KIP-848
    /// members are told to heartbeat (a revoked partition reaches its new
    /// owner within about one interval).
    #[arg(
        long,
        env = "SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub group_consumer_heartbeat_interval_ms: i32,

    /// Kafka's `group.share.session.timeout.ms`: a share-group member that
    /// has not heartbeated for this long leaves the group.
    #[arg(
        long,
        env = "SLUICE_GROUP_SHARE_SESSION_TIMEOUT_MS",
        default_value_t = 45_000
    )]
    pub group_share_session_timeout_ms: i32,

    /// Kafka's `group.share.heartbeat.interval.ms`: how often share-group
    /// members are told to heartbeat.
    #[arg(
        long,
        env = "SLUICE_GROUP_SHARE_HEARTBEAT_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub group_share_heartbeat_interval_ms: i32,

    /// Kafka's `group.share.record.lock.duration.ms`: how long a share
    /// consumer holds a record it was given before the record is offered
    /// to others again (a group may override it within the min and max).
    #[arg(
        long,
        env = "SLUICE_GROUP_SHARE_RECORD_LOCK_DURATION_MS",
        default_value_t = 30_000
    )]
    pub group_share_record_lock_duration_ms: i32,

    /// Kafka's `group.share.min.record.lock.duration.ms`: the shortest lock
    /// a group may configure (shorter locks redeliver records still being
    /// processed).
    #[arg(
        long,
        env = "SLUICE_GROUP_SHARE_MIN_RECORD_LOCK_DURATION_MS",
        default_value_t = 15_000
    )]
    pub group_share_min_record_lock_duration_ms: i32,

    /// Kafka's `group.share.max.record.lock.duration.ms`: the longest lock a
    /// group may configure (longer locks delay redelivery after a crash).
    #[arg(
        long,
        env = "SLUICE_GROUP_SHARE_MAX_RECORD_LOCK_DURATION_MS",
        default_value_t = 60_000
    )]
    pub group_share_max_record_lock_duration_ms: i32,

    /// Kafka's `group.share.delivery.count.limit`: after this many
    /// deliveries a record is given up on (archived), so a poison record
    /// cannot stall a group forever.
    #[arg(
        long,
        env = "SLUICE_GROUP_SHARE_DELIVERY_COUNT_LIMIT",
        default_value_t = 5
    )]
    pub group_share_delivery_count_limit: u16,

    /// Kafka's `group.share.partition.max.record.locks`: most records of one
    /// share-partition in flight (handed out and not yet done); bounds the
    /// state a group that stops acknowledging holds.
    #[arg(
        long,
        env = "SLUICE_GROUP_SHARE_PARTITION_MAX_RECORD_LOCKS",
        default_value_t = 2_000
    )]
    pub group_share_partition_max_record_locks: i64,

    /// Kafka's `group.share.max.share.sessions`: most share sessions
    /// (one per share consumer and broker) held at once.
    #[arg(
        long,
        env = "SLUICE_GROUP_SHARE_MAX_SHARE_SESSIONS",
        default_value_t = 2_000
    )]
    pub group_share_max_share_sessions: usize,

    /// Kafka's `group.share.max.size`: most members of one share group.
    #[arg(long, env = "SLUICE_GROUP_SHARE_MAX_SIZE", default_value_t = 200)]
    pub group_share_max_size: usize,

    /// Most groups the coordinator holds; bounds memory against clients inventing group ids.
    #[arg(long, env = "SLUICE_GROUPS_MAX", default_value_t = 100_000)]
    pub groups_max: usize,

    /// Committed offsets of an empty group expire this long after it became empty
    /// (offsets.retention.minutes).
    #[arg(long, env = "SLUICE_OFFSETS_RETENTION_MINUTES", default_value_t = 7 * 24 * 60)]
    pub offsets_retention_minutes: i64,

    /// How often offset expiry runs (offsets.retention.check.interval.ms).
    #[arg(
        long,
        env = "SLUICE_OFFSETS_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 600_000
    )]
    pub offsets_retention_check_interval_ms: u64,

    /// Longest metadata string an offset commit may carry (offset.metadata.max.bytes).
    #[arg(long, env = "SLUICE_OFFSET_METADATA_BYTES_MAX", default_value_t = 4096)]
    pub offset_metadata_bytes_max: usize,

    /// Idempotent producers that appended nothing to a partition for this long are
    /// forgotten there (Kafka's producer.id.expiration.ms); bounds producer state.
    #[arg(
        long,
        env = "SLUICE_PRODUCER_ID_EXPIRATION_MS",
        default_value_t = 86_400_000
    )]
    pub producer_id_expiration_ms: i64,

    /// Compact the internal group log once this much was written since the last
    /// snapshot (and more than the snapshot itself): bounds its size and replay time.
    #[arg(long, env = "SLUICE_GROUP_LOG_COMPACT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub group_log_compact_bytes: u64,

    /// Longest `transaction.timeout.ms` a transactional producer may ask for
    /// (Kafka's `transaction.max.timeout.ms`): bounds how long an abandoned
    /// transaction holds back read_committed consumers.
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_MAX_TIMEOUT_MS",
        default_value_t = 900_000
    )]
    pub transaction_max_timeout_ms: i32,

    /// A transactional id unused this long is forgotten (Kafka's
    /// `transactional.id.expiration.ms`, 7 days).
    #[arg(
        long,
        env = "SLUICE_TRANSACTIONAL_ID_EXPIRATION_MS",
        default_value_t = 604_800_000
    )]
    pub transactional_id_expiration_ms: i64,

    /// How often open transactions are checked for their timeout and idle
    /// transactional ids for expiry (Kafka's
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    #[arg(
        long,
        env = "SLUICE_TRANSACTION_CHECK_INTERVAL_MS",
        default_value_t = 10_000
    )]
    pub transaction_check_interval_ms: u64,

    /// Most transactional ids remembered at once: each costs memory and a
    /// record in the state log; past it a new id is refused
    /// (COORDINATOR_NOT_AVAILABLE) until idle ones expire.
    #[arg(long, env = "SLUICE_TRANSACTIONAL_IDS_MAX", default_value_t = 100_000)]
    pub transactional_ids_max: usize,

    /// Settings given on the command line or in the environment (by field name),
    /// so DescribeConfigs can tell STATIC_BROKER_CONFIG from DEFAULT_CONFIG.
    #[arg(skip)]
    pub explicit: std::collections::BTreeSet<String>,
}

impl Config {
    /// Parses the process's arguments and environment, recording which settings
    /// were given explicitly. Exits with usage on bad arguments, as `parse` does.
    pub fn parse_recording_sources() -> Config {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Config::command().get_matches();
        let mut c = Config::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        c.explicit = matches
            .ids()
            .filter(|id| {
                matches!(
                    matches.value_source(id.as_str()),
                    Some(
                        clap::parser::ValueSource::CommandLine
                            | clap::parser::ValueSource::EnvVariable
                    )
                )
            })
            .map(|id| id.as_str().to_string())
            .collect();
        c
    }

    /// Defaults for tests: everything as on the command line, with the given data dir.
    pub fn for_test(data_dir: PathBuf) -> Config {
        let mut c = Config::parse_from(["sluice"]);
        c.data_dir = data_dir;
        c.listen = "127.0.0.1:0".parse().expect("literal address");
        c.metrics_listen = Listen(None);
        c
    }

    /// Checks relationships the types alone do not.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100_000).contains(&self.partitions_max) {
            return Err("--partitions-max must be between 1 and 100000".into());
        }
        if self.default_partitions < 1 || self.default_partitions > self.partitions_max {
            return Err("--default-partitions must be between 1 and --partitions-max".into());
        }
        // Segment positions and response sizes are 32-bit signed on the wire and in
        // the index: requests and fetch responses stay below 1 GiB so that one
        // batch plus one fetch budget plus framing can never pass 2 GiB.
        if !(64..=GIB).contains(&self.request_bytes_max) {
            return Err("--request-bytes-max must be between 64 and 1073741824".into());
        }
        if !(1..=GIB).contains(&self.fetch_bytes_max) {
            return Err("--fetch-bytes-max must be between 1 and 1073741824".into());
        }
        if !(64..=u64::from(GIB)).contains(&self.max_message_bytes) {
            return Err("--max-message-bytes must be between 64 and 1073741824".into());
        }
        if self.log_cleaner_threads > 64 {
            return Err("--log-cleaner-threads must be at most 64".into());
        }
        if self.log_cleaner_threads > 0
            && self.log_cleaner_dedupe_buffer_bytes
                < crate::log::cleaner::MAP_ENTRY_BYTES * 1024 * self.log_cleaner_threads as u64
        {
            return Err(format!(
                "--log-cleaner-dedupe-buffer-bytes must give each cleaner thread room for 1024 keys ({} bytes per thread)",
                crate::log::cleaner::MAP_ENTRY_BYTES * 1024
            ));
        }
        if self.decompressed_batch_bytes_max < 1024 {
            return Err("--decompressed-batch-bytes-max must be at least 1024".into());
        }
        if self.connections_max == 0 || self.connections_max_per_ip == 0 {
            return Err("--connections-max and --connections-max-per-ip must be at least 1".into());
        }
        if self.idle_timeout_ms == 0 || self.request_read_timeout_ms == 0 {
            return Err(
                "--idle-timeout-ms and --request-read-timeout-ms must be at least 1".into(),
            );
        }
        if self.sync_parallelism == 0 {
            return Err("--sync-parallelism must be at least 1".into());
        }
        if self.sync_queue_max == 0 {
            return Err("--sync-queue-max must be at least 1".into());
        }
        if self.node_id < 0 {
            return Err("--node-id must not be negative".into());
        }
        if let Some(a) = &self.advertised_listener {
            parse_host_port(a).ok_or("--advertised-listener must be HOST:PORT")?;
        }
        self.listener_specs()?;
        if self.quota_window_ms == 0 || self.quota_window_num < 2 || self.quota_buckets_max == 0 {
            return Err(
                "--quota-window-ms and --quota-buckets-max must be at least 1, --quota-window-num at least 2"
                    .into(),
            );
        }
        if self.ssl_handshake_timeout_ms == 0 {
            return Err("--ssl-handshake-timeout-ms must be at least 1".into());
        }
        for m in self.sasl_enabled_mechanisms.split(',').map(str::trim) {
            if !matches!(
                m,
                "SCRAM-SHA-256" | "SCRAM-SHA-512" | "PLAIN" | "OAUTHBEARER"
            ) {
                return Err(format!(
                    "--sasl-enabled-mechanisms: {m} is not one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN, OAUTHBEARER"
                ));
            }
            if m == "OAUTHBEARER"
                && self.sasl_oauthbearer_jwks_endpoint_url.is_none()
                && !self.sasl_oauthbearer_unsecured_tokens
            {
                return Err("OAUTHBEARER needs --sasl-oauthbearer-jwks-endpoint-url (signed tokens) or --sasl-oauthbearer-unsecured-tokens".into());
            }
        }
        if let Some(url) = &self.sasl_oauthbearer_jwks_endpoint_url {
            if !["https://", "http://", "file://"]
                .iter()
                .any(|s| url.starts_with(s))
            {
                return Err(format!(
                    "--sasl-oauthbearer-jwks-endpoint-url {url}: not an https://, http:// or file:// URL"
                ));
            }
            if self.sasl_oauthbearer_jwks_endpoint_refresh_ms == 0
                || self.sasl_oauthbearer_jwks_endpoint_retry_backoff_ms == 0
                || self.sasl_oauthbearer_jwks_fetch_timeout_ms == 0
                || self.sasl_oauthbearer_jwks_max_bytes == 0
            {
                return Err("--sasl-oauthbearer-jwks-endpoint-refresh-ms, -retry-backoff-ms, --sasl-oauthbearer-jwks-fetch-timeout-ms and -max-bytes must be positive".into());
            }
        }
        check_segment_bytes(self.segment_bytes)?;
        if self.group_session_timeout_ms_min > self.group_session_timeout_ms_max {
            return Err("--group-session-timeout-ms-min must not exceed the max".into());
        }
        if self.group_initial_rebalance_delay_ms < 0 {
            return Err("--group-initial-rebalance-delay-ms must not be negative".into());
        }
        if self.transaction_max_timeout_ms < 1 || self.transactional_id_expiration_ms < 1 {
            return Err(
                "--transaction-max-timeout-ms and --transactional-id-expiration-ms must be at least 1"
                    .into(),
            );
        }
        if self.transaction_check_interval_ms == 0 || self.transactional_ids_max == 0 {
            return Err(
                "--transaction-check-interval-ms and --transactional-ids-max must be at least 1"
                    .into(),
            );
        }
        if self.producer_id_expiration_ms < 1 {
            return Err("--producer-id-expiration-ms must be at least 1".into());
        }
        if self.http_connections_max == 0
            || self.http_consumer_instances_max == 0
            || self.http_consumer_request_records_max == 0
            || self.http_consumer_instances_per_principal_max == 0
        {
            return Err(
                "--http-connections-max, --http-consumer-instances-max, --http-consumer-instances-per-principal-max and --http-consumer-request-records-max must be at least 1"
                    .into(),
            );
        }
        if self.http_idle_timeout_ms < 1_000 {
            return Err("--http-idle-timeout-ms must be at least 1000".into());
        }
        if self.http_consumer_request_timeout_max_ms >= self.http_idle_timeout_ms {
            return Err(
                "--http-consumer-request-timeout-max-ms must be below --http-idle-timeout-ms"
                    .into(),
            );
        }
        if self.http_ws_ping_interval_ms < 100
            || self.http_ws_ping_interval_ms >= self.http_idle_timeout_ms
        {
            return Err(
                "--http-ws-ping-interval-ms must be at least 100 and below --http-idle-timeout-ms"
                    .into(),
            );
        }
        if self.http_ws_credit_records_max == 0
            || self.http_ws_produce_inflight_max == 0
            || self.http_ws_frame_bytes_max < 1024
        {
            return Err("--http-ws-credit-records-max and --http-ws-produce-inflight-max must be at least 1, --http-ws-frame-bytes-max at least 1024".into());
        }
        if self.http_request_body_max_bytes < 1024 || self.http_consumer_request_max_bytes < 1024 {
            return Err("--http-request-body-max-bytes and --http-consumer-request-max-bytes must be at least 1024".into());
        }
        for mode in self.http_auth.split(',').map(str::trim) {
            if !matches!(mode, "none" | "basic" | "bearer") {
                return Err(format!(
                    "--http-auth: unknown mode {mode:?} (none, basic, bearer, basic,bearer)"
                ));
            }
        }
        if self.metrics_connections_max == 0 {
            return Err("--metrics-connections-max must be at least 1".into());
        }
        if self.group_share_heartbeat_interval_ms <= 0
            || self.group_share_session_timeout_ms <= self.group_share_heartbeat_interval_ms
        {
            return Err("--group-share-heartbeat-interval-ms must be positive and below --group-share-session-timeout-ms".into());
        }
        if self.group_share_min_record_lock_duration_ms < 1
            || self.group_share_min_record_lock_duration_ms
                > self.group_share_record_lock_duration_ms
            || self.group_share_record_lock_duration_ms
                > self.group_share_max_record_lock_duration_ms
        {
            return Err("--group-share-record-lock-duration-ms must lie between its min and max, and the min must be at least 1".into());
        }
        if self.group_share_delivery_count_limit < 2 || self.group_share_delivery_count_limit > 10 {
            return Err(
                "--group-share-delivery-count-limit must be between 2 and 10 (Kafka's range)"
                    .into(),
            );
        }
        if self.group_share_partition_max_record_locks < 1
            || self.group_share_max_share_sessions == 0
            || self.group_share_max_size == 0
        {
            return Err("--group-share-partition-max-record-locks, --group-share-max-share-sessions and --group-share-max-size must be at least 1".into());
        }
        if self.group_consumer_heartbeat_interval_ms <= 0
            || self.group_consumer_session_timeout_ms <= self.group_consumer_heartbeat_interval_ms
        {
            return Err("--group-consumer-heartbeat-interval-ms must be positive and below --group-consumer-session-timeout-ms".into());
        }
        if self.group_members_max == 0 || self.groups_max == 0 {
            return Err("--group-members-max and --groups-max must be at least 1".into());
        }
        Ok(())
    }

    /// Host and port clients should connect to.
    pub fn advertised(&self, bound: SocketAddr) -> (String, i32) {
        match self
            .advertised_listener
            .as_deref()
            .and_then(parse_host_port)
        {
            Some(hp) => hp,
            None => (bound.ip().to_string(), i32::from(bound.port())),
        }
    }

    /// The listeners to bind: from `--listeners`, else one PLAINTEXT
    /// listener on `--listen`.
    pub fn listener_specs(&self) -> Result<Vec<ListenerSpec>, String> {
        let Some(list) = &self.listeners else {
            return Ok(vec![ListenerSpec {
                name: "PLAINTEXT".into(),
                protocol: SecurityProtocol::Plaintext,
                addr: self.listen,
                advertised: self
                    .advertised_listener
                    .as_deref()
                    .and_then(parse_host_port),
            }]);
        };
        let mut map: Vec<(String, SecurityProtocol)> = Vec::new();
        for pair in self
            .listener_security_protocol_map
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (name, proto) = pair.split_once(':').ok_or_else(|| {
                format!("--listener-security-protocol-map: {pair:?} is not NAME:PROTOCOL")
            })?;
            map.push((name.to_string(), SecurityProtocol::parse(proto)?));
        }
        let advertised: Vec<(String, (String, i32))> = match &self.advertised_listeners {
            None => Vec::new(),
            Some(a) => a
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| {
                    let (name, hp) = x.split_once("://").ok_or_else(|| {
                        format!("--advertised-listeners: {x:?} is not NAME://HOST:PORT")
                    })?;
                    let hp = parse_host_port(hp).ok_or_else(|| {
                        format!("--advertised-listeners: {x:?} is not NAME://HOST:PORT")
                    })?;
                    Ok((name.to_string(), hp))
                })
                .collect::<Result<_, String>>()?,
        };
        let mut out: Vec<ListenerSpec> = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (name, addr) = entry
                .split_once("://")
                .ok_or_else(|| format!("--listeners: {entry:?} is not NAME://HOST:PORT"))?;
            let addr: SocketAddr = addr
                .parse()
                .map_err(|e| format!("--listeners: {entry:?}: {e}"))?;
            if out.iter().any(|l| l.name == name) {
                return Err(format!("--listeners: {name} is listed twice"));
            }
            let protocol = match map.iter().find(|(n, _)| n == name) {
                Some((_, p)) => *p,
                None => SecurityProtocol::parse(name).map_err(|_| {
                    format!("--listeners: {name} has no entry in --listener-security-protocol-map")
                })?,
            };
            if protocol.is_tls() && self.ssl_keystore_location.is_none() {
                return Err(format!(
                    "--listeners: {name} is a TLS listener: it needs --ssl-keystore-location"
                ));
            }
            out.push(ListenerSpec {
                name: name.to_string(),
                protocol,
                addr,
                advertised: advertised
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, hp)| hp.clone()),
            });
        }
        if out.is_empty() {
            return Err("--listeners names no listener".into());
        }
        Ok(out)
    }

    /// The log settings a topic starts from before its own overrides.
    pub fn log_defaults(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            max_message_bytes: self.max_message_bytes,
            producer_id_expiration_ms: self.producer_id_expiration_ms,
            ..LogConfig::default()
        }
    }
}

/// An optional listen address: `off` (or an empty value) disables the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    match s.trim() {
        "" | "off" | "none" => Ok(Listen(None)),
        a => a
            .parse()
            .map(|a| Listen(Some(a)))
            .map_err(|e| format!("expected HOST:PORT or off: {e}")),
    }
}

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// One is asked for; a client without one is still accepted (as ANONYMOUS).
    Requested,
    /// A client without a trusted certificate is refused.
    Required,
}

fn parse_client_auth(s: &str) -> Result<ClientAuth, String> {
    match s.trim() {
        "none" => Ok(ClientAuth::None),
        "requested" => Ok(ClientAuth::Requested),
        "required" => Ok(ClientAuth::Required),
        other => Err(format!("{other} is not one of none, requested, required")),
    }
}

/// A listener's security protocol (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS; the principal is the client certificate's subject, if any.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(s: &str) -> Result<SecurityProtocol, String> {
        Ok(match s {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            other => return Err(format!("unknown security protocol {other}")),
        })
    }

    /// Whether connections begin with a TLS handshake.
    pub fn is_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether connections authenticate with SASL first.
    pub fn is_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One listener to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Its name (Kafka's listener name).
    pub name: String,
    /// Its security protocol.
    pub protocol: SecurityProtocol,
    /// Where to bind.
    pub addr: SocketAddr,
    /// HOST:PORT advertised for it, when not the bound address.
    pub advertised: Option<(String, i32)>,
}

/// 1 GiB: the ceiling of the size limits (see `Config::validate`).
const GIB: u32 = 1 << 30;

/// Segment positions are 32-bit in the index, as in Kafka, and a segment must hold a header.
pub fn check_segment_bytes(v: u64) -> Result<(), String> {
    if !(1024..=i32::MAX as u64).contains(&v) {
        return Err(format!(
            "segment.bytes must be between 1024 and {}",
            i32::MAX
        ));
    }
    Ok(())
}

/// Splits `host:port` (or `[v6]:port`).
pub fn parse_host_port(s: &str) -> Option<(String, i32)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::parse_from(["sluice"]);
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        assert!(c.auto_create_topics);
        c.validate().unwrap();
    }

    #[test]
    fn flags_parse() {
        let c = Config::parse_from([
            "sluice",
            "--auto-create-topics",
            "false",
            "--advertised-listener",
            "[::1]:9093",
        ]);
        assert!(!c.auto_create_topics);
        assert_eq!(
            Config::parse_from(["sluice", "--metrics-listen", "off"]).metrics_listen,
            Listen(None)
        );
        assert_eq!(
            c.advertised("127.0.0.1:1".parse().unwrap()),
            ("::1".to_string(), 9093)
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let mut c = Config::parse_from(["sluice"]);
        c.segment_bytes = 10;
        assert!(c.validate().is_err());
        c.segment_bytes = 1 << 20;
        c.advertised_listener = Some("nope".into());
        assert!(c.validate().is_err());
        c.advertised_listener = None;
        c.fetch_bytes_max = u32::MAX;
        assert!(
            c.validate().is_err(),
            "fetch responses must stay below 2 GiB"
        );
        c.fetch_bytes_max = 1 << 20;
        c.request_bytes_max = u32::MAX;
        assert!(c.validate().is_err(), "requests must stay below 2 GiB");
    }
}
