//! Writes a transaction's COMMIT/ABORT markers for the transaction
//! coordinator: a control batch appended to every partition of the
//! transaction, fsynced before the transaction counts as complete, and for
//! the group log's partition the groups' pending transactional offsets
//! committed or dropped.

use std::sync::{Arc, Weak};

use super::{Broker, GROUP_LOG_DIR};
use crate::log::AppendError;
use crate::storage::PartitionError;
use crate::txn::state::Markers;
use crate::txn::{BoxFuture, MarkerSink};

/// The broker as the transaction coordinator's marker sink.
pub(super) struct BrokerMarkers {
    /// Weak: the coordinator lives inside the broker.
    broker: Weak<Broker>,
}

impl BrokerMarkers {
    /// A sink writing into `broker`'s partitions and groups.
    pub(super) fn new(broker: &Arc<Broker>) -> BrokerMarkers {
        BrokerMarkers {
            broker: Arc::downgrade(broker),
        }
    }
}

impl MarkerSink for BrokerMarkers {
    fn write_markers(&self, m: Markers) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let b = self.broker.upgrade().ok_or("the broker is stopping")?;
            let mut parts = Vec::new();
            let mut groups = false;
            for (topic, index) in &m.partitions {
                if topic == GROUP_LOG_DIR {
                    groups = true;
                    continue;
                }
                // A deleted topic's partitions need no marker, as in Kafka.
                if let Some(t) = b.topic(topic) {
                    if let Some(p) = t.partition(*index).cloned() {
                        parts.push((t, p));
                    }
                }
            }
            let (pid, epoch, commit) = (m.producer_id, m.epoch, m.commit);
            let written = crate::clock::work::blocking(move || {
                parts
                    .into_iter()
                    .map(|(t, p)| {
                        let r = p.append_marker_blocking(pid, epoch, commit, 0);
                        (t, p, r)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| format!("marker task: {e}"))?;
            let mut durable = Vec::with_capacity(written.len());
            for (t, p, r) in written {
                match r {
                    Ok(info) => durable.push((p, info.last_offset + 1)),
                    // Deleted meanwhile: no marker needed. Closed for shutdown
                    // (the topic still registered): not written, so a failure.
                    Err(PartitionError::Deleted)
                        if b.topic(&t.name).is_none_or(|now| !Arc::ptr_eq(&now, &t)) => {}
                    Err(PartitionError::Append(AppendError::InvalidProducerEpoch)) => {
                        // A newer epoch's marker is there already: this one is moot.
                        tracing::warn!(
                            partition = p.index,
                            producer_id = pid,
                            epoch,
                            "a transaction marker older than the partition's producer epoch was skipped"
                        );
                    }
                    Err(e) => return Err(format!("partition {}: {e}", p.index)),
                }
            }
            let markers = durable.len();
            b.wait_durable(durable).await.map_err(|e| e.to_string())?;
            if groups && !b.groups.complete_txn(pid, commit).await {
                return Err("the group log could not record the transaction's offsets".into());
            }
            crate::metrics::txn_markers(commit, markers);
            Ok(())
        })
    }
}
