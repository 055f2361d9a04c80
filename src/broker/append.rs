//! The one write path of produced batches, shared by Kafka's Produce and the
//! HTTP gateway: appends on the blocking pool, traffic counters, the flush
//! policy (`flush.messages`), and with `acks=all` the wait for the fsync.

use std::sync::Arc;

use bytes::Bytes;

use super::{Broker, Topic};
use crate::log::{AppendError, AppendInfo, BatchHeader};
use crate::storage::partition::BatchCheck;
use crate::storage::{Partition, PartitionError};

/// A check run under the partition's log lock before the batch is appended.
pub type PreAppend = Box<dyn Fn(&BatchHeader) -> Result<(), AppendError> + Send>;

/// One batch to append.
pub struct AppendJob {
    /// Where it goes.
    pub partition: Arc<Partition>,
    /// Its topic, for the traffic counters.
    pub topic: Arc<Topic>,
    /// The batch (validated by the append).
    pub bytes: Bytes,
    /// A check of the batch under the log lock (transactions), if any.
    pub check: Option<PreAppend>,
}

/// When an append is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Once written (acks 0 and 1).
    Written,
    /// Once on stable storage, when the partition's flush policy syncs before
    /// the ack (acks=all).
    Durable,
}

impl Broker {
    /// Appends every job in one blocking task, then waits as `acks` says.
    /// One result per job, in order: an append that was written but could
    /// not be made durable is an error (the producer must not count it).
    pub async fn append_batches(
        self: &Arc<Self>,
        jobs: Vec<AppendJob>,
        acks: Acks,
    ) -> Vec<Result<AppendInfo, PartitionError>> {
        let n = jobs.len();
        let targets: Vec<(Arc<Partition>, Arc<Topic>)> = jobs
            .iter()
            .map(|j| (j.partition.clone(), j.topic.clone()))
            .collect();
        let appended = crate::clock::work::blocking(move || {
            jobs.into_iter()
                .map(|j| {
                    let check = j.check.as_deref().map(|c| c as &BatchCheck<'_>);
                    j.partition
                        .append_checked(&j.bytes, check)
                        .map(|info| (info, j.bytes.len() as u64))
                })
                .collect::<Vec<_>>()
        })
        .await;
        let appended = appended.unwrap_or_else(|e| {
            // The task panicked: nothing it did may count as written.
            tracing::error!(error = %e, "the append task failed");
            (0..n).map(|_| Err(PartitionError::Offline)).collect()
        });
        let mut results = Vec::with_capacity(n);
        // (result index, partition, offset that must be durable)
        let mut must_sync = Vec::new();
        let mut due = Vec::new();
        for (i, ((p, topic), r)) in targets.into_iter().zip(appended).enumerate() {
            match r {
                Ok((info, bytes)) => {
                    let records =
                        u64::try_from(info.last_offset - info.base_offset + 1).unwrap_or(0);
                    topic.metrics.appended(records, bytes);
                    let end = info.last_offset + 1;
                    // `flush.messages` above 1 (Kafka's durability model): nothing
                    // waits for the fsync; a flush is asked for once that many
                    // messages are unflushed.
                    if p.flush_policy().sync_before_ack() {
                        must_sync.push((i, p, end));
                    } else if p.unflushed() >= p.flush_policy().messages {
                        due.push((p, end));
                    }
                    results.push(Ok(info));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !due.is_empty() {
            self.storage.syncer().request_flush(due);
        }
        if acks == Acks::Durable && !must_sync.is_empty() {
            let targets = must_sync
                .iter()
                .map(|(_, p, end)| (p.clone(), *end))
                .collect();
            if let Err(e) = self.wait_durable(targets).await {
                // Written but not durable: the producer must not count it as stored.
                for (i, _, _) in &must_sync {
                    results[*i] = Err(match &e {
                        PartitionError::Io(io) => {
                            PartitionError::Io(std::io::Error::new(io.kind(), io.to_string()))
                        }
                        _ => PartitionError::Offline,
                    });
                }
            }
        }
        results
    }
}
