//! Share groups (KIP-932) over the wire, where the stock clients cannot
//! reach: share-session epochs, acknowledgement rules, duplicate topic
//! entries, release on disconnect, the share-offset admin APIs, and the
//! durable share-partition state across a restart.

mod common;

use common::{create_topic, produce, s, Client, TestBroker};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

#[global_allocator]
static ALLOC: sluice::alloc::LazyLargeAlloc = sluice::alloc::LazyLargeAlloc;

const GROUP: &str = "wire-share";

fn gid() -> Option<GroupId> {
    Some(GroupId(s(GROUP)))
}

fn fetch(
    member: &str,
    epoch: i32,
    topic: Uuid,
    acks: Vec<(i64, i64, Vec<i8>)>,
) -> ShareFetchRequest {
    let batches = acks
        .into_iter()
        .map(|(f, l, t)| {
            share_fetch_request::AcknowledgementBatch::default()
                .with_first_offset(f)
                .with_last_offset(l)
                .with_acknowledge_types(t)
        })
        .collect();
    ShareFetchRequest::default()
        .with_group_id(gid())
        .with_member_id(Some(s(member)))
        .with_share_session_epoch(epoch)
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_max_records(100)
        .with_batch_size(100)
        .with_topics(vec![share_fetch_request::FetchTopic::default()
            .with_topic_id(topic)
            .with_partitions(vec![
                share_fetch_request::FetchPartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(batches),
            ])])
}

fn ack(
    member: &str,
    epoch: i32,
    topic: Uuid,
    acks: Vec<(i64, i64, Vec<i8>)>,
) -> ShareAcknowledgeRequest {
    ShareAcknowledgeRequest::default()
        .with_group_id(gid())
        .with_member_id(Some(s(member)))
        .with_share_session_epoch(epoch)
        .with_topics(vec![share_acknowledge_request::AcknowledgeTopic::default()
            .with_topic_id(topic)
            .with_partitions(vec![
                share_acknowledge_request::AcknowledgePartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(
                        acks.into_iter()
                            .map(|(f, l, t)| {
                                share_acknowledge_request::AcknowledgementBatch::default()
                                    .with_first_offset(f)
                                    .with_last_offset(l)
                                    .with_acknowledge_types(t)
                            })
                            .collect(),
                    ),
            ])])
}

async fn share_fetch(c: &mut Client, r: &ShareFetchRequest) -> ShareFetchResponse {
    c.call(ApiKey::ShareFetch, 1, r).await
}

async fn share_ack(c: &mut Client, r: &ShareAcknowledgeRequest) -> ShareAcknowledgeResponse {
    c.call(ApiKey::ShareAcknowledge, 1, r).await
}

/// (first, last, delivery count) of what one response handed out.
fn acquired(r: &ShareFetchResponse) -> Vec<(i64, i64, i16)> {
    r.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .flat_map(|p| &p.acquired_records)
        .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
        .collect()
}

/// DescribeShareGroupOffsets of the test group: `topic`'s partition 0, or
/// every initialized partition.
async fn describe_offsets(
    c: &mut Client,
    topic: Option<&str>,
) -> DescribeShareGroupOffsetsResponse {
    use describe_share_group_offsets_request as d;
    let topics = topic.map(|t| {
        vec![d::DescribeShareGroupOffsetsRequestTopic::default()
            .with_topic_name(TopicName(s(t)))
            .with_partitions(vec![0])]
    });
    c.call(
        ApiKey::DescribeShareGroupOffsets,
        0,
        &DescribeShareGroupOffsetsRequest::default().with_groups(vec![
            d::DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_topics(topics),
        ]),
    )
    .await
}

async fn start_offset(c: &mut Client, topic: &str) -> i64 {
    let r = describe_offsets(c, Some(topic)).await;
    let p = &r.groups[0].topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.start_offset
}

async fn alter(c: &mut Client, topic: &str, start: i64) -> AlterShareGroupOffsetsResponse {
    c.call(
        ApiKey::AlterShareGroupOffsets,
        0,
        &AlterShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_topics(vec![
                alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(topic)))
                    .with_partitions(vec![
                        alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default()
                            .with_partition_index(0)
                            .with_start_offset(start),
                    ]),
            ]),
    )
    .await
}

async fn delete(c: &mut Client, topic: &str) -> DeleteShareGroupOffsetsResponse {
    c.call(
        ApiKey::DeleteShareGroupOffsets,
        0,
        &DeleteShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_topics(vec![
                delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(topic))),
            ]),
    )
    .await
}

async fn heartbeat(c: &mut Client, member: &str, epoch: i32) -> ShareGroupHeartbeatResponse {
    let mut r = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(member))
        .with_member_epoch(epoch);
    if epoch == 0 {
        r.subscribed_topic_names = Some(vec![TopicName(s("st"))]);
    }
    c.call(ApiKey::ShareGroupHeartbeat, 1, &r).await
}

#[tokio::test]
async fn sessions_acknowledgements_and_offsets_follow_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    let created = create_topic(&mut c, "st", &[]).await;
    let topic = created.topics[0].topic_id;
    produce(&mut c, "st", &[b"a", b"b", b"c", b"d", b"e"]).await;
    // Starting at 0 (the default would be the end: latest).
    let r = alter(&mut c, "st", 0).await;
    assert_eq!(
        (r.error_code, r.responses[0].partitions[0].error_code),
        (0, 0)
    );
    assert_eq!(start_offset(&mut c, "st").await, 0);

    // No session yet; acknowledgements cannot open one.
    assert_eq!(
        share_fetch(&mut c, &fetch("m1", 3, topic, vec![]))
            .await
            .error_code,
        122
    );
    let r = share_fetch(&mut c, &fetch("m1", 0, topic, vec![(0, 0, vec![1])])).await;
    assert_eq!(r.error_code, 42, "INVALID_REQUEST");
    assert_eq!(
        share_ack(&mut c, &ack("m1", 0, topic, vec![]))
            .await
            .error_code,
        123
    );

    // Open it, naming the partition twice (librdkafka may): one entry back.
    let mut open = fetch("m1", 0, topic, vec![]);
    let again = open.topics[0].clone();
    open.topics.push(again);
    let r = share_fetch(&mut c, &open).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.acquisition_lock_timeout_ms, 30_000);
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].partitions.len(), 1);
    assert_eq!(acquired(&r), vec![(0, 4, 1)]);
    assert!(r.responses[0].partitions[0]
        .records
        .as_ref()
        .is_some_and(|b| !b.is_empty()));

    // A stale epoch is refused; the right one moves on.
    assert_eq!(
        share_ack(&mut c, &ack("m1", 7, topic, vec![]))
            .await
            .error_code,
        123
    );
    // Bad batches: overlapping, or types of the wrong count.
    let r = share_ack(
        &mut c,
        &ack("m1", 1, topic, vec![(0, 2, vec![1]), (2, 3, vec![1])]),
    )
    .await;
    assert_eq!(r.responses[0].partitions[0].error_code, 42);
    let r = share_ack(&mut c, &ack("m1", 2, topic, vec![(0, 2, vec![1, 1])])).await;
    assert_eq!(r.responses[0].partitions[0].error_code, 42);
    // Accept 0-1, release 2, reject 3, accept 4 (one type per offset).
    let r = share_ack(
        &mut c,
        &ack("m1", 3, topic, vec![(0, 1, vec![1]), (2, 4, vec![2, 3, 1])]),
    )
    .await;
    assert_eq!(
        (r.error_code, r.responses[0].partitions[0].error_code),
        (0, 0)
    );
    assert_eq!(start_offset(&mut c, "st").await, 2);

    // Later fetches need not name the session's partition.
    let mut next = fetch("m1", 4, topic, vec![]);
    next.topics.clear();
    let r = share_fetch(&mut c, &next).await;
    assert_eq!(
        acquired(&r),
        vec![(2, 2, 2)],
        "the released record, delivered again"
    );
    // Another member may not acknowledge it; an acknowledged one is done.
    let r = share_ack(&mut c, &ack("m1", 5, topic, vec![(4, 4, vec![1])])).await;
    assert_eq!(
        r.responses[0].partitions[0].error_code, 121,
        "INVALID_RECORD_STATE"
    );
    let r = share_fetch(&mut c, &fetch("m2", 0, topic, vec![])).await;
    assert!(acquired(&r).is_empty());
    let r = share_ack(&mut c, &ack("m2", 1, topic, vec![(2, 2, vec![1])])).await;
    assert_eq!(r.responses[0].partitions[0].error_code, 121);
    // Accepted, piggy-backed on a fetch: answered in the fetch.
    let r = share_fetch(&mut c, &fetch("m1", 6, topic, vec![(2, 2, vec![1])])).await;
    assert_eq!(r.responses[0].partitions[0].acknowledge_error_code, 0);
    assert_eq!(start_offset(&mut c, "st").await, 5);
    // Closing the session answers and ends it.
    let r = share_ack(&mut c, &ack("m1", -1, topic, vec![])).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(
        share_ack(&mut c, &ack("m1", 8, topic, vec![]))
            .await
            .error_code,
        122
    );

    // The start survives a restart; nothing done comes back.
    drop(c);
    b.stop().await;
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    assert_eq!(start_offset(&mut c, "st").await, 5);
    let r = share_fetch(&mut c, &fetch("m3", 0, topic, vec![])).await;
    assert!(acquired(&r).is_empty(), "{:?}", acquired(&r));

    // A member in the group: its offsets may not be changed or deleted.
    let h = heartbeat(&mut c, "m3", 0).await;
    assert_eq!(h.error_code, 0);
    assert_eq!(
        h.assignment.unwrap().topic_partitions[0].partitions,
        vec![0]
    );
    let d: ShareGroupDescribeResponse = c
        .call(
            ApiKey::ShareGroupDescribe,
            1,
            &ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(GROUP))]),
        )
        .await;
    let g = &d.groups[0];
    assert_eq!((g.error_code, g.group_state.as_str()), (0, "Stable"));
    assert_eq!(g.members[0].member_id.as_str(), "m3");
    assert_eq!(
        g.members[0].assignment.topic_partitions[0]
            .topic_name
            .0
            .as_str(),
        "st"
    );
    assert_eq!(
        alter(&mut c, "st", 1).await.error_code,
        68,
        "NON_EMPTY_GROUP"
    );
    assert_eq!(delete(&mut c, "st").await.error_code, 68);
    assert_eq!(heartbeat(&mut c, "m3", -1).await.member_epoch, -1);
    let r = delete(&mut c, "st").await;
    assert_eq!((r.error_code, r.responses[0].error_code), (0, 0));
    let r = delete(&mut c, "st").await;
    assert_eq!(r.responses[0].error_code, 3, "nothing left to delete");
    assert_eq!(start_offset(&mut c, "st").await, -1);
    // A classic consumer may not take the share group's id.
    let j: JoinGroupResponse = c
        .call(
            ApiKey::JoinGroup,
            9,
            &JoinGroupRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(StrBytes::from_static_str("m"))
                .with_protocol_type(s("consumer")),
        )
        .await;
    assert_eq!(j.error_code, 23, "INCONSISTENT_GROUP_PROTOCOL");
    b.stop().await;
}

#[tokio::test]
async fn a_closed_connection_releases_its_records_to_a_parked_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    let topic = create_topic(&mut c, "st", &[]).await.topics[0].topic_id;
    produce(&mut c, "st", &[b"a", b"b"]).await;
    alter(&mut c, "st", 0).await;
    let mut holder = b.client().await;
    let r = share_fetch(&mut holder, &fetch("h", 0, topic, vec![])).await;
    assert_eq!(acquired(&r), vec![(0, 1, 1)]);
    // The other member parks (locks last 30 s), then the holder disconnects.
    let mut req = fetch("t", 0, topic, vec![]);
    req.max_wait_ms = 20_000;
    let mut taker = b.client().await;
    let id = taker.send(ApiKey::ShareFetch, 1, &req).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(holder);
    let r: ShareFetchResponse = taker.recv(ApiKey::ShareFetch, 1, id).await;
    assert_eq!(acquired(&r), vec![(0, 1, 2)]);

    // A share group without members can be deleted, state and all.
    let d: DeleteGroupsResponse = c
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(GROUP))]),
        )
        .await;
    assert_eq!(d.results[0].error_code, 0);
    drop((c, taker));
    b.stop().await;
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    let r = describe_offsets(&mut c, None).await;
    assert_eq!(r.groups[0].error_code, 69, "deleted, also after a restart");
    b.stop().await;
}
