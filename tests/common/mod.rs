//! Test kit: an in-process broker on 127.0.0.1:0 and a minimal raw Kafka client.
#![allow(dead_code)]

pub mod fuzz;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice::broker::Broker;
use sluice::config::Config;
use sluice::log::records::build_test_batch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// Request builders shared by the wire-level tests.

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn produce_req(topic: &str, partition: i32, records: Vec<u8>, acks: i16) -> ProduceRequest {
    let pd = PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(Bytes::from(records)));
    let td = TopicProduceData::default()
        .with_name(name(topic))
        .with_partition_data(vec![pd]);
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![td])
}

pub fn fetch_req(
    topic: &str,
    id: uuid::Uuid,
    offset: i64,
    max_wait_ms: i32,
    max_bytes: i32,
) -> FetchRequest {
    let fp = FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(max_bytes);
    let ft = FetchTopic::default()
        .with_topic(name(topic))
        .with_topic_id(id)
        .with_partitions(vec![fp]);
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![ft])
}

pub async fn create_topic(
    c: &mut Client,
    topic: &str,
    configs: &[(&str, &str)],
) -> CreateTopicsResponse {
    create_topic_n(c, topic, 1, configs).await
}

/// Creates a topic of `partitions` partitions (CreateTopics v7).
pub async fn create_topic_n(
    c: &mut Client,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> CreateTopicsResponse {
    let t = CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    c.call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(1000),
    )
    .await
}

pub async fn produce(c: &mut Client, topic: &str, values: &[&[u8]]) -> i64 {
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req(topic, 0, build_test_batch(1000, values), -1),
        )
        .await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "{:?}", p.error_message);
    p.base_offset
}

/// Metadata for every topic (v12).
pub async fn metadata_all(c: &mut Client) -> MetadataResponse {
    c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )
    .await
}

/// A fault on `op` for paths containing `path`: skip `skip` matches, then fire `times`.
pub fn rule(
    op: sluice::log::sim::Op,
    path: &str,
    skip: u64,
    times: u64,
    fault: sluice::log::sim::Fault,
) -> sluice::log::sim::Rule {
    sluice::log::sim::Rule {
        op,
        path: path.to_string(),
        skip,
        times,
        fault,
    }
}

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub fn commit(group: &str, topic: &str, offsets: &[(i32, i64)]) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_metadata(Some(s("meta")))
                    })
                    .collect(),
            )])
}

pub async fn fetch(c: &mut Client, group: &str, topic: &str) -> Vec<(i32, i64)> {
    let req = OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(None)]);
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 8, &req).await;
    assert_eq!(r.groups[0].error_code, 0);
    r.groups[0]
        .topics
        .iter()
        .filter(|t| t.name.as_str() == topic)
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset))
        })
        .collect()
}

/// A broker running inside the test process.
pub struct TestBroker {
    pub addr: SocketAddr,
    pub broker: Arc<Broker>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestBroker {
    pub async fn start(dir: &Path) -> TestBroker {
        Self::start_with(Config::for_test(dir.to_path_buf())).await
    }

    pub async fn start_with(config: Config) -> TestBroker {
        Self::start_on(config, Arc::new(sluice::log::RealFs)).await
    }

    /// A broker on the given filesystem (a fault-injecting model in fault tests).
    pub async fn start_on(config: Config, fs: Arc<dyn sluice::log::Fs>) -> TestBroker {
        Self::start_listening(config, fs, sluice::net::Listener::plaintext()).await
    }

    /// A broker whose one listener is SASL_PLAINTEXT with every mechanism.
    pub async fn start_sasl(dir: &Path) -> TestBroker {
        use sluice::auth::sasl::SaslMechanism;
        use sluice::auth::scram::Mechanism;
        let info = sluice::net::Listener {
            index: 0,
            name: "SASL_PLAINTEXT".into(),
            sasl: Some(vec![
                SaslMechanism::Plain,
                SaslMechanism::Scram(Mechanism::Sha256),
                SaslMechanism::Scram(Mechanism::Sha512),
            ]),
            tls: None,
            oauth: None,
        };
        let config = Config::for_test(dir.to_path_buf());
        Self::start_listening(config, Arc::new(sluice::log::RealFs), info).await
    }

    /// A broker serving one listener described by `info`.
    async fn start_listening(
        config: Config,
        fs: Arc<dyn sluice::log::Fs>,
        info: sluice::net::Listener,
    ) -> TestBroker {
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let broker = Broker::open_with(config, fs).await.unwrap();
        broker.set_advertised(addr);
        let (tx, rx) = oneshot::channel::<()>();
        let b = broker.clone();
        let task = tokio::spawn(async move {
            sluice::server::run_listeners(vec![(listener, Arc::new(info))], b, async {
                let _ = rx.await;
            })
            .await
        });
        TestBroker {
            addr,
            broker,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(self) {
        self.stop_result().await.unwrap()
    }

    /// Stops the server (a clean shutdown) and returns its result.
    pub async fn stop_result(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(t) => t.await.unwrap(),
            None => Ok(()),
        }
    }

    /// Stops the server without the clean close: what a crashed process leaves
    /// behind is then taken from the filesystem (`SimFs::crash`). Returns the
    /// server's result (an error once the data directory went offline).
    pub async fn abandon(mut self) -> std::io::Result<()> {
        if let Some(t) = self.task.take() {
            t.abort();
            return match t.await {
                Ok(r) => r,
                Err(_) => Ok(()),
            };
        }
        Ok(())
    }

    /// Waits for the server task to end by itself (it stops when the data
    /// directory goes offline) and returns its result.
    pub async fn finished(mut self) -> std::io::Result<()> {
        match self.task.take() {
            Some(t) => t.await.unwrap(),
            None => Ok(()),
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

/// A raw Kafka client: one connection, explicit versions.
pub struct Client {
    pub stream: TcpStream,
    next_correlation: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            next_correlation: 1,
        }
    }

    /// Encodes a framed request.
    pub fn frame<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-test")));
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        buf.freeze()
    }

    pub async fn send<T: Encodable>(&mut self, key: ApiKey, version: i16, body: &T) -> i32 {
        let id = self.next_correlation;
        self.next_correlation += 1;
        let frame = Self::frame(key, version, id, body);
        self.stream.write_all(&frame).await.unwrap();
        id
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub async fn recv_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).await.ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    pub async fn recv<R: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> R {
        let mut frame = self.recv_frame().await.expect("response");
        let header =
            ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        let r = R::decode(&mut frame, version).unwrap();
        assert_eq!(
            frame.remaining(),
            0,
            "trailing bytes in {key:?} v{version} response"
        );
        r
    }

    pub async fn call<T: Encodable, R: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &T,
    ) -> R {
        let id = self.send(key, version, body).await;
        self.recv(key, version, id).await
    }

    /// True if the broker closed the connection (EOF or reset) without answering.
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(10), self.stream.read(&mut b))
                .await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}
