//! The request fuzzer: a corpus of valid frames for every advertised API and
//! version, bounded mutations of them (bit flips, truncation, lying lengths and
//! counts, wrong versions and keys, lying frame sizes, and changes inside record
//! batches with the CRC recomputed), each sent on its own connection to a real
//! broker. Every answer must be a well-formed response to what was sent, or a
//! closed connection; a request that is neither answered nor refused in time
//! (other than those that legitimately park) is a hang.
//!
//! Used by `tests/fuzz.rs` (in-process, with an allocation bound) and by
//! `examples/fuzz.rs` (against a running broker, for long runs and for the
//! stock-client read-back in `compat-tests/test_fuzz.py`).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice::log::batch;
use sluice::log::records::{build_raw_batch, encode_records, KeyValue};
use sluice::protocol::SUPPORTED;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Topics the corpus produces to and reads from.
pub const TOPICS: [&str; 3] = ["fz0", "fz1", "fz2"];

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(rng: &mut Rng) -> &'static str {
    TOPICS[rng.below(3) as usize]
}

/// A valid record batch in a random codec, with keys, values and headers.
pub fn batch(rng: &mut Rng) -> Vec<u8> {
    let n = 1 + rng.below(5) as usize;
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("fuzz-{}-{i}", rng.next() % 1000).into_bytes())
        .collect();
    let kvs: Vec<KeyValue<'_>> = values
        .iter()
        .map(|v| (Some(&v[..4]), Some(&v[..])))
        .collect();
    let raw = encode_records(&kvs);
    let (attr, payload) = match rng.below(5) {
        0 => (1, {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&raw).unwrap();
            e.finish().unwrap()
        }),
        1 => (2, snap::raw::Encoder::new().compress_vec(&raw).unwrap()),
        2 => (3, {
            use std::io::Write;
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(&raw).unwrap();
            e.finish().0
        }),
        3 => (4, zstd::encode_all(&raw[..], 1).unwrap()),
        _ => (0, raw),
    };
    build_raw_batch(1_700_000_000_000, attr, n as i32, &payload)
}

/// Changes a batch and recomputes its CRC, so the change reaches the record
/// validator instead of failing the checksum.
pub fn mutate_batch(rng: &mut Rng, b: &mut Vec<u8>) {
    match rng.below(6) {
        // Header fields: counts, deltas, codec bits, producer fields.
        0 => {
            let at = [21usize, 23, 57, 43, 53][rng.below(5) as usize];
            let v = [0u32, 1, 0x7fff_ffff, 0xffff_ffff, 2][rng.below(5) as usize];
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        1 => {
            let at = 61 + rng.below((b.len() - 61).max(1) as u64) as usize;
            if at < b.len() {
                b[at] ^= 1 << rng.below(8);
            }
        }
        2 => {
            let at = 61 + rng.below((b.len() - 61).max(1) as u64) as usize;
            if at < b.len() {
                b[at] = [0x00, 0x7f, 0x80, 0xff, 0x01][rng.below(5) as usize];
            }
        }
        3 => {
            let cut = 61 + rng.below((b.len() - 61).max(1) as u64) as usize;
            b.truncate(cut);
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
        }
        4 => {
            let extra: Vec<u8> = (0..rng.below(20)).map(|_| rng.next() as u8).collect();
            b.extend_from_slice(&extra);
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
        }
        _ => {
            // The codec bits alone: the payload no longer matches.
            b[22] = (b[22] & !7) | (rng.below(8) as u8);
        }
    }
    if b.len() >= 61 {
        batch::set_crc(b);
    }
}

/// A valid request of `key` at `version`, with contents for the fuzzer to mutate.
/// `produce_batch` overrides the records of a Produce.
pub fn request(
    rng: &mut Rng,
    key: ApiKey,
    v: i16,
    produce_batch: Option<Vec<u8>>,
) -> Option<BytesMut> {
    let group = |rng: &mut Rng| GroupId(s(["fg0", "fg1", "fg2"][rng.below(3) as usize]));
    let mut buf = BytesMut::new();
    let r = match key {
        ApiKey::ApiVersions => {
            let mut r = ApiVersionsRequest::default();
            if v >= 3 {
                r = r
                    .with_client_software_name(s("sluice-fuzz"))
                    .with_client_software_version(s("1.0"));
            }
            r.encode(&mut buf, v)
        }
        ApiKey::Metadata => {
            let topics = (0..1 + rng.below(3))
                .map(|_| MetadataRequestTopic::default().with_name(Some(TopicName(s(topic(rng))))))
                .collect();
            let mut r = MetadataRequest::default().with_topics(Some(topics));
            if v >= 4 {
                r = r.with_allow_auto_topic_creation(true);
            }
            r.encode(&mut buf, v)
        }
        ApiKey::Produce => {
            let records = produce_batch.unwrap_or_else(|| batch(rng));
            let pd = PartitionProduceData::default()
                .with_index(rng.below(2) as i32)
                .with_records(Some(Bytes::from(records)));
            let td = TopicProduceData::default()
                .with_name(TopicName(s(topic(rng))))
                .with_partition_data(vec![pd]);
            ProduceRequest::default()
                .with_acks([-1i16, 1][rng.below(2) as usize])
                .with_timeout_ms(1000)
                .with_topic_data(vec![td])
                .encode(&mut buf, v)
        }
        ApiKey::Fetch => {
            let fp = FetchPartition::default()
                .with_partition(rng.below(2) as i32)
                .with_fetch_offset(rng.below(20) as i64)
                .with_partition_max_bytes(1 << 16);
            let mut ft = FetchTopic::default().with_partitions(vec![fp]);
            if v >= 13 {
                ft = ft.with_topic_id(uuid::Uuid::from_u64_pair(rng.next(), rng.next()));
            } else {
                ft = ft.with_topic(TopicName(s(topic(rng))));
            }
            FetchRequest::default()
                .with_max_wait_ms(10)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![ft])
                .encode(&mut buf, v)
        }
        ApiKey::ListOffsets => {
            let ts = [-1i64, -2, 0, 1_700_000_000_000][rng.below(4) as usize];
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(s(topic(rng))))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(rng.below(2) as i32)
                        .with_timestamp(ts)])])
                .encode(&mut buf, v)
        }
        ApiKey::CreateTopics => {
            let t = CreatableTopic::default()
                .with_name(TopicName(s(topic(rng))))
                .with_num_partitions(2)
                .with_replication_factor(1)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("600000")))]);
            CreateTopicsRequest::default()
                .with_topics(vec![t])
                .with_timeout_ms(1000)
                .encode(&mut buf, v)
        }
        ApiKey::DeleteTopics => {
            let mut r = DeleteTopicsRequest::default().with_timeout_ms(1000);
            if v >= 6 {
                r = r.with_topics(vec![
                    DeleteTopicState::default().with_name(Some(TopicName(s("fzdel"))))
                ]);
            } else {
                r = r.with_topic_names(vec![TopicName(s("fzdel"))]);
            }
            r.encode(&mut buf, v)
        }
        ApiKey::InitProducerId => InitProducerIdRequest::default()
            .with_transactional_id(match rng.below(3) {
                0 => Some(TransactionalId(s(&format!("fz-txn-{}", rng.below(3))))),
                _ => None,
            })
            .with_transaction_timeout_ms(1000)
            .encode(&mut buf, v),
        ApiKey::FindCoordinator => {
            let g = s("fg0");
            let r = if v >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![g])
            } else {
                FindCoordinatorRequest::default().with_key(g)
            };
            r.encode(&mut buf, v)
        }
        ApiKey::JoinGroup => {
            let mut r = JoinGroupRequest::default()
                .with_group_id(group(rng))
                .with_session_timeout_ms(1000)
                .with_member_id(s(""))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(
                        b"\x00\x01\x00\x00\x00\x01\x00\x03fz0\x00\x00\x00\x00",
                    ))]);
            if v >= 1 {
                r = r.with_rebalance_timeout_ms(100);
            }
            r.encode(&mut buf, v)
        }
        ApiKey::SyncGroup => {
            let mut r = SyncGroupRequest::default()
                .with_group_id(group(rng))
                .with_generation_id(1)
                .with_member_id(s("m"))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(s("m"))
                    .with_assignment(Bytes::from_static(b"\x00\x01"))]);
            if v >= 5 {
                r = r
                    .with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")));
            }
            r.encode(&mut buf, v)
        }
        ApiKey::Heartbeat => HeartbeatRequest::default()
            .with_group_id(group(rng))
            .with_generation_id(1)
            .with_member_id(s("m"))
            .encode(&mut buf, v),
        ApiKey::LeaveGroup => {
            let mut r = LeaveGroupRequest::default().with_group_id(group(rng));
            if v >= 3 {
                r = r.with_members(vec![MemberIdentity::default().with_member_id(s("m"))]);
            } else {
                r = r.with_member_id(s("m"));
            }
            r.encode(&mut buf, v)
        }
        ApiKey::OffsetCommit => OffsetCommitRequest::default()
            .with_group_id(group(rng))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic(rng))))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(rng.below(2) as i32)
                    .with_committed_offset(rng.below(100) as i64)
                    .with_committed_metadata(Some(s("m")))])])
            .encode(&mut buf, v),
        ApiKey::OffsetFetch => {
            let r = if v >= 8 {
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(group(rng))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s(topic(rng))))
                        .with_partition_indexes(vec![0, 1])]))])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(group(rng))
                    .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s(topic(rng))))
                        .with_partition_indexes(vec![0, 1])]))
            };
            r.encode(&mut buf, v)
        }
        ApiKey::ListGroups => ListGroupsRequest::default().encode(&mut buf, v),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default()
            .with_groups(vec![group(rng)])
            .encode(&mut buf, v),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(s("fgdel"))])
            .encode(&mut buf, v),
        ApiKey::OffsetDelete => OffsetDeleteRequest::default()
            .with_group_id(group(rng))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s(topic(rng))))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])])
            .encode(&mut buf, v),
        ApiKey::DescribeConfigs => DescribeConfigsRequest::default()
            .with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(topic(rng))),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("1")),
            ])
            .with_include_synonyms(true)
            .with_include_documentation(v >= 3)
            .encode(&mut buf, v),
        ApiKey::AlterConfigs => AlterConfigsRequest::default()
            .with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(topic(rng)))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("604800000")))])])
            .encode(&mut buf, v),
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default()
            .with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(topic(rng)))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("cleanup.policy"))
                            .with_config_operation(rng.below(4) as i8)
                            .with_value(Some(s("delete"))),
                    ]),
            ])
            .encode(&mut buf, v),
        ApiKey::CreatePartitions => CreatePartitionsRequest::default()
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(TopicName(s(topic(rng))))
                    .with_count(1 + rng.below(4) as i32),
            ])
            .with_validate_only(rng.below(2) == 0)
            .encode(&mut buf, v),
        ApiKey::DeleteRecords => DeleteRecordsRequest::default()
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(TopicName(s(topic(rng))))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(rng.below(2) as i32)
                        .with_offset(rng.below(3) as i64),
                ])])
            .encode(&mut buf, v),
        ApiKey::DescribeCluster => DescribeClusterRequest::default()
            .with_endpoint_type(1)
            .encode(&mut buf, v),
        ApiKey::DescribeLogDirs => DescribeLogDirsRequest::default()
            .with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(TopicName(s(topic(rng))))
                    .with_partitions(vec![0, 1]),
            ]))
            .encode(&mut buf, v),
        ApiKey::OffsetForLeaderEpoch => OffsetForLeaderEpochRequest::default()
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(TopicName(s(topic(rng))))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_leader_epoch(0),
                    ]),
            ])
            .encode(&mut buf, v),
        ApiKey::DescribeTopicPartitions => DescribeTopicPartitionsRequest::default()
            .with_topics(vec![
                describe_topic_partitions_request::TopicRequest::default()
                    .with_name(TopicName(s(topic(rng)))),
            ])
            .with_response_partition_limit(1 + rng.below(3) as i32)
            .encode(&mut buf, v),
        ApiKey::ElectLeaders => ElectLeadersRequest::default()
            .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
            )
            .with_topic(TopicName(s(topic(rng))))
            .with_partitions(vec![0])]))
            .encode(&mut buf, v),
        ApiKey::DescribeProducers => DescribeProducersRequest::default()
            .with_topics(vec![describe_producers_request::TopicRequest::default()
                .with_name(TopicName(s(topic(rng))))
                .with_partition_indexes(vec![0, 1])])
            .encode(&mut buf, v),
        ApiKey::AddPartitionsToTxn => {
            let topics = vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(s(topic(rng))))
                    .with_partitions(vec![0, 1]),
            ];
            let id = TransactionalId(s(&format!("fz-txn-{}", rng.below(3))));
            let pid = ProducerId(rng.below(4) as i64 - 1);
            if v <= 3 {
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(id)
                    .with_v3_and_below_producer_id(pid)
                    .with_v3_and_below_topics(topics)
                    .encode(&mut buf, v)
            } else {
                AddPartitionsToTxnRequest::default()
                    .with_transactions(vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                            .with_transactional_id(id)
                            .with_producer_id(pid)
                            .with_verify_only(rng.below(2) == 0)
                            .with_topics(topics),
                    ])
                    .encode(&mut buf, v)
            }
        }
        ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s("fz-txn-0")))
            .with_producer_id(ProducerId(rng.below(4) as i64 - 1))
            .with_group_id(GroupId(s("fz-g")))
            .encode(&mut buf, v),
        ApiKey::EndTxn => EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&format!("fz-txn-{}", rng.below(3)))))
            .with_producer_id(ProducerId(rng.below(4) as i64 - 1))
            .with_committed(rng.below(2) == 0)
            .encode(&mut buf, v),
        ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s("fz-txn-0")))
            .with_group_id(GroupId(s("fz-g")))
            .with_producer_id(ProducerId(rng.below(4) as i64 - 1))
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic(rng))))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(rng.below(10) as i64),
                    ]),
            ])
            .encode(&mut buf, v),
        ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&format!("fz-cg-{}", rng.below(3)))))
            .with_member_id(s(&format!("fz-m-{}", rng.below(4))))
            .with_member_epoch(rng.below(4) as i32 - 2)
            .with_rebalance_timeout_ms(if rng.below(2) == 0 { -1 } else { 30_000 })
            .with_subscribed_topic_names(
                (rng.below(2) == 0).then(|| vec![TopicName(s("fz-topic"))]),
            )
            .with_topic_partitions((rng.below(2) == 0).then(Vec::new))
            .encode(&mut buf, v),
        ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s(&format!("fz-cg-{}", rng.below(3))))])
            .encode(&mut buf, v),
        ApiKey::ShareGroupHeartbeat => ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&format!("fz-sg-{}", rng.below(3)))))
            .with_member_id(s(&format!("fz-sm-{}", rng.below(4))))
            .with_member_epoch(rng.below(4) as i32 - 2)
            .with_subscribed_topic_names(
                (rng.below(2) == 0).then(|| vec![TopicName(s("fz-topic"))]),
            )
            .encode(&mut buf, v),
        ApiKey::ShareGroupDescribe => ShareGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s(&format!("fz-sg-{}", rng.below(3))))])
            .encode(&mut buf, v),
        ApiKey::ShareFetch => {
            let batch = share_fetch_request::AcknowledgementBatch::default()
                .with_first_offset(rng.below(5) as i64)
                .with_last_offset(rng.below(5) as i64)
                .with_acknowledge_types(vec![rng.below(5) as i8]);
            ShareFetchRequest::default()
                .with_group_id(Some(GroupId(s(&format!("fz-sg-{}", rng.below(3))))))
                .with_member_id(Some(s(&format!("fz-sm-{}", rng.below(4)))))
                .with_share_session_epoch(rng.below(4) as i32 - 1)
                .with_max_wait_ms(rng.below(50) as i32)
                .with_max_bytes(1 << 16)
                .with_max_records(rng.below(20) as i32)
                .with_topics(vec![share_fetch_request::FetchTopic::default()
                    .with_topic_id(uuid::Uuid::from_u128(u128::from(rng.below(2))))
                    .with_partitions(vec![
                        share_fetch_request::FetchPartition::default()
                            .with_partition_index(rng.below(2) as i32)
                            .with_acknowledgement_batches(if rng.below(2) == 0 {
                                vec![batch]
                            } else {
                                Vec::new()
                            }),
                    ])])
                .encode(&mut buf, v)
        }
        ApiKey::DescribeShareGroupOffsets => DescribeShareGroupOffsetsRequest::default()
            .with_groups(vec![
                describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
                    .with_group_id(GroupId(s(&format!("fz-sg-{}", rng.below(3)))))
                    .with_topics((rng.below(2) == 0).then(|| {
                        vec![describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestTopic::default()
                            .with_topic_name(TopicName(s(topic(rng))))
                            .with_partitions(vec![rng.below(3) as i32 - 1])]
                    })),
            ])
            .encode(&mut buf, v),
        ApiKey::AlterShareGroupOffsets => AlterShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(s(&format!("fz-sg-{}", rng.below(3)))))
            .with_topics(vec![
                alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(topic(rng))))
                    .with_partitions(vec![
                        alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default()
                            .with_partition_index(rng.below(3) as i32 - 1)
                            .with_start_offset(rng.below(5) as i64 - 1),
                    ]),
            ])
            .encode(&mut buf, v),
        ApiKey::DeleteShareGroupOffsets => DeleteShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(s(&format!("fz-sg-{}", rng.below(3)))))
            .with_topics(vec![
                delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(topic(rng)))),
            ])
            .encode(&mut buf, v),
        ApiKey::ShareAcknowledge => ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(s(&format!("fz-sg-{}", rng.below(3))))))
            .with_member_id(Some(s(&format!("fz-sm-{}", rng.below(4)))))
            .with_share_session_epoch(rng.below(4) as i32 - 1)
            .with_topics(vec![share_acknowledge_request::AcknowledgeTopic::default()
                .with_topic_id(uuid::Uuid::from_u128(u128::from(rng.below(2))))
                .with_partitions(vec![
                    share_acknowledge_request::AcknowledgePartition::default()
                        .with_partition_index(0)
                        .with_acknowledgement_batches(vec![
                            share_acknowledge_request::AcknowledgementBatch::default()
                                .with_first_offset(rng.below(5) as i64)
                                .with_last_offset(rng.below(5) as i64)
                                .with_acknowledge_types(vec![rng.below(5) as i8]),
                        ]),
                ])])
            .encode(&mut buf, v),
        ApiKey::DescribeTransactions => DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![
                TransactionalId(s("fz-txn-0")),
                TransactionalId(s("fz-txn-1")),
            ])
            .encode(&mut buf, v),
        ApiKey::ListTransactions => ListTransactionsRequest::default()
            .with_state_filters(if rng.below(2) == 0 {
                vec![s("Ongoing"), s("Bogus")]
            } else {
                vec![]
            })
            .with_duration_filter(rng.below(3) as i64 - 1)
            .encode(&mut buf, v),
        ApiKey::DescribeUserScramCredentials => DescribeUserScramCredentialsRequest::default()
            .with_users(match rng.below(3) {
                0 => None,
                1 => Some(vec![]),
                _ => Some(vec![
                    describe_user_scram_credentials_request::UserName::default()
                        .with_name(s("fz-user")),
                ]),
            })
            .encode(&mut buf, v),
        ApiKey::DescribeClientQuotas => {
            use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
            kafka_protocol::messages::DescribeClientQuotasRequest::default()
                .with_components(vec![ComponentData::default()
                    .with_entity_type(s(if rng.below(2) == 0 { "user" } else { "ip" }))
                    .with_match_type(rng.below(4) as i8)
                    .with_match(if rng.below(2) == 0 {
                        None
                    } else {
                        Some(s("fz"))
                    })])
                .with_strict(rng.below(2) == 0)
                .encode(&mut buf, v)
        }
        ApiKey::AlterClientQuotas => {
            use kafka_protocol::messages::alter_client_quotas_request::{
                EntityData, EntryData, OpData,
            };
            kafka_protocol::messages::AlterClientQuotasRequest::default()
                .with_entries(vec![EntryData::default()
                    .with_entity(vec![EntityData::default()
                        .with_entity_type(s(if rng.below(3) == 0 {
                            "user"
                        } else {
                            "client-id"
                        }))
                        .with_entity_name(Some(s("fz")))])
                    .with_ops(vec![OpData::default()
                        .with_key(s(if rng.below(2) == 0 {
                            "producer_byte_rate"
                        } else {
                            "consumer_byte_rate"
                        }))
                        .with_value(rng.below(1 << 30) as f64)
                        .with_remove(rng.below(3) == 0)])])
                // Only validated: a real quota would throttle the cases after it.
                .with_validate_only(true)
                .encode(&mut buf, v)
        }
        ApiKey::CreateAcls => kafka_protocol::messages::CreateAclsRequest::default()
            .with_creations(vec![
                kafka_protocol::messages::create_acls_request::AclCreation::default()
                    .with_resource_type(rng.below(9) as i8)
                    .with_resource_name(s(if rng.below(4) == 0 { "" } else { "fz-topic" }))
                    .with_resource_pattern_type(rng.below(6) as i8)
                    .with_principal(s(if rng.below(4) == 0 {
                        "nocolon"
                    } else {
                        "User:fz"
                    }))
                    .with_host(s("*"))
                    .with_operation(rng.below(16) as i8)
                    .with_permission_type(rng.below(5) as i8),
            ])
            .encode(&mut buf, v),
        ApiKey::DescribeAcls => kafka_protocol::messages::DescribeAclsRequest::default()
            .with_resource_type_filter(rng.below(9) as i8)
            .with_resource_name_filter(if rng.below(2) == 0 {
                None
            } else {
                Some(s("fz-topic"))
            })
            .with_pattern_type_filter(rng.below(6) as i8)
            .with_operation(rng.below(16) as i8)
            .with_permission_type(rng.below(5) as i8)
            .encode(&mut buf, v),
        ApiKey::DeleteAcls => kafka_protocol::messages::DeleteAclsRequest::default()
            .with_filters(vec![
                kafka_protocol::messages::delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(rng.below(9) as i8)
                    .with_pattern_type_filter(rng.below(6) as i8)
                    .with_principal_filter(if rng.below(2) == 0 {
                        None
                    } else {
                        Some(s("User:fz"))
                    })
                    .with_operation(rng.below(16) as i8)
                    .with_permission_type(rng.below(5) as i8),
            ])
            .encode(&mut buf, v),
        ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsRequest::default()
            .with_upsertions(vec![
                alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                    .with_name(s(if rng.below(4) == 0 { "" } else { "fz-user" }))
                    .with_mechanism(rng.below(4) as i8)
                    .with_iterations(if rng.below(2) == 0 { 4096 } else { 10 })
                    .with_salt(bytes::Bytes::from_static(b"salt"))
                    .with_salted_password(bytes::Bytes::from_static(b"salted-password-bytes")),
            ])
            .with_deletions(if rng.below(2) == 0 {
                vec![]
            } else {
                vec![
                    alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                        .with_name(s("fz-gone"))
                        .with_mechanism(1),
                ]
            })
            .encode(&mut buf, v),
        ApiKey::SaslHandshake => SaslHandshakeRequest::default()
            .with_mechanism(s(if rng.below(2) == 0 { "PLAIN" } else { "GSSAPI" }))
            .encode(&mut buf, v),
        ApiKey::SaslAuthenticate => SaslAuthenticateRequest::default()
            .with_auth_bytes(bytes::Bytes::from_static(b"\0user\0password"))
            .encode(&mut buf, v),
        other => panic!("add {other:?} to the fuzz corpus"),
    };
    r.ok().map(|()| buf)
}

/// A whole frame: size, header, body.
pub fn frame(key: ApiKey, v: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(v)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("sluice-fuzz")))
        .encode(&mut buf, key.request_header_version(v))
        .unwrap();
    buf.put_slice(body);
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

/// One of the byte-level mutations, applied to a whole frame (size included).
/// Returns whether the frame's size field still matches its length.
fn mutate_frame(rng: &mut Rng, f: &mut Vec<u8>) -> bool {
    let body = 4usize;
    let fix = |f: &mut Vec<u8>| {
        let len = (f.len() - 4) as i32;
        f[0..4].copy_from_slice(&len.to_be_bytes());
    };
    match rng.below(8) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let at = body + rng.below((f.len() - body) as u64) as usize;
                f[at] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let cut = body + rng.below((f.len() - body) as u64) as usize;
            f.truncate(cut);
            fix(f);
        }
        // A length or count claiming far more than follows.
        2 => {
            let patterns: [&[u8]; 6] = [
                &[0x7f, 0xff, 0xff, 0xff],
                &[0xff, 0xff, 0xff, 0xff],
                &[0x80, 0x00, 0x00, 0x00],
                &[0x7f, 0xff],
                &[0xff, 0xff, 0xff, 0xff, 0x0f],
                &[0x00, 0x10, 0x00, 0x00],
            ];
            let p = patterns[rng.below(6) as usize];
            if f.len() > body + p.len() {
                let at = body + rng.below((f.len() - body - p.len()) as u64) as usize;
                f[at..at + p.len()].copy_from_slice(p);
            }
        }
        // Another version, or another API.
        3 => {
            let v = [-1i16, 0, 1, 3, 12, 13, 99, i16::MAX][rng.below(8) as usize];
            f[body + 2..body + 4].copy_from_slice(&v.to_be_bytes());
        }
        4 => {
            let k = [-1i16, 7, 18, 32, 60, 68, 1000][rng.below(7) as usize];
            f[body..body + 2].copy_from_slice(&k.to_be_bytes());
        }
        // A frame size that lies.
        5 => {
            let claimed =
                [0i32, 3, 7, -1, i32::MAX, (f.len() - 4) as i32 + 100][rng.below(6) as usize];
            f[0..4].copy_from_slice(&claimed.to_be_bytes());
            return false;
        }
        // A stretch of the body repeated.
        6 => {
            let from = body + rng.below((f.len() - body) as u64) as usize;
            let to = (from + 1 + rng.below(64) as usize).min(f.len());
            let chunk = f[from..to].to_vec();
            let at = body + rng.below((f.len() - body) as u64) as usize;
            f.splice(at..at, chunk);
            fix(f);
        }
        // Random bytes appended after the body.
        _ => {
            for _ in 0..1 + rng.below(16) {
                f.push(rng.next() as u8);
            }
            fix(f);
        }
    }
    true
}

/// What the fuzzer saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Cases sent.
    pub cases: u64,
    /// Answered with a response that decoded.
    pub answered: u64,
    /// The broker closed the connection (a refusal).
    pub closed: u64,
    /// No answer in time from a request that may park (Fetch, JoinGroup, SyncGroup, acks=0).
    pub parked: u64,
}

/// Reads one response frame within `wait`: `Ok(Some)` a frame, `Ok(None)` closed,
/// `Err(())` nothing in time.
async fn read_frame(stream: &mut TcpStream, wait: Duration) -> Result<Option<Bytes>, ()> {
    let read = async {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).await.is_err() {
            return None;
        }
        let n = i32::from_be_bytes(size);
        assert!((0..(256 << 20)).contains(&n), "response size {n}");
        let mut body = vec![0u8; n as usize];
        stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    };
    tokio::time::timeout(wait, read).await.map_err(|_| ())
}

/// Whether `key` may legitimately keep a request waiting.
fn may_park(key: i16) -> bool {
    key == ApiKey::Fetch as i16
        || key == ApiKey::JoinGroup as i16
        || key == ApiKey::SyncGroup as i16
}

/// Decodes a response to `key` at `v` and panics (naming the case) if it does not.
fn check_response(case: u64, key: ApiKey, v: i16, correlation_id: i32, mut frame: Bytes) {
    let header_version = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(v)
    };
    let h = ResponseHeader::decode(&mut frame, header_version)
        .unwrap_or_else(|e| panic!("case {case}: {key:?} v{v}: bad response header: {e}"));
    assert_eq!(
        h.correlation_id, correlation_id,
        "case {case}: {key:?} v{v}"
    );
    macro_rules! body {
        ($t:ty) => {{
            <$t>::decode(&mut frame, v)
                .unwrap_or_else(|e| panic!("case {case}: {key:?} v{v}: bad response body: {e}"));
        }};
    }
    match key {
        ApiKey::ApiVersions => {
            // A too-new version is answered with a v0 body.
            if ApiVersionsResponse::decode(&mut frame.clone(), v).is_err() {
                body!(ApiVersionsResponse)
            }
            return;
        }
        ApiKey::Metadata => body!(MetadataResponse),
        ApiKey::Produce => body!(ProduceResponse),
        ApiKey::Fetch => body!(FetchResponse),
        ApiKey::ListOffsets => body!(ListOffsetsResponse),
        ApiKey::CreateTopics => body!(CreateTopicsResponse),
        ApiKey::DeleteTopics => body!(DeleteTopicsResponse),
        ApiKey::InitProducerId => body!(InitProducerIdResponse),
        ApiKey::FindCoordinator => body!(FindCoordinatorResponse),
        ApiKey::JoinGroup => body!(JoinGroupResponse),
        ApiKey::SyncGroup => body!(SyncGroupResponse),
        ApiKey::Heartbeat => body!(HeartbeatResponse),
        ApiKey::LeaveGroup => body!(LeaveGroupResponse),
        ApiKey::OffsetCommit => body!(OffsetCommitResponse),
        ApiKey::OffsetFetch => body!(OffsetFetchResponse),
        ApiKey::ListGroups => body!(ListGroupsResponse),
        ApiKey::DescribeGroups => body!(DescribeGroupsResponse),
        ApiKey::DeleteGroups => body!(DeleteGroupsResponse),
        ApiKey::OffsetDelete => body!(OffsetDeleteResponse),
        ApiKey::DescribeConfigs => body!(DescribeConfigsResponse),
        ApiKey::AlterConfigs => body!(AlterConfigsResponse),
        ApiKey::IncrementalAlterConfigs => body!(IncrementalAlterConfigsResponse),
        ApiKey::CreatePartitions => body!(CreatePartitionsResponse),
        ApiKey::DeleteRecords => body!(DeleteRecordsResponse),
        ApiKey::DescribeCluster => body!(DescribeClusterResponse),
        ApiKey::DescribeLogDirs => body!(DescribeLogDirsResponse),
        ApiKey::OffsetForLeaderEpoch => body!(OffsetForLeaderEpochResponse),
        ApiKey::DescribeTopicPartitions => body!(DescribeTopicPartitionsResponse),
        ApiKey::ElectLeaders => body!(ElectLeadersResponse),
        ApiKey::DescribeProducers => body!(DescribeProducersResponse),
        ApiKey::AddPartitionsToTxn => body!(AddPartitionsToTxnResponse),
        ApiKey::AddOffsetsToTxn => body!(AddOffsetsToTxnResponse),
        ApiKey::EndTxn => body!(EndTxnResponse),
        ApiKey::TxnOffsetCommit => body!(TxnOffsetCommitResponse),
        ApiKey::DescribeTransactions => body!(DescribeTransactionsResponse),
        ApiKey::ConsumerGroupHeartbeat => body!(ConsumerGroupHeartbeatResponse),
        ApiKey::ConsumerGroupDescribe => body!(ConsumerGroupDescribeResponse),
        ApiKey::ShareGroupHeartbeat => body!(ShareGroupHeartbeatResponse),
        ApiKey::ShareGroupDescribe => body!(ShareGroupDescribeResponse),
        ApiKey::ShareFetch => body!(ShareFetchResponse),
        ApiKey::ShareAcknowledge => body!(ShareAcknowledgeResponse),
        ApiKey::DescribeShareGroupOffsets => body!(DescribeShareGroupOffsetsResponse),
        ApiKey::AlterShareGroupOffsets => body!(AlterShareGroupOffsetsResponse),
        ApiKey::DeleteShareGroupOffsets => body!(DeleteShareGroupOffsetsResponse),
        ApiKey::ListTransactions => body!(ListTransactionsResponse),
        ApiKey::DescribeUserScramCredentials => body!(DescribeUserScramCredentialsResponse),
        ApiKey::AlterUserScramCredentials => body!(AlterUserScramCredentialsResponse),
        ApiKey::CreateAcls => body!(kafka_protocol::messages::CreateAclsResponse),
        ApiKey::DescribeClientQuotas => {
            body!(kafka_protocol::messages::DescribeClientQuotasResponse)
        }
        ApiKey::AlterClientQuotas => body!(kafka_protocol::messages::AlterClientQuotasResponse),
        ApiKey::DescribeAcls => body!(kafka_protocol::messages::DescribeAclsResponse),
        ApiKey::DeleteAcls => body!(kafka_protocol::messages::DeleteAclsResponse),
        ApiKey::SaslHandshake => body!(SaslHandshakeResponse),
        ApiKey::SaslAuthenticate => body!(SaslAuthenticateResponse),
        other => panic!("case {case}: a response to unsupported {other:?}"),
    }
    assert!(
        frame.is_empty(),
        "case {case}: {key:?} v{v}: {} trailing bytes",
        frame.len()
    );
}

/// Runs one case against `addr`: a frame from the corpus, mutated, on a fresh
/// connection. Panics on a malformed answer or a hang.
pub async fn run_case(addr: SocketAddr, case: u64, seed: u64, stats: &mut Stats) {
    let mut rng = Rng((seed.wrapping_mul(0xd605_0ad2_6f13_a9c5)
        ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        | 1);
    let (key, lo, hi) = SUPPORTED[rng.below(SUPPORTED.len() as u64) as usize];
    let v = lo + rng.below((hi - lo + 1) as u64) as i16;
    // A third of Produce cases change the records and fix the CRC instead.
    let produce_batch = (key == ApiKey::Produce && rng.below(3) == 0).then(|| {
        let mut b = batch(&mut rng);
        mutate_batch(&mut rng, &mut b);
        b
    });
    let records_only = produce_batch.is_some();
    let Some(body) = request(&mut rng, key, v, produce_batch) else {
        return;
    };
    let correlation_id = (rng.next() >> 33) as i32;
    let mut f = frame(key, v, correlation_id, &body);
    // A fifth of the cases go unmutated, so the broker holds data and groups
    // for the mutated ones to run into.
    let size_ok = records_only || rng.below(5) == 0 || mutate_frame(&mut rng, &mut f);
    stats.cases += 1;
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        panic!("case {case}: the broker no longer accepts connections");
    };
    let _ = stream.set_nodelay(true);
    if stream.write_all(&f).await.is_err() {
        stats.closed += 1;
        return;
    }
    // What was actually sent, to know what a response must decode as.
    let field = |at: usize| f.get(at).copied().unwrap_or(0);
    let sent_key = i16::from_be_bytes([field(4), field(5)]);
    let sent_v = i16::from_be_bytes([field(6), field(7)]);
    let sent_corr = i32::from_be_bytes([field(8), field(9), field(10), field(11)]);
    let parkable = may_park(sent_key) || sent_key == ApiKey::Produce as i16 || !size_ok;
    let wait = Duration::from_millis(if parkable { 700 } else { 10_000 });
    match read_frame(&mut stream, wait).await {
        Ok(Some(frame)) => {
            stats.answered += 1;
            let key = ApiKey::try_from(sent_key)
                .unwrap_or_else(|_| panic!("case {case}: a response to unknown api key {sent_key}"));
            let (lo, hi) = sluice::protocol::supported_range(key)
                .unwrap_or_else(|| panic!("case {case}: a response to unadvertised {key:?}"));
            let v = if key == ApiKey::ApiVersions && sent_v > hi { 0 } else { sent_v };
            assert!(v >= lo && v <= hi, "case {case}: a response to {key:?} v{sent_v}");
            check_response(case, key, v, sent_corr, frame);
        }
        Ok(None) => stats.closed += 1,
        Err(()) if parkable => stats.parked += 1,
        Err(()) => panic!(
            "case {case}: {key:?} v{v} (sent as key {sent_key} v{sent_v}) was neither answered nor refused in 10 s"
        ),
    }
}

/// Checks that the broker still answers a fresh connection.
pub async fn probe(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("the broker accepts connections");
    let body = request(&mut Rng(1), ApiKey::Metadata, 12, None).unwrap();
    stream
        .write_all(&frame(ApiKey::Metadata, 12, 7, &body))
        .await
        .unwrap();
    let frame = read_frame(&mut stream, Duration::from_secs(10))
        .await
        .expect("the broker answers within 10 s")
        .expect("the broker answers");
    check_response(0, ApiKey::Metadata, 12, 7, frame);
}
