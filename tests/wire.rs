//! In-process wire tests: a real server on 127.0.0.1:0 and hand-built requests,
//! including the negative cases (bad frames, unknown APIs, bad CRCs).

mod common;

use std::time::Duration;

use common::{create_topic, fetch_req, name, produce, produce_req, s, Client, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice::log::records::build_test_batch;
use sluice::protocol::SUPPORTED;

// The binary's allocator: without it, the huge-array case below aborts the process.
#[global_allocator]
static ALLOC: sluice::alloc::LazyLargeAlloc = sluice::alloc::LazyLargeAlloc;

#[tokio::test]
async fn every_advertised_version_decodes_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    // The admin requests below name this topic.
    create_topic(&mut c, "wire-cfg", &[("retention.ms", "3600000")]).await;
    let t = |n: &'static str| TopicName(StrBytes::from_static_str(n));
    for &(key, lo, hi) in SUPPORTED {
        for v in lo..=hi {
            let id = match key {
                ApiKey::Produce => {
                    c.send(key, v, &ProduceRequest::default().with_acks(1))
                        .await
                }
                ApiKey::Fetch => {
                    c.send(key, v, &FetchRequest::default().with_session_epoch(-1))
                        .await
                }
                ApiKey::ListOffsets => c.send(key, v, &ListOffsetsRequest::default()).await,
                ApiKey::Metadata => c.send(key, v, &MetadataRequest::default()).await,
                ApiKey::ApiVersions => {
                    let r = ApiVersionsRequest::default()
                        .with_client_software_name(StrBytes::from_static_str("test"))
                        .with_client_software_version(StrBytes::from_static_str("1.0"));
                    c.send(key, v, &r).await
                }
                ApiKey::CreateTopics => c.send(key, v, &CreateTopicsRequest::default()).await,
                ApiKey::DeleteTopics => c.send(key, v, &DeleteTopicsRequest::default()).await,
                ApiKey::InitProducerId => {
                    c.send(
                        key,
                        v,
                        &InitProducerIdRequest::default().with_transactional_id(None),
                    )
                    .await
                }
                ApiKey::FindCoordinator => {
                    let g = StrBytes::from_static_str("g");
                    let r = if v >= 4 {
                        FindCoordinatorRequest::default().with_coordinator_keys(vec![g])
                    } else {
                        FindCoordinatorRequest::default().with_key(g)
                    };
                    c.send(key, v, &r).await
                }
                // Empty group ids are answered at once with INVALID_GROUP_ID.
                ApiKey::JoinGroup => c.send(key, v, &JoinGroupRequest::default()).await,
                ApiKey::SyncGroup => c.send(key, v, &SyncGroupRequest::default()).await,
                ApiKey::Heartbeat => c.send(key, v, &HeartbeatRequest::default()).await,
                ApiKey::LeaveGroup => c.send(key, v, &LeaveGroupRequest::default()).await,
                ApiKey::OffsetCommit => c.send(key, v, &OffsetCommitRequest::default()).await,
                ApiKey::OffsetFetch => c.send(key, v, &OffsetFetchRequest::default()).await,
                ApiKey::ListGroups => c.send(key, v, &ListGroupsRequest::default()).await,
                ApiKey::DescribeGroups => {
                    let r = DescribeGroupsRequest::default()
                        .with_groups(vec![GroupId(StrBytes::from_static_str("nope"))]);
                    c.send(key, v, &r).await
                }
                ApiKey::DeleteGroups => c.send(key, v, &DeleteGroupsRequest::default()).await,
                ApiKey::OffsetDelete => c.send(key, v, &OffsetDeleteRequest::default()).await,
                ApiKey::DescribeConfigs => {
                    let res = |ty: i8, n: &'static str| {
                        describe_configs_request::DescribeConfigsResource::default()
                            .with_resource_type(ty)
                            .with_resource_name(StrBytes::from_static_str(n))
                    };
                    let r = DescribeConfigsRequest::default()
                        .with_resources(vec![res(2, "wire-cfg"), res(4, "1"), res(2, "nope")])
                        .with_include_synonyms(true)
                        .with_include_documentation(v >= 3);
                    c.send(key, v, &r).await
                }
                ApiKey::AlterConfigs => {
                    let r = AlterConfigsRequest::default().with_resources(vec![
                        alter_configs_request::AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_static_str("nope")),
                    ]);
                    c.send(key, v, &r).await
                }
                ApiKey::IncrementalAlterConfigs => {
                    let r = IncrementalAlterConfigsRequest::default()
                        .with_validate_only(true)
                        .with_resources(vec![
                            incremental_alter_configs_request::AlterConfigsResource::default()
                                .with_resource_type(2)
                                .with_resource_name(StrBytes::from_static_str("wire-cfg"))
                                .with_configs(vec![
                                    incremental_alter_configs_request::AlterableConfig::default()
                                        .with_name(StrBytes::from_static_str("retention.ms"))
                                        .with_config_operation(0)
                                        .with_value(Some(StrBytes::from_static_str("1234"))),
                                ]),
                        ]);
                    c.send(key, v, &r).await
                }
                ApiKey::CreatePartitions => {
                    let r = CreatePartitionsRequest::default().with_topics(vec![
                        create_partitions_request::CreatePartitionsTopic::default()
                            .with_name(t("nope"))
                            .with_count(2),
                    ]);
                    c.send(key, v, &r).await
                }
                ApiKey::DeleteRecords => {
                    let r = DeleteRecordsRequest::default().with_topics(vec![
                        delete_records_request::DeleteRecordsTopic::default()
                            .with_name(t("wire-cfg"))
                            .with_partitions(vec![
                                delete_records_request::DeleteRecordsPartition::default()
                                    .with_offset(0),
                            ]),
                    ]);
                    c.send(key, v, &r).await
                }
                ApiKey::DescribeCluster => {
                    c.send(
                        key,
                        v,
                        &DescribeClusterRequest::default().with_endpoint_type(1),
                    )
                    .await
                }
                ApiKey::DescribeLogDirs => {
                    c.send(key, v, &DescribeLogDirsRequest::default().with_topics(None))
                        .await
                }
                ApiKey::OffsetForLeaderEpoch => {
                    let r = OffsetForLeaderEpochRequest::default().with_topics(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                            .with_topic(t("wire-cfg"))
                            .with_partitions(vec![
                                offset_for_leader_epoch_request::OffsetForLeaderPartition::default(
                                ),
                            ]),
                    ]);
                    c.send(key, v, &r).await
                }
                ApiKey::DescribeTopicPartitions => {
                    let r = DescribeTopicPartitionsRequest::default()
                        .with_response_partition_limit(10)
                        .with_topics(vec![
                            describe_topic_partitions_request::TopicRequest::default()
                                .with_name(t("wire-cfg")),
                        ]);
                    c.send(key, v, &r).await
                }
                ApiKey::ElectLeaders => {
                    let r = ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                        elect_leaders_request::TopicPartitions::default()
                            .with_topic(t("wire-cfg"))
                            .with_partitions(vec![0]),
                    ]));
                    c.send(key, v, &r).await
                }
                ApiKey::DescribeProducers => {
                    let r = DescribeProducersRequest::default().with_topics(vec![
                        describe_producers_request::TopicRequest::default()
                            .with_name(t("wire-cfg"))
                            .with_partition_indexes(vec![0, 7]),
                    ]);
                    c.send(key, v, &r).await
                }
                ApiKey::AddPartitionsToTxn => {
                    let topics = vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(t("wire-cfg"))
                            .with_partitions(vec![0]),
                    ];
                    let r = if v <= 3 {
                        AddPartitionsToTxnRequest::default()
                            .with_v3_and_below_transactional_id(TransactionalId(s("wire-txn")))
                            .with_v3_and_below_producer_id(ProducerId(5))
                            .with_v3_and_below_topics(topics)
                    } else {
                        AddPartitionsToTxnRequest::default().with_transactions(vec![
                            add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                                .with_transactional_id(TransactionalId(s("wire-txn")))
                                .with_producer_id(ProducerId(5))
                                .with_topics(topics),
                        ])
                    };
                    c.send(key, v, &r).await
                }
                ApiKey::AddOffsetsToTxn => {
                    let r = AddOffsetsToTxnRequest::default()
                        .with_transactional_id(TransactionalId(s("wire-txn")))
                        .with_producer_id(ProducerId(5))
                        .with_group_id(GroupId(s("wire-g")));
                    c.send(key, v, &r).await
                }
                ApiKey::EndTxn => {
                    let r = EndTxnRequest::default()
                        .with_transactional_id(TransactionalId(s("wire-txn")))
                        .with_producer_id(ProducerId(5))
                        .with_committed(true);
                    c.send(key, v, &r).await
                }
                ApiKey::TxnOffsetCommit => {
                    let r = TxnOffsetCommitRequest::default()
                        .with_transactional_id(TransactionalId(s("wire-txn")))
                        .with_group_id(GroupId(s("wire-g")))
                        .with_producer_id(ProducerId(5))
                        .with_topics(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                                .with_name(t("wire-cfg"))
                                .with_partitions(vec![
                                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                        .with_committed_offset(1),
                                ]),
                        ]);
                    c.send(key, v, &r).await
                }
                ApiKey::ConsumerGroupHeartbeat => {
                    // A KIP-848 join (v1: the client names itself).
                    let r = ConsumerGroupHeartbeatRequest::default()
                        .with_group_id(GroupId(s("wire-cg")))
                        .with_member_id(s("wire-member"))
                        .with_member_epoch(0)
                        .with_rebalance_timeout_ms(30_000)
                        .with_subscribed_topic_names(Some(vec![TopicName(s("wire-cg-t"))]))
                        .with_topic_partitions(Some(vec![]));
                    c.send(key, v, &r).await
                }
                ApiKey::ConsumerGroupDescribe => {
                    let r = ConsumerGroupDescribeRequest::default()
                        .with_group_ids(vec![GroupId(s("wire-no-such-group"))]);
                    c.send(key, v, &r).await
                }
                ApiKey::ShareGroupHeartbeat => {
                    // A KIP-932 join: the client names itself.
                    let r = ShareGroupHeartbeatRequest::default()
                        .with_group_id(GroupId(s("wire-sg")))
                        .with_member_id(s("wire-share-member"))
                        .with_member_epoch(0)
                        .with_subscribed_topic_names(Some(vec![TopicName(s("wire-sg-t"))]));
                    c.send(key, v, &r).await
                }
                ApiKey::ShareGroupDescribe => {
                    let r = ShareGroupDescribeRequest::default()
                        .with_group_ids(vec![GroupId(s("wire-no-such-group"))]);
                    c.send(key, v, &r).await
                }
                ApiKey::ShareFetch => {
                    // Opens a share session on nothing: answered at once.
                    let r = ShareFetchRequest::default()
                        .with_group_id(Some(GroupId(s("wire-sg"))))
                        .with_member_id(Some(s("wire-share-member")))
                        .with_share_session_epoch(0)
                        .with_max_wait_ms(0)
                        .with_max_bytes(1 << 20)
                        .with_max_records(10);
                    c.send(key, v, &r).await
                }
                ApiKey::DescribeShareGroupOffsets => {
                    let r = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
                        describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
                            .with_group_id(GroupId(s("wire-no-such-group")))
                            .with_topics(None),
                    ]);
                    c.send(key, v, &r).await
                }
                ApiKey::AlterShareGroupOffsets => {
                    let r = AlterShareGroupOffsetsRequest::default()
                        .with_group_id(GroupId(s("wire-sg-alter")))
                        .with_topics(vec![
                            alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default()
                                .with_topic_name(t("wire-no-such-topic"))
                                .with_partitions(vec![
                                    alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default(),
                                ]),
                        ]);
                    c.send(key, v, &r).await
                }
                ApiKey::DeleteShareGroupOffsets => {
                    let r = DeleteShareGroupOffsetsRequest::default()
                        .with_group_id(GroupId(s("wire-no-such-group")));
                    c.send(key, v, &r).await
                }
                ApiKey::ShareAcknowledge => {
                    // Epoch 0 is not a ShareAcknowledge epoch.
                    let r = ShareAcknowledgeRequest::default()
                        .with_group_id(Some(GroupId(s("wire-sg"))))
                        .with_member_id(Some(s("wire-share-member")))
                        .with_share_session_epoch(0);
                    c.send(key, v, &r).await
                }
                ApiKey::DescribeTransactions => {
                    let r = DescribeTransactionsRequest::default()
                        .with_transactional_ids(vec![TransactionalId(s("wire-txn"))]);
                    c.send(key, v, &r).await
                }
                ApiKey::ListTransactions => {
                    let r = ListTransactionsRequest::default()
                        .with_state_filters(vec![s("Ongoing"), s("Nonsense")]);
                    c.send(key, v, &r).await
                }
                ApiKey::DescribeUserScramCredentials => {
                    let r = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                        describe_user_scram_credentials_request::UserName::default()
                            .with_name(s("wire-nobody")),
                    ]));
                    c.send(key, v, &r).await
                }
                ApiKey::AlterUserScramCredentials => {
                    let r = AlterUserScramCredentialsRequest::default().with_deletions(vec![
                        alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                            .with_name(s("wire-nobody"))
                            .with_mechanism(1),
                    ]);
                    c.send(key, v, &r).await
                }
                ApiKey::SaslHandshake => {
                    let r = SaslHandshakeRequest::default().with_mechanism(s("PLAIN"));
                    c.send(key, v, &r).await
                }
                ApiKey::DescribeClientQuotas => {
                    let r = kafka_protocol::messages::DescribeClientQuotasRequest::default();
                    c.send(key, v, &r).await
                }
                ApiKey::AlterClientQuotas => {
                    use kafka_protocol::messages::alter_client_quotas_request::{
                        EntityData, EntryData, OpData,
                    };
                    let r = kafka_protocol::messages::AlterClientQuotasRequest::default()
                        .with_entries(vec![EntryData::default()
                            .with_entity(vec![EntityData::default()
                                .with_entity_type(s("client-id"))
                                .with_entity_name(Some(s("wire")))])
                            .with_ops(vec![OpData::default()
                                .with_key(s("controller_mutation_rate"))
                                .with_value(50.0)])]);
                    c.send(key, v, &r).await
                }
                ApiKey::CreateAcls => {
                    let r = kafka_protocol::messages::CreateAclsRequest::default().with_creations(
                        vec![
                            kafka_protocol::messages::create_acls_request::AclCreation::default()
                                .with_resource_type(2)
                                .with_resource_name(s("t"))
                                .with_resource_pattern_type(3)
                                .with_principal(s("User:alice"))
                                .with_host(s("*"))
                                .with_operation(3)
                                .with_permission_type(3),
                        ],
                    );
                    c.send(key, v, &r).await
                }
                ApiKey::DescribeAcls => {
                    let r = kafka_protocol::messages::DescribeAclsRequest::default()
                        .with_resource_type_filter(1)
                        .with_pattern_type_filter(1)
                        .with_operation(1)
                        .with_permission_type(1);
                    c.send(key, v, &r).await
                }
                ApiKey::DeleteAcls => {
                    let r =
                        kafka_protocol::messages::DeleteAclsRequest::default().with_filters(vec![
                        kafka_protocol::messages::delete_acls_request::DeleteAclsFilter::default()
                            .with_resource_type_filter(1)
                            .with_pattern_type_filter(1)
                            .with_operation(1)
                            .with_permission_type(1),
                    ]);
                    c.send(key, v, &r).await
                }
                ApiKey::SaslAuthenticate => {
                    let r = SaslAuthenticateRequest::default()
                        .with_auth_bytes(bytes::Bytes::from_static(b"\0u\0p"));
                    c.send(key, v, &r).await
                }
                other => panic!("add {other:?} to this test"),
            };
            let mut frame = c
                .recv_frame()
                .await
                .unwrap_or_else(|| panic!("{key:?} v{v}: connection closed"));
            let h = ResponseHeader::decode(&mut frame, key.response_header_version(v)).unwrap();
            assert_eq!(h.correlation_id, id, "{key:?} v{v}");
            check_body(key, v, frame);
        }
    }
    b.stop().await;
}

/// Decodes a response body to the requests above and checks what it says:
/// every byte consumed, and the error codes Kafka gives for those requests.
fn check_body(key: ApiKey, v: i16, mut frame: bytes::Bytes) {
    fn decode<T: Decodable>(key: ApiKey, v: i16, frame: &mut bytes::Bytes) -> T {
        let r = T::decode(frame, v).unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
        assert!(
            frame.is_empty(),
            "{key:?} v{v}: {} trailing bytes",
            frame.len()
        );
        r
    }
    let at = format!("{key:?} v{v}");
    match key {
        ApiKey::Produce => {
            let r: ProduceResponse = decode(key, v, &mut frame);
            assert!(r.responses.is_empty(), "{at}");
        }
        ApiKey::Fetch => {
            let r: FetchResponse = decode(key, v, &mut frame);
            assert_eq!((r.error_code, r.session_id), (0, 0), "{at}");
            assert!(r.responses.is_empty(), "{at}");
        }
        ApiKey::ListOffsets => {
            let r: ListOffsetsResponse = decode(key, v, &mut frame);
            assert!(r.topics.is_empty(), "{at}");
        }
        ApiKey::Metadata => {
            let r: MetadataResponse = decode(key, v, &mut frame);
            assert_eq!(r.brokers.len(), 1, "{at}");
            assert!(r.topics.iter().all(|t| t.error_code == 0), "{at}");
            if v >= 1 {
                assert_eq!(r.controller_id.0, 1, "{at}");
            }
        }
        ApiKey::ApiVersions => {
            let r: ApiVersionsResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 0, "{at}");
            assert_eq!(r.api_keys.len(), SUPPORTED.len(), "{at}");
        }
        ApiKey::CreateTopics => {
            let r: CreateTopicsResponse = decode(key, v, &mut frame);
            assert!(r.topics.is_empty(), "{at}");
        }
        ApiKey::DeleteTopics => {
            let r: DeleteTopicsResponse = decode(key, v, &mut frame);
            assert!(r.responses.is_empty(), "{at}");
        }
        ApiKey::InitProducerId => {
            let r: InitProducerIdResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 0, "{at}");
            assert!(r.producer_id.0 >= 0 && r.producer_epoch == 0, "{at}: {r:?}");
        }
        ApiKey::FindCoordinator => {
            let r: FindCoordinatorResponse = decode(key, v, &mut frame);
            if v >= 4 {
                assert_eq!(r.coordinators.len(), 1, "{at}");
                assert_eq!(
                    (r.coordinators[0].error_code, r.coordinators[0].node_id.0),
                    (0, 1),
                    "{at}"
                );
            } else {
                assert_eq!((r.error_code, r.node_id.0), (0, 1), "{at}");
            }
        }
        // The group requests carry an empty group id: INVALID_GROUP_ID.
        ApiKey::JoinGroup => {
            let r: JoinGroupResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 24, "{at}");
        }
        ApiKey::SyncGroup => {
            let r: SyncGroupResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 24, "{at}");
        }
        ApiKey::Heartbeat => {
            let r: HeartbeatResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 24, "{at}");
        }
        ApiKey::LeaveGroup => {
            let r: LeaveGroupResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 24, "{at}");
        }
        ApiKey::OffsetCommit => {
            let r: OffsetCommitResponse = decode(key, v, &mut frame);
            assert!(r.topics.is_empty(), "{at}");
        }
        ApiKey::OffsetFetch => {
            let r: OffsetFetchResponse = decode(key, v, &mut frame);
            if v >= 8 {
                assert!(r.groups.is_empty(), "{at}");
            } else {
                assert!(r.topics.is_empty(), "{at}");
                assert_eq!(r.error_code, 0, "{at}");
            }
        }
        ApiKey::ListGroups => {
            let r: ListGroupsResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 0, "{at}");
        }
        ApiKey::DescribeGroups => {
            let r: DescribeGroupsResponse = decode(key, v, &mut frame);
            assert_eq!(r.groups.len(), 1, "{at}");
            let g = &r.groups[0];
            assert_eq!((g.error_code, g.group_state.as_str()), (0, "Dead"), "{at}");
            if v >= 3 {
                assert_eq!(g.authorized_operations, i32::MIN, "{at}");
            }
        }
        ApiKey::DeleteGroups => {
            let r: DeleteGroupsResponse = decode(key, v, &mut frame);
            assert!(r.results.is_empty(), "{at}");
        }
        ApiKey::OffsetDelete => {
            let r: OffsetDeleteResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 24, "{at}");
        }
        ApiKey::DescribeConfigs => {
            let r: DescribeConfigsResponse = decode(key, v, &mut frame);
            assert_eq!(r.results.len(), 3, "{at}");
            let (topic, broker, unknown) = (&r.results[0], &r.results[1], &r.results[2]);
            assert_eq!(topic.error_code, 0, "{at}");
            assert_eq!(unknown.error_code, 3, "{at}");
            assert_eq!(broker.error_code, 0, "{at}: {:?}", broker.error_message);
            assert!(
                broker
                    .configs
                    .iter()
                    .any(|c| c.name.as_str() == "log.retention.ms"),
                "{at}: {:?}",
                broker
                    .configs
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
            );
            let retention = topic
                .configs
                .iter()
                .find(|c| c.name.as_str() == "retention.ms")
                .unwrap_or_else(|| panic!("{at}: no retention.ms"));
            assert_eq!(retention.value.as_deref(), Some("3600000"), "{at}");
            assert!(topic.configs.len() >= 30, "{at}");
            if v >= 1 {
                assert_eq!(retention.config_source, 1, "{at}: DYNAMIC_TOPIC_CONFIG");
                assert_eq!(retention.synonyms.len(), 2, "{at}");
                assert_eq!(
                    retention.synonyms[1].name.as_str(),
                    "log.retention.ms",
                    "{at}"
                );
            } else {
                assert_eq!(retention.config_source, 0, "{at}: v0 is_default false");
            }
            if v >= 3 {
                assert_eq!(retention.config_type, 5, "{at}: LONG");
                assert!(retention.documentation.is_some(), "{at}");
            }
        }
        ApiKey::AlterConfigs => {
            let r: AlterConfigsResponse = decode(key, v, &mut frame);
            assert_eq!(r.responses.len(), 1, "{at}");
            assert_eq!(r.responses[0].error_code, 3, "{at}");
        }
        ApiKey::IncrementalAlterConfigs => {
            let r: IncrementalAlterConfigsResponse = decode(key, v, &mut frame);
            assert_eq!(r.responses.len(), 1, "{at}");
            assert_eq!(r.responses[0].error_code, 0, "{at}");
        }
        ApiKey::CreatePartitions => {
            let r: CreatePartitionsResponse = decode(key, v, &mut frame);
            assert_eq!(r.results.len(), 1, "{at}");
            assert_eq!(r.results[0].error_code, 3, "{at}");
        }
        ApiKey::DeleteRecords => {
            let r: DeleteRecordsResponse = decode(key, v, &mut frame);
            let p = &r.topics[0].partitions[0];
            assert_eq!((p.error_code, p.low_watermark), (0, 0), "{at}");
        }
        ApiKey::DescribeCluster => {
            let r: DescribeClusterResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 0, "{at}");
            assert_eq!((r.controller_id.0, r.brokers.len()), (1, 1), "{at}");
            assert!(!r.cluster_id.is_empty(), "{at}");
        }
        ApiKey::DescribeLogDirs => {
            let r: DescribeLogDirsResponse = decode(key, v, &mut frame);
            assert_eq!(r.results.len(), 1, "{at}");
            let d = &r.results[0];
            assert_eq!(d.error_code, 0, "{at}");
            assert!(
                d.topics.iter().any(|t| t.name.as_str() == "wire-cfg"),
                "{at}"
            );
            if v >= 4 {
                assert!(d.total_bytes > 0 && d.usable_bytes > 0, "{at}");
            }
        }
        ApiKey::OffsetForLeaderEpoch => {
            let r: OffsetForLeaderEpochResponse = decode(key, v, &mut frame);
            let p = &r.topics[0].partitions[0];
            assert_eq!((p.error_code, p.end_offset), (0, 0), "{at}");
        }
        ApiKey::DescribeTopicPartitions => {
            let r: DescribeTopicPartitionsResponse = decode(key, v, &mut frame);
            assert_eq!(r.topics.len(), 1, "{at}");
            assert_eq!(r.topics[0].error_code, 0, "{at}");
            assert_eq!(r.topics[0].partitions.len(), 1, "{at}");
            assert_eq!(r.topics[0].partitions[0].leader_id.0, 1, "{at}");
            assert!(r.next_cursor.is_none(), "{at}");
        }
        ApiKey::ElectLeaders => {
            let r: ElectLeadersResponse = decode(key, v, &mut frame);
            let p = &r.replica_election_results[0].partition_result[0];
            assert_eq!(p.error_code, 84, "{at}: ELECTION_NOT_NEEDED");
        }
        ApiKey::DescribeProducers => {
            let r: DescribeProducersResponse = decode(key, v, &mut frame);
            let p = &r.topics[0].partitions;
            assert_eq!((p[0].error_code, p[1].error_code), (0, 3), "{at}");
        }
        // No transactional id "wire-txn" exists: Kafka's errors for an unknown mapping.
        ApiKey::AddPartitionsToTxn => {
            let r: AddPartitionsToTxnResponse = decode(key, v, &mut frame);
            let topics = if v <= 3 {
                &r.results_by_topic_v3_and_below
            } else {
                &r.results_by_transaction[0].topic_results
            };
            let p = &topics[0].results_by_partition[0];
            assert_eq!(
                p.partition_error_code, 49,
                "{at}: INVALID_PRODUCER_ID_MAPPING"
            );
        }
        ApiKey::AddOffsetsToTxn => {
            let r: AddOffsetsToTxnResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 49, "{at}");
        }
        ApiKey::EndTxn => {
            let r: EndTxnResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 49, "{at}");
        }
        ApiKey::TxnOffsetCommit => {
            let r: TxnOffsetCommitResponse = decode(key, v, &mut frame);
            assert_eq!(r.topics[0].partitions[0].error_code, 49, "{at}");
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let r: ConsumerGroupHeartbeatResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 0, "{at}: {:?}", r.error_message);
            assert_eq!(r.member_id.as_deref(), Some("wire-member"), "{at}");
            assert!(r.member_epoch >= 1, "{at}");
            assert!(r.heartbeat_interval_ms > 0, "{at}");
            // The topic does not exist: in the group, with nothing to consume.
            assert_eq!(
                r.assignment.map(|a| a.topic_partitions.len()),
                Some(0),
                "{at}"
            );
        }
        ApiKey::ConsumerGroupDescribe => {
            let r: ConsumerGroupDescribeResponse = decode(key, v, &mut frame);
            assert_eq!(r.groups[0].error_code, 69, "{at}: GROUP_ID_NOT_FOUND");
        }
        ApiKey::ShareGroupHeartbeat => {
            let r: ShareGroupHeartbeatResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 0, "{at}: {:?}", r.error_message);
            assert_eq!(r.member_id.as_deref(), Some("wire-share-member"), "{at}");
            assert!(r.member_epoch >= 1, "{at}");
            assert!(r.heartbeat_interval_ms > 0, "{at}");
            assert_eq!(
                r.assignment.map(|a| a.topic_partitions.len()),
                Some(0),
                "{at}: the topic does not exist"
            );
        }
        ApiKey::ShareGroupDescribe => {
            let r: ShareGroupDescribeResponse = decode(key, v, &mut frame);
            assert_eq!(r.groups[0].error_code, 69, "{at}: GROUP_ID_NOT_FOUND");
        }
        ApiKey::ShareFetch => {
            let r: ShareFetchResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 0, "{at}: {:?}", r.error_message);
            assert_eq!(r.acquisition_lock_timeout_ms, 30_000, "{at}");
            assert!(r.responses.is_empty(), "{at}");
        }
        ApiKey::DescribeShareGroupOffsets => {
            let r: DescribeShareGroupOffsetsResponse = decode(key, v, &mut frame);
            assert_eq!(r.groups[0].error_code, 69, "{at}: GROUP_ID_NOT_FOUND");
        }
        ApiKey::AlterShareGroupOffsets => {
            let r: AlterShareGroupOffsetsResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 0, "{at}: {:?}", r.error_message);
            assert_eq!(
                r.responses[0].partitions[0].error_code, 3,
                "{at}: UNKNOWN_TOPIC_OR_PARTITION"
            );
        }
        ApiKey::DeleteShareGroupOffsets => {
            let r: DeleteShareGroupOffsetsResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 69, "{at}: GROUP_ID_NOT_FOUND");
        }
        ApiKey::ShareAcknowledge => {
            let r: ShareAcknowledgeResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 123, "{at}: INVALID_SHARE_SESSION_EPOCH");
        }
        ApiKey::DescribeTransactions => {
            let r: DescribeTransactionsResponse = decode(key, v, &mut frame);
            assert_eq!(
                r.transaction_states[0].error_code, 105,
                "{at}: TRANSACTIONAL_ID_NOT_FOUND"
            );
        }
        ApiKey::ListTransactions => {
            let r: ListTransactionsResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 0, "{at}");
            assert!(r.transaction_states.is_empty(), "{at}");
            assert_eq!(r.unknown_state_filters.len(), 1, "{at}");
        }
        ApiKey::DescribeUserScramCredentials => {
            let r: DescribeUserScramCredentialsResponse = decode(key, v, &mut frame);
            assert_eq!(r.results[0].error_code, 91, "{at}: RESOURCE_NOT_FOUND");
        }
        ApiKey::AlterUserScramCredentials => {
            let r: AlterUserScramCredentialsResponse = decode(key, v, &mut frame);
            assert_eq!(r.results[0].error_code, 91, "{at}: RESOURCE_NOT_FOUND");
        }
        ApiKey::DescribeClientQuotas => {
            let r: kafka_protocol::messages::DescribeClientQuotasResponse =
                decode(key, v, &mut frame);
            assert_eq!(r.error_code, 0, "{at}");
            assert_eq!(r.entries.map(|e| e.len()), Some(0), "{at}: no quotas yet");
        }
        ApiKey::AlterClientQuotas => {
            let r: kafka_protocol::messages::AlterClientQuotasResponse = decode(key, v, &mut frame);
            assert_eq!(
                r.entries[0].error_code, 42,
                "{at}: controller_mutation_rate is refused"
            );
        }
        // The test broker has no authorizer: the ACL APIs say so.
        ApiKey::CreateAcls => {
            let r: kafka_protocol::messages::CreateAclsResponse = decode(key, v, &mut frame);
            assert_eq!(r.results[0].error_code, 54, "{at}: SECURITY_DISABLED");
        }
        ApiKey::DescribeAcls => {
            let r: kafka_protocol::messages::DescribeAclsResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 54, "{at}: SECURITY_DISABLED");
        }
        ApiKey::DeleteAcls => {
            let r: kafka_protocol::messages::DeleteAclsResponse = decode(key, v, &mut frame);
            assert_eq!(
                r.filter_results[0].error_code, 54,
                "{at}: SECURITY_DISABLED"
            );
        }
        // The test broker's listener is PLAINTEXT: SASL requests are out of place.
        ApiKey::SaslHandshake => {
            let r: SaslHandshakeResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 34, "{at}: ILLEGAL_SASL_STATE");
        }
        ApiKey::SaslAuthenticate => {
            let r: SaslAuthenticateResponse = decode(key, v, &mut frame);
            assert_eq!(r.error_code, 34, "{at}: ILLEGAL_SASL_STATE");
        }
        other => panic!("add {other:?} to check_body"),
    }
}

use kafka_protocol::protocol::Decodable;

#[tokio::test]
async fn api_versions_lists_the_table_and_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    let r: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.api_keys.len(), SUPPORTED.len());
    // Too new: header v0, v0 body, UNSUPPORTED_VERSION and our list.
    let id = c
        .send(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default())
        .await;
    let _ = c.recv_frame().await; // v4 with empty names is INVALID_REQUEST; read and drop
    let mut raw = Client::frame(
        ApiKey::ApiVersions,
        3,
        id + 1,
        &ApiVersionsRequest::default(),
    )
    .to_vec();
    raw[6..8].copy_from_slice(&99i16.to_be_bytes());
    c.send_raw(&raw).await.unwrap();
    let r: ApiVersionsResponse = c.recv(ApiKey::ApiVersions, 0, id + 1).await;
    assert_eq!(r.error_code, 35);
    assert_eq!(r.api_keys.len(), SUPPORTED.len());
    // v3+ with an invalid software name.
    let bad = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("-bad"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &bad).await;
    assert_eq!(r.error_code, 42);
    b.stop().await;
}

#[tokio::test]
async fn bad_frames_close_the_connection_and_the_broker_lives() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let cases: Vec<Vec<u8>> = vec![
        (-1i32).to_be_bytes().to_vec(),    // negative size
        (i32::MAX).to_be_bytes().to_vec(), // oversized
        [0, 0, 0, 3, 0, 0, 0].to_vec(),    // shorter than a header
        {
            let mut f = Client::frame(ApiKey::Produce, 3, 1, &ProduceRequest::default()).to_vec();
            f[6..8].copy_from_slice(&2i16.to_be_bytes()); // Produce v2: below our range
            f
        },
        {
            let mut f = Client::frame(ApiKey::Metadata, 1, 1, &MetadataRequest::default()).to_vec();
            f[4..6].copy_from_slice(&9999i16.to_be_bytes()); // unknown API key
            f
        },
        {
            let mut f = Client::frame(
                ApiKey::Metadata,
                9,
                1,
                &MetadataRequest::default().with_topics(Some(vec![])),
            )
            .to_vec();
            let n = f.len();
            f.truncate(n - 2); // body cut short, size patched to match
            let len = (f.len() - 4) as i32;
            f[0..4].copy_from_slice(&len.to_be_bytes());
            f
        },
        {
            // Metadata v0 claiming 2^31-1 topics in a 20-byte frame: must not allocate them.
            let mut f = Client::frame(
                ApiKey::Metadata,
                0,
                1,
                &MetadataRequest::default().with_topics(Some(vec![])),
            )
            .to_vec();
            let n = f.len();
            f[n - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
            f
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut c = b.client().await;
        c.send_raw(case).await.unwrap();
        assert!(c.closed().await, "case {i} did not close the connection");
    }
    let mut c = b.client().await;
    let r: MetadataResponse = c
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await;
    assert_eq!(r.brokers.len(), 1);
    b.stop().await;
}

#[tokio::test]
async fn metadata_reports_ids_and_auto_creates() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("auto")))
        ]))
        .with_allow_auto_topic_creation(true);
    let r: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await;
    let t = &r.topics[0];
    assert_eq!(t.error_code, 0);
    assert!(!t.topic_id.is_nil());
    assert_eq!(t.topic_authorized_operations, i32::MIN);
    assert_eq!(r.cluster_id.as_ref().unwrap().len(), 22);
    assert_eq!(r.controller_id.0, 1);
    let id = t.topic_id;
    // By id (v10+), and the id is stable across a restart.
    b.stop().await;
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    let req = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
        .with_name(None)
        .with_topic_id(id)]));
    let r: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await;
    assert_eq!(r.topics[0].name.as_ref().unwrap().0.as_str(), "auto");
    // No auto-creation when the client says no.
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("nope")))
        ]))
        .with_allow_auto_topic_creation(false);
    let r: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await;
    assert_eq!(r.topics[0].error_code, 3);
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name("bad name")))
    ]));
    let r: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await;
    assert_eq!(r.topics[0].error_code, 17);
    b.stop().await;
}

#[tokio::test]
async fn produce_errors_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    assert_eq!(
        create_topic(&mut c, "t", &[("max.message.bytes", "200")])
            .await
            .topics[0]
            .error_code,
        0
    );
    // Bad CRC.
    let mut batch = build_test_batch(1, &[b"hello"]);
    let n = batch.len();
    batch[n - 1] ^= 0xff;
    let r: ProduceResponse = c
        .call(ApiKey::Produce, 9, &produce_req("t", 0, batch, 1))
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 2);
    // Too large.
    let big = vec![7u8; 500];
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req("t", 0, build_test_batch(1, &[&big]), 1),
        )
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 10);
    // Unknown topic and partition.
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req("missing", 0, build_test_batch(1, &[b"x"]), 1),
        )
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req("t", 5, build_test_batch(1, &[b"x"]), 1),
        )
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
    // Bad acks.
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req("t", 0, build_test_batch(1, &[b"x"]), 2),
        )
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 21);
    // Nothing was appended: the first good record gets offset 0.
    assert_eq!(produce(&mut c, "t", &[b"good"]).await, 0);
    b.stop().await;
}

#[tokio::test]
async fn acks_zero_sends_no_response() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    create_topic(&mut c, "z", &[]).await;
    c.send(
        ApiKey::Produce,
        9,
        &produce_req("z", 0, build_test_batch(1, &[b"a"]), 0),
    )
    .await;
    let id = c
        .send(ApiKey::Metadata, 1, &MetadataRequest::default())
        .await;
    let _: MetadataResponse = c.recv(ApiKey::Metadata, 1, id).await;
    b.stop().await;
}

#[tokio::test]
async fn fetch_rules() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    let id = create_topic(&mut c, "f", &[]).await.topics[0].topic_id;
    assert_eq!(produce(&mut c, "f", &[b"a", b"b", b"c"]).await, 0);
    assert_eq!(produce(&mut c, "f", &[b"d"]).await, 3);
    for v in [4i16, 11, 12, 13, 16, 18] {
        // From inside the first batch: the whole batch comes back, and with a tiny
        // max_bytes still one whole batch.
        let r: FetchResponse = c
            .call(ApiKey::Fetch, v, &fetch_req("f", id, 1, 0, 10))
            .await;
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{v}");
        assert_eq!(p.high_watermark, 4);
        assert_eq!(p.last_stable_offset, 4);
        let recs = p.records.as_ref().unwrap();
        let h = sluice::log::BatchHeader::parse(recs).unwrap();
        assert_eq!(
            (h.base_offset, h.records_count, recs.len()),
            (0, 3, h.total_bytes())
        );
        // At the end: empty, not null.
        let r: FetchResponse = c
            .call(ApiKey::Fetch, v, &fetch_req("f", id, 4, 0, 1 << 20))
            .await;
        assert_eq!(
            r.responses[0].partitions[0]
                .records
                .as_ref()
                .map(|r| r.len()),
            Some(0)
        );
        // Out of range.
        let r: FetchResponse = c
            .call(ApiKey::Fetch, v, &fetch_req("f", id, 99, 0, 1 << 20))
            .await;
        let p = &r.responses[0].partitions[0];
        let start = if v >= 5 { 0 } else { -1 }; // log_start_offset exists from v5
        assert_eq!(
            (p.error_code, p.high_watermark, p.log_start_offset),
            (1, 4, start)
        );
    }
    // Unknown topic id (v13+), unknown name (older).
    let r: FetchResponse = c
        .call(
            ApiKey::Fetch,
            13,
            &fetch_req("f", uuid::Uuid::new_v4(), 0, 0, 100),
        )
        .await;
    assert_eq!(r.responses[0].partitions[0].error_code, 100);
    let r: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &fetch_req("nope", uuid::Uuid::nil(), 0, 0, 100),
        )
        .await;
    assert_eq!(r.responses[0].partitions[0].error_code, 3);
    b.stop().await;
}

#[tokio::test]
async fn long_poll_is_woken_by_produce() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    let id = create_topic(&mut c, "lp", &[]).await.topics[0].topic_id;
    let mut waiter = b.client().await;
    let fid = waiter
        .send(ApiKey::Fetch, 13, &fetch_req("lp", id, 0, 60_000, 1 << 20))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    produce(&mut c, "lp", &[b"wake"]).await;
    // A 60 s max wait: only the produce can complete this within the guard.
    let r: FetchResponse =
        tokio::time::timeout(Duration::from_secs(30), waiter.recv(ApiKey::Fetch, 13, fid))
            .await
            .expect("fetch was not woken by the produce");
    assert!(!r.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());
    b.stop().await;
}

#[tokio::test]
async fn list_offsets_special_and_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    create_topic(&mut c, "lo", &[]).await;
    for ts in [1000i64, 3000, 2000] {
        let r: ProduceResponse = c
            .call(
                ApiKey::Produce,
                9,
                &produce_req("lo", 0, build_test_batch(ts, &[b"x", b"y"]), -1),
            )
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let query = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("lo"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts)])])
    };
    for (ts, want) in [
        (-2i64, 0i64),
        (-1, 6),
        (-3, 2),
        (0, 0),
        (1500, 2),
        (2500, 2),
        (3001, -1),
    ] {
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 8, &query(ts)).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset), (0, want), "timestamp {ts}");
    }
    b.stop().await;
}

#[tokio::test]
async fn create_and_delete_topics_errors() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    assert_eq!(create_topic(&mut c, "d", &[]).await.topics[0].error_code, 0);
    assert_eq!(
        create_topic(&mut c, "d", &[]).await.topics[0].error_code,
        36
    );
    assert_eq!(
        create_topic(&mut c, "x/y", &[]).await.topics[0].error_code,
        17
    );
    assert_eq!(
        create_topic(&mut c, "cfg", &[("cleanup.policy", "nope")])
            .await
            .topics[0]
            .error_code,
        40
    );
    let t = CreatableTopic::default()
        .with_name(name("p0"))
        .with_num_partitions(0)
        .with_replication_factor(1);
    let r: CreateTopicsResponse = c
        .call(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default().with_topics(vec![t]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 37);
    let t = CreatableTopic::default()
        .with_name(name("rf"))
        .with_num_partitions(1)
        .with_replication_factor(2);
    let r: CreateTopicsResponse = c
        .call(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default().with_topics(vec![t]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 38);
    let t = CreatableTopic::default()
        .with_name(name("v"))
        .with_num_partitions(3)
        .with_replication_factor(-1);
    let r: CreateTopicsResponse = c
        .call(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default()
                .with_topics(vec![t])
                .with_validate_only(true),
        )
        .await;
    assert_eq!((r.topics[0].error_code, r.topics[0].num_partitions), (0, 3));
    assert!(b.broker.topic("v").is_none());
    // Delete by id (v6) then by name (v5): the second is unknown.
    let id = b.broker.topic("d").unwrap().id;
    let req = DeleteTopicsRequest::default().with_topics(vec![
        delete_topics_request::DeleteTopicState::default().with_topic_id(id),
    ]);
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 6, &req).await;
    assert_eq!(r.responses[0].error_code, 0);
    let r: DeleteTopicsResponse = c
        .call(
            ApiKey::DeleteTopics,
            5,
            &DeleteTopicsRequest::default().with_topic_names(vec![name("d")]),
        )
        .await;
    assert_eq!(r.responses[0].error_code, 3);
    // A deleted topic can be created again, with a new id.
    let r = create_topic(&mut c, "d", &[]).await;
    assert_eq!(r.topics[0].error_code, 0);
    assert_ne!(r.topics[0].topic_id, id);
    b.stop().await;
}

#[tokio::test]
async fn idempotent_retries_are_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    create_topic(&mut c, "idem", &[]).await;
    let r: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(1000),
        )
        .await;
    assert_eq!(r.error_code, 0);
    let pid = r.producer_id.0;
    let batch = |seq: i32, vals: &[&[u8]]| {
        let mut b = build_test_batch(1, vals);
        b[43..51].copy_from_slice(&pid.to_be_bytes());
        b[51..53].copy_from_slice(&0i16.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    };
    let send = |b: Vec<u8>| produce_req("idem", 0, b, -1);
    let r: ProduceResponse = c
        .call(ApiKey::Produce, 9, &send(batch(0, &[b"a", b"b"])))
        .await;
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 0);
    let r: ProduceResponse = c
        .call(ApiKey::Produce, 9, &send(batch(0, &[b"a", b"b"])))
        .await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(
        (p.error_code, p.base_offset),
        (0, 0),
        "a retry is answered with the original offset"
    );
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &send(batch(5, &[b"c"]))).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 45);
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &send(batch(2, &[b"c"]))).await;
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 2);
    b.stop().await;
}
