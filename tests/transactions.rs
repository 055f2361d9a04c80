//! Transactions over the wire: the coordinator's APIs, markers, the last
//! stable offset, read_committed fetches, transactional offsets, fencing, and
//! what a crash leaves (the coordinator finishes or aborts what was in flight).

mod common;

use std::time::Duration;

use common::{create_topic, fetch_req, produce_req, s, Client, TestBroker};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use sluice::config::Config;
use sluice::log::batch;
use sluice::log::records::{build_raw_batch, encode_records};

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::for_test(dir.to_path_buf());
    c.transaction_check_interval_ms = 50;
    c
}

/// A transactional batch of `values` from `pid` at `epoch`, starting at `seq`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&[u8]]) -> Vec<u8> {
    let records: Vec<_> = values.iter().map(|v| (None, Some(*v))).collect();
    let mut b = build_raw_batch(
        1,
        batch::ATTR_TRANSACTIONAL,
        values.len() as i32,
        &encode_records(&records),
    );
    batch::set_producer(&mut b, pid, epoch, seq);
    b
}

async fn init(c: &mut Client, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
    let r: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s(id))))
                .with_transaction_timeout_ms(timeout_ms)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

async fn add(c: &mut Client, id: &str, pid: i64, epoch: i16, topic: &str, parts: &[i32]) -> i16 {
    let r: AddPartitionsToTxnResponse = c
        .call(
            ApiKey::AddPartitionsToTxn,
            3,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s(id)))
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(parts.to_vec())]),
        )
        .await;
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

async fn end(c: &mut Client, v: i16, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let r: EndTxnResponse = c
        .call(
            ApiKey::EndTxn,
            v,
            &EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s(id)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_committed(commit),
        )
        .await;
    r.error_code
}

/// Ends the transaction, retrying CONCURRENT_TRANSACTIONS as clients do.
async fn end_ok(c: &mut Client, id: &str, pid: i64, epoch: i16, commit: bool) {
    for _ in 0..200 {
        match end(c, 3, id, pid, epoch, commit).await {
            0 => return,
            51 => tokio::time::sleep(Duration::from_millis(10)).await,
            e => panic!("EndTxn: error {e}"),
        }
    }
    panic!("EndTxn kept answering CONCURRENT_TRANSACTIONS");
}

async fn produce_txn(c: &mut Client, id: &str, topic: &str, part: i32, b: Vec<u8>) -> (i16, i64) {
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req(topic, part, b, -1).with_transactional_id(Some(TransactionalId(s(id)))),
        )
        .await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A read_committed (or not) fetch of partition 0 from `offset`: (high
/// watermark, last stable offset, aborted (pid, first offset), record bytes).
async fn fetch(
    c: &mut Client,
    topic: &str,
    offset: i64,
    committed: bool,
) -> (i64, i64, Vec<(i64, i64)>, usize) {
    let req = fetch_req(topic, uuid::Uuid::nil(), offset, 0, 1 << 20)
        .with_isolation_level(i8::from(committed));
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &req).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let aborted = p
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    (
        p.high_watermark,
        p.last_stable_offset,
        aborted,
        p.records.as_ref().map_or(0, |r| r.len()),
    )
}

async fn latest(c: &mut Client, topic: &str, committed: bool) -> i64 {
    let r: ListOffsetsResponse = c
        .call(
            ApiKey::ListOffsets,
            5,
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(i8::from(committed))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![
                        ListOffsetsPartition::default().with_timestamp(-1)
                    ])]),
        )
        .await;
    r.topics[0].partitions[0].offset
}

#[tokio::test]
async fn aborted_records_are_hidden_from_read_committed_and_committed_ones_shown() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start_with(config(dir.path())).await;
    let mut c = b.client().await;
    create_topic(&mut c, "t", &[]).await;
    let (e, pid, epoch) = init(&mut c, "tx-a", 60_000).await;
    assert_eq!((e, epoch), (0, 0));
    // A transactional batch for a partition not in the transaction is refused
    // (KIP-890 part 1's check), so no stray batch opens a transaction that no
    // marker would end; so is one without the request's transactional id.
    let (e, _) = produce_txn(&mut c, "tx-a", "t", 0, txn_batch(pid, epoch, 0, &[b"x"])).await;
    assert_eq!(e, 48, "INVALID_TXN_STATE");
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req("t", 0, txn_batch(pid, epoch, 0, &[b"x"]), -1),
        )
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 87);
    assert_eq!(add(&mut c, "tx-a", pid, epoch, "t", &[0]).await, 0);
    let (e, base) = produce_txn(
        &mut c,
        "tx-a",
        "t",
        0,
        txn_batch(pid, epoch, 0, &[b"a1", b"a2"]),
    )
    .await;
    assert_eq!((e, base), (0, 0));
    // Open: nothing is stable; a read_committed consumer sees nothing yet.
    assert_eq!(latest(&mut c, "t", true).await, 0);
    assert_eq!(latest(&mut c, "t", false).await, 2);
    let (hw, lso, _, bytes) = fetch(&mut c, "t", 0, true).await;
    assert_eq!((hw, lso, bytes), (2, 0, 0));
    // A parked read_committed fetch wakes when the abort moves the LSO.
    let mut waiter = b.client().await;
    let parked = tokio::spawn(async move {
        let req = fetch_req("t", uuid::Uuid::nil(), 0, 20_000, 1 << 20).with_isolation_level(1);
        let r: FetchResponse = waiter.call(ApiKey::Fetch, 11, &req).await;
        r.responses[0].partitions[0].last_stable_offset
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    end_ok(&mut c, "tx-a", pid, epoch, false).await;
    let woke = tokio::time::timeout(Duration::from_secs(10), parked)
        .await
        .expect("the parked fetch woke")
        .unwrap();
    assert_eq!(woke, 3, "two records and the ABORT marker");
    let (_, lso, aborted, bytes) = fetch(&mut c, "t", 0, true).await;
    assert_eq!(lso, 3);
    assert_eq!(aborted, vec![(pid, 0)], "the consumer is told to skip them");
    assert!(
        bytes > 0,
        "the aborted batch and marker are sent, for the client to skip"
    );
    // Committed: visible, and not in any aborted list.
    assert_eq!(add(&mut c, "tx-a", pid, epoch, "t", &[0]).await, 0);
    let (e, base) = produce_txn(&mut c, "tx-a", "t", 0, txn_batch(pid, epoch, 2, &[b"c1"])).await;
    assert_eq!((e, base), (0, 3));
    end_ok(&mut c, "tx-a", pid, epoch, true).await;
    let (hw, lso, aborted, _) = fetch(&mut c, "t", 3, true).await;
    assert_eq!((hw, lso), (5, 5));
    assert!(aborted.is_empty());
    assert_eq!(latest(&mut c, "t", true).await, 5);
    // After the commit, a late batch of the finished transaction (same epoch)
    // cannot open a new one without AddPartitionsToTxn.
    let (e, _) = produce_txn(&mut c, "tx-a", "t", 0, txn_batch(pid, epoch, 3, &[b"late"])).await;
    assert_eq!(e, 48, "INVALID_TXN_STATE");
    assert_eq!(latest(&mut c, "t", true).await, 5);
    // Retrying the commit is fine; aborting what was committed is not.
    assert_eq!(end(&mut c, 3, "tx-a", pid, epoch, true).await, 0);
    assert_eq!(end(&mut c, 3, "tx-a", pid, epoch, false).await, 48);
    // DescribeTransactions and ListTransactions see it.
    let r: DescribeTransactionsResponse = c
        .call(
            ApiKey::DescribeTransactions,
            0,
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s("tx-a"))]),
        )
        .await;
    let st = &r.transaction_states[0];
    assert_eq!(
        (st.error_code, st.transaction_state.as_str()),
        (0, "CompleteCommit")
    );
    assert_eq!((st.producer_id.0, st.transaction_timeout_ms), (pid, 60_000));
    let r: ListTransactionsResponse = c
        .call(
            ApiKey::ListTransactions,
            1,
            &ListTransactionsRequest::default(),
        )
        .await;
    assert_eq!(r.transaction_states.len(), 1);
    assert_eq!(r.transaction_states[0].transactional_id.as_str(), "tx-a");
    b.stop().await;
}

#[tokio::test]
async fn a_new_producer_fences_the_old_one_and_aborts_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start_with(config(dir.path())).await;
    let mut c = b.client().await;
    create_topic(&mut c, "f", &[]).await;
    let (_, pid, e0) = init(&mut c, "tx-f", 60_000).await;
    assert_eq!(add(&mut c, "tx-f", pid, e0, "f", &[0]).await, 0);
    assert_eq!(
        produce_txn(&mut c, "tx-f", "f", 0, txn_batch(pid, e0, 0, &[b"z"]))
            .await
            .0,
        0
    );
    // The second instance: CONCURRENT_TRANSACTIONS while the old transaction
    // aborts, then a newer epoch.
    let mut second = (51, 0, 0);
    for _ in 0..200 {
        second = init(&mut c, "tx-f", 60_000).await;
        if second.0 != 51 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (err, pid2, e2) = second;
    assert_eq!((err, pid2), (0, pid));
    assert!(e2 > e0 + 1, "fenced by a bump, then bumped again: {e2}");
    // The zombie is fenced everywhere.
    let (code, _) = produce_txn(&mut c, "tx-f", "f", 0, txn_batch(pid, e0, 1, &[b"zombie"])).await;
    assert_eq!(code, 47, "INVALID_PRODUCER_EPOCH");
    assert_eq!(
        end(&mut c, 3, "tx-f", pid, e0, true).await,
        90,
        "PRODUCER_FENCED"
    );
    assert_eq!(end(&mut c, 1, "tx-f", pid, e0, true).await, 47, "before v2");
    // Its records were aborted.
    let (_, lso, aborted, _) = fetch(&mut c, "f", 0, true).await;
    assert_eq!(lso, 2);
    assert_eq!(aborted, vec![(pid, 0)]);
    // Timeouts outside the broker's bound are refused.
    assert_eq!(init(&mut c, "tx-big", i32::MAX).await.0, 50);
    b.stop().await;
}

#[tokio::test]
async fn transactional_offsets_become_visible_only_on_commit() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start_with(config(dir.path())).await;
    let mut c = b.client().await;
    create_topic(&mut c, "o", &[]).await;
    let (_, pid, epoch) = init(&mut c, "tx-o", 60_000).await;
    let commit = |offset: i64, epoch: i16| {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s("tx-o")))
            .with_group_id(GroupId(s("og")))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s("o")))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])])
    };
    let r: TxnOffsetCommitResponse = c.call(ApiKey::TxnOffsetCommit, 3, &commit(3, epoch)).await;
    assert_eq!(
        r.topics[0].partitions[0].error_code, 48,
        "INVALID_TXN_STATE before AddOffsetsToTxn"
    );
    let r: AddOffsetsToTxnResponse = c
        .call(
            ApiKey::AddOffsetsToTxn,
            3,
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("tx-o")))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(s("og"))),
        )
        .await;
    assert_eq!(r.error_code, 0);
    let r: TxnOffsetCommitResponse = c.call(ApiKey::TxnOffsetCommit, 3, &commit(7, epoch)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let r: TxnOffsetCommitResponse = c
        .call(ApiKey::TxnOffsetCommit, 3, &commit(7, epoch + 5))
        .await;
    assert_eq!(
        r.topics[0].partitions[0].error_code, 47,
        "a stale or unknown epoch"
    );
    let fetch_offsets = |stable: bool| {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s("og")))
            .with_require_stable(stable)
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("o")))
                .with_partition_indexes(vec![0])]))
    };
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &fetch_offsets(false)).await;
    assert_eq!(r.topics[0].partitions[0].committed_offset, -1, "pending");
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &fetch_offsets(true)).await;
    assert_eq!(
        r.topics[0].partitions[0].error_code, 88,
        "UNSTABLE_OFFSET_COMMIT"
    );
    end_ok(&mut c, "tx-o", pid, epoch, true).await;
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &fetch_offsets(true)).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.committed_offset), (0, 7));
    // Survives a restart.
    b.stop().await;
    let b = TestBroker::start_with(config(dir.path())).await;
    let mut c = b.client().await;
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &fetch_offsets(true)).await;
    assert_eq!(r.topics[0].partitions[0].committed_offset, 7);
    b.stop().await;
}

#[tokio::test]
async fn after_a_crash_an_open_transaction_times_out_and_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start_with(config(dir.path())).await;
    let mut c = b.client().await;
    create_topic(&mut c, "k", &[]).await;
    let (_, pid, epoch) = init(&mut c, "tx-k", 60_000).await;
    // A committed transaction, then an open one with pending offsets.
    assert_eq!(add(&mut c, "tx-k", pid, epoch, "k", &[0]).await, 0);
    produce_txn(&mut c, "tx-k", "k", 0, txn_batch(pid, epoch, 0, &[b"c"])).await;
    end_ok(&mut c, "tx-k", pid, epoch, true).await;
    let (_, pid2, epoch2) = init(&mut c, "tx-k2", 1_000).await;
    assert_eq!(add(&mut c, "tx-k2", pid2, epoch2, "k", &[0]).await, 0);
    let (e, open_at) =
        produce_txn(&mut c, "tx-k2", "k", 0, txn_batch(pid2, epoch2, 0, &[b"o"])).await;
    assert_eq!((e, open_at), (0, 2));
    drop(c);
    let broker = b.broker.clone();
    b.abandon().await.unwrap();
    broker.begin_shutdown(); // its background tasks stop; nothing is closed cleanly
    drop(broker);
    let b = TestBroker::start_with(config(dir.path())).await;
    let mut c = b.client().await;
    // Right after the restart the open transaction still holds the LSO.
    let (_, lso, _, _) = fetch(&mut c, "k", 0, true).await;
    assert!(lso == open_at || lso == 4, "lso {lso}");
    // Its timeout (1 s) aborts it and fences its producer.
    let mut aborted = Vec::new();
    for _ in 0..300 {
        let (_, lso, a, _) = fetch(&mut c, "k", 0, true).await;
        if lso == 4 {
            aborted = a;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(aborted, vec![(pid2, open_at)]);
    let (code, _) = produce_txn(
        &mut c,
        "tx-k2",
        "k",
        0,
        txn_batch(pid2, epoch2, 1, &[b"late"]),
    )
    .await;
    assert_eq!(code, 47);
    // The markers are written before the coordinator records CompleteAbort
    // (as Kafka's): the state may still be PrepareAbort for a moment.
    let mut r = DescribeTransactionsResponse::default();
    for _ in 0..300 {
        r = c
            .call(
                ApiKey::DescribeTransactions,
                0,
                &DescribeTransactionsRequest::default()
                    .with_transactional_ids(vec![TransactionalId(s("tx-k2"))]),
            )
            .await;
        if r.transaction_states[0].transaction_state.as_str() != "PrepareAbort" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        r.transaction_states[0].transaction_state.as_str(),
        "CompleteAbort"
    );
    assert_eq!(r.transaction_states[0].producer_epoch, epoch2 + 1);
    b.stop().await;
    // And after a clean restart the aborted index is still there.
    let b = TestBroker::start_with(config(dir.path())).await;
    let mut c = b.client().await;
    let (_, lso, aborted, _) = fetch(&mut c, "k", 0, true).await;
    assert_eq!((lso, aborted), (4, vec![(pid2, open_at)]));
    b.stop().await;
}
