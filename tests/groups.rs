//! Group coordinator over the wire: every JoinGroup/SyncGroup version through a
//! whole generation, and committed offsets across restarts and compaction.

mod common;

use common::{commit, create_topic_n, fetch, s, TestBroker};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice::config::Config;

#[global_allocator]
static ALLOC: sluice::alloc::LazyLargeAlloc = sluice::alloc::LazyLargeAlloc;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::for_test(dir.to_path_buf());
    c.group_initial_rebalance_delay_ms = 0;
    c
}

#[tokio::test]
async fn every_join_and_sync_version_forms_a_generation() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start_with(config(dir.path())).await;
    let mut c = b.client().await;
    for v in 0..=9i16 {
        let group = GroupId(s(&format!("g{v}")));
        let mut join = JoinGroupRequest::default()
            .with_group_id(group.clone())
            .with_session_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(bytes::Bytes::from_static(b"\0\0meta"))]);
        if v >= 1 {
            join.rebalance_timeout_ms = 10_000;
        }
        let mut r: JoinGroupResponse = c.call(ApiKey::JoinGroup, v, &join).await;
        if v >= 4 {
            assert_eq!(r.error_code, 79, "v{v}: MEMBER_ID_REQUIRED first");
            assert!(!r.member_id.is_empty());
            join.member_id = r.member_id.clone();
            r = c.call(ApiKey::JoinGroup, v, &join).await;
        }
        assert_eq!(r.error_code, 0, "v{v}");
        assert_eq!(r.generation_id, 1, "v{v}");
        assert_eq!(r.leader, r.member_id, "v{v}: a lone member leads");
        assert_eq!(r.members.len(), 1);
        assert_eq!(&r.members[0].metadata[..], b"\0\0meta");
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        if v >= 7 {
            assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
        }
        let member = r.member_id.clone();
        let sv = v.min(5);
        let mut sync = SyncGroupRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(1)
            .with_member_id(member.clone())
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(bytes::Bytes::from_static(b"\0\0assigned"))]);
        if sv >= 5 {
            sync.protocol_type = Some(s("consumer"));
            sync.protocol_name = Some(s("range"));
        }
        let sr: SyncGroupResponse = c.call(ApiKey::SyncGroup, sv, &sync).await;
        assert_eq!(sr.error_code, 0, "sync v{sv}");
        assert_eq!(&sr.assignment[..], b"\0\0assigned");
        let hb = HeartbeatRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(1)
            .with_member_id(member.clone());
        let h: HeartbeatResponse = c.call(ApiKey::Heartbeat, v.min(4), &hb).await;
        assert_eq!(h.error_code, 0);
        let h: HeartbeatResponse = c
            .call(
                ApiKey::Heartbeat,
                v.min(4),
                &hb.clone().with_generation_id(7),
            )
            .await;
        assert_eq!(h.error_code, 22, "ILLEGAL_GENERATION");

        let d: DescribeGroupsResponse = c
            .call(
                ApiKey::DescribeGroups,
                v.min(5),
                &DescribeGroupsRequest::default().with_groups(vec![group.clone()]),
            )
            .await;
        assert_eq!(d.groups[0].group_state.as_str(), "Stable");
        assert_eq!(d.groups[0].members.len(), 1);
        assert_eq!(
            &d.groups[0].members[0].member_assignment[..],
            b"\0\0assigned"
        );
        assert_eq!(d.groups[0].authorized_operations, i32::MIN);

        let lv = v.min(5);
        let leave = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_members(vec![
                    MemberIdentity::default().with_member_id(member.clone())
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_member_id(member.clone())
        };
        let l: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, lv, &leave).await;
        assert_eq!(l.error_code, 0);
        if lv >= 3 {
            assert_eq!(l.members[0].error_code, 0);
        }
        let d: DescribeGroupsResponse = c
            .call(
                ApiKey::DescribeGroups,
                0,
                &DescribeGroupsRequest::default().with_groups(vec![group.clone()]),
            )
            .await;
        assert_eq!(d.groups[0].group_state.as_str(), "Empty", "v{v}");
    }
    let l: ListGroupsResponse = c
        .call(
            ApiKey::ListGroups,
            4,
            &ListGroupsRequest::default().with_states_filter(vec![s("empty")]),
        )
        .await;
    assert_eq!(l.groups.len(), 10);
    assert!(l.groups.iter().all(|g| g.group_state.as_str() == "Empty"));
    b.stop().await;
}

#[tokio::test]
async fn committed_offsets_survive_restarts_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Compact after every few KiB, so the snapshot path runs many times.
    cfg.group_log_compact_bytes = 4096;
    let b = TestBroker::start_with(cfg.clone()).await;
    let mut c = b.client().await;
    let r = create_topic_n(&mut c, "t", 3, &[]).await;
    assert_eq!(r.topics[0].error_code, 0);
    for round in 0..200i64 {
        let r: OffsetCommitResponse = c
            .call(
                ApiKey::OffsetCommit,
                8,
                &commit("g", "t", &[(0, round), (1, 2 * round)]),
            )
            .await;
        assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));
    }
    // Unknown topics and partitions are refused per partition.
    let r: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 8, &commit("g", "nope", &[(0, 1)]))
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 3);
    let r: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 8, &commit("g", "t", &[(9, 1)]))
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 3);
    // A group to delete, and its offsets with it.
    let _: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 2, &commit("gone", "t", &[(2, 5)]))
        .await;
    let d: DeleteGroupsResponse = c
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("gone"))]),
        )
        .await;
    assert_eq!(d.results[0].error_code, 0);
    b.stop().await;
    // 200 commits of ~160 bytes were written; compaction keeps only the latest.
    let log_bytes: u64 = std::fs::read_dir(dir.path().join("__consumer_offsets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(log_bytes < 12 * 1024, "group log holds {log_bytes} bytes");

    let b = TestBroker::start_with(cfg).await;
    let mut c = b.client().await;
    let mut got = fetch(&mut c, "g", "t").await;
    got.sort();
    assert_eq!(got, vec![(0, 199), (1, 398)]);
    assert!(fetch(&mut c, "gone", "t").await.is_empty());
    // OffsetFetch v1 names partitions; an uncommitted one reads -1.
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![1, 2])]));
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 1, &req).await;
    let p = &r.topics[0].partitions;
    assert_eq!(
        (p[0].committed_offset, p[0].metadata.as_deref()),
        (398, Some("meta"))
    );
    assert_eq!(p[1].committed_offset, -1);
    let l: ListGroupsResponse = c
        .call(ApiKey::ListGroups, 0, &ListGroupsRequest::default())
        .await;
    let ids: Vec<&str> = l.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(ids, vec!["g"]);
    // OffsetDelete on an empty group removes just what it names.
    let od = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &od).await;
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    assert_eq!(fetch(&mut c, "g", "t").await, vec![(1, 398)]);
    b.stop().await;
}

fn join_req(group: &str, member: &str, rebalance_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(5_000)
        .with_rebalance_timeout_ms(rebalance_ms)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(bytes::Bytes::from_static(b"\0\0"))])
}

#[tokio::test]
async fn a_client_vanishing_mid_join_leaves_the_group_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.group_session_timeout_ms_min = 100;
    let b = TestBroker::start_with(cfg).await;
    let mut a = b.client().await;
    // A forms generation 1 alone (JoinGroup v3: no MEMBER_ID_REQUIRED round trip).
    let r: JoinGroupResponse = a.call(ApiKey::JoinGroup, 3, &join_req("g", "", 1000)).await;
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let a_id = r.member_id.clone();
    let sync = |generation, member: &StrBytes| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(generation)
            .with_member_id(member.clone())
    };
    let sr: SyncGroupResponse = a.call(ApiKey::SyncGroup, 3, &sync(1, &a_id)).await;
    assert_eq!(sr.error_code, 0);
    // B's JoinGroup parks (A has not rejoined yet); then B's connection drops.
    let mut gone = b.client().await;
    gone.send(ApiKey::JoinGroup, 3, &join_req("g", "", 1000))
        .await;
    drop(gone);
    // A learns of the rebalance by heartbeat and rejoins: generation 2 includes the
    // vanished member, whose answer cannot be delivered.
    let hb = |generation| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(generation)
            .with_member_id(a_id.clone())
    };
    let mut waited = 0;
    loop {
        let h: HeartbeatResponse = a.call(ApiKey::Heartbeat, 3, &hb(1)).await;
        if h.error_code == 27 {
            break;
        }
        waited += 1;
        assert!(waited < 100, "no rebalance signalled");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r: JoinGroupResponse = a
        .call(ApiKey::JoinGroup, 3, &join_req("g", &a_id, 1000))
        .await;
    assert_eq!((r.error_code, r.generation_id, r.members.len()), (0, 2, 2));
    // A leads and syncs; the vanished member never syncs, so after the rebalance
    // timeout it is dropped and A is alone again in generation 3.
    let sr: SyncGroupResponse = a.call(ApiKey::SyncGroup, 3, &sync(2, &a_id)).await;
    assert_eq!(sr.error_code, 0);
    let mut waited = 0;
    loop {
        let h: HeartbeatResponse = a.call(ApiKey::Heartbeat, 3, &hb(2)).await;
        if h.error_code == 27 {
            break;
        }
        assert_eq!(h.error_code, 0);
        waited += 1;
        assert!(waited < 200, "the vanished member was never dropped");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r: JoinGroupResponse = a
        .call(ApiKey::JoinGroup, 3, &join_req("g", &a_id, 1000))
        .await;
    assert_eq!((r.error_code, r.generation_id, r.members.len()), (0, 3, 1));
    b.stop().await;
}

/// As Kafka: deleting a topic deletes every group's committed offsets for it,
/// durably, so a topic re-created under the same name starts without them.
#[tokio::test]
async fn deleting_a_topic_forgets_its_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let b = TestBroker::start_with(cfg.clone()).await;
    let mut c = b.client().await;
    create_topic_n(&mut c, "doomed", 2, &[]).await;
    create_topic_n(&mut c, "kept", 1, &[]).await;
    for (group, topic) in [("g1", "doomed"), ("g2", "doomed"), ("g2", "kept")] {
        let r: OffsetCommitResponse = c
            .call(ApiKey::OffsetCommit, 8, &commit(group, topic, &[(0, 7)]))
            .await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    }
    let d: DeleteTopicsResponse = c
        .call(
            ApiKey::DeleteTopics,
            4,
            &DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("doomed"))]),
        )
        .await;
    assert_eq!(d.responses[0].error_code, 0);
    assert!(fetch(&mut c, "g1", "doomed").await.is_empty());
    assert!(fetch(&mut c, "g2", "doomed").await.is_empty());
    assert_eq!(fetch(&mut c, "g2", "kept").await, vec![(0, 7)]);
    b.stop().await;
    let b = TestBroker::start_with(cfg).await;
    let mut c = b.client().await;
    create_topic_n(&mut c, "doomed", 2, &[]).await;
    assert!(
        fetch(&mut c, "g1", "doomed").await.is_empty(),
        "tombstones not durable"
    );
    assert_eq!(fetch(&mut c, "g2", "kept").await, vec![(0, 7)]);
    b.stop().await;
}

/// A ConsumerProtocolSubscription v0 of one topic.
fn subscription_v0(topic: &str) -> bytes::Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    b.extend_from_slice(topic.as_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.into()
}

/// A ConsumerProtocolAssignment v0 of partitions of one topic.
fn assignment_v0(topic: &str, partitions: &[i32]) -> bytes::Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    b.extend_from_slice(topic.as_bytes());
    b.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
    for p in partitions {
        b.extend_from_slice(&p.to_be_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.into()
}

#[tokio::test]
async fn a_classic_group_upgrades_only_on_a_good_kip848_join_and_downgrades_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start_with(config(dir.path())).await;
    let mut c = b.client().await;
    create_topic_n(&mut c, "mt", 2, &[]).await;
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("mg")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(subscription_v0("mt"))])
    };
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 3, &join("")).await;
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let id = r.member_id.clone();
    let sync = |generation: i32, assignments: Vec<SyncGroupRequestAssignment>| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s("mg")))
            .with_generation_id(generation)
            .with_member_id(id.clone())
            .with_assignments(assignments)
    };
    let sr: SyncGroupResponse = c
        .call(
            ApiKey::SyncGroup,
            3,
            &sync(
                1,
                vec![SyncGroupRequestAssignment::default()
                    .with_member_id(id.clone())
                    .with_assignment(assignment_v0("mt", &[0, 1]))],
            ),
        )
        .await;
    assert_eq!(sr.error_code, 0);
    let hb = |generation| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(s("mg")))
            .with_generation_id(generation)
            .with_member_id(id.clone())
    };
    let kip848 = |assignor: &str, epoch: i32| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("mg")))
            .with_member_id(s("k"))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(10_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("mt"))]))
            .with_server_assignor(Some(s(assignor)))
            .with_topic_partitions(Some(vec![]))
    };
    // A KIP-848 join that fails changes nothing: the classic group goes on.
    let k: ConsumerGroupHeartbeatResponse = c
        .call(ApiKey::ConsumerGroupHeartbeat, 1, &kip848("bogus", 0))
        .await;
    assert_eq!(k.error_code, 112, "UNSUPPORTED_ASSIGNOR");
    let h: HeartbeatResponse = c.call(ApiKey::Heartbeat, 3, &hb(1)).await;
    assert_eq!(h.error_code, 0);
    // A good one upgrades the group; the classic member is told to rejoin
    // and does, as a follower whose generation is its epoch.
    let k: ConsumerGroupHeartbeatResponse = c
        .call(ApiKey::ConsumerGroupHeartbeat, 1, &kip848("uniform", 0))
        .await;
    assert_eq!((k.error_code, k.member_epoch), (0, 2));
    let h: HeartbeatResponse = c.call(ApiKey::Heartbeat, 3, &hb(1)).await;
    assert_eq!(h.error_code, 27, "REBALANCE_IN_PROGRESS");
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 3, &join(&id)).await;
    assert_eq!((r.error_code, r.generation_id), (0, 2));
    assert_eq!((r.leader.as_str(), r.members.len()), ("", 0));
    let sr: SyncGroupResponse = c.call(ApiKey::SyncGroup, 3, &sync(2, vec![])).await;
    assert_eq!(sr.error_code, 0);
    assert!(
        sr.assignment == assignment_v0("mt", &[0]) || sr.assignment == assignment_v0("mt", &[1]),
        "one partition each: {:?}",
        sr.assignment
    );
    let h: HeartbeatResponse = c.call(ApiKey::Heartbeat, 3, &hb(2)).await;
    assert_eq!(h.error_code, 0);
    // The KIP-848 member leaves: a classic group again, rebalancing.
    let k: ConsumerGroupHeartbeatResponse = c
        .call(ApiKey::ConsumerGroupHeartbeat, 1, &kip848("uniform", -1))
        .await;
    assert_eq!(k.error_code, 0);
    let h: HeartbeatResponse = c.call(ApiKey::Heartbeat, 3, &hb(2)).await;
    assert_eq!(h.error_code, 27);
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 3, &join(&id)).await;
    assert_eq!((r.error_code, r.generation_id), (0, 3));
    assert_eq!(r.leader, id, "a classic leader again");
    b.stop().await;
}
