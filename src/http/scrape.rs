//! The gauges computed at scrape time, in Prometheus text format: partitions
//! (offsets, size, segments), consumer lag in offsets and seconds, groups, the
//! data directory and the process. Nothing here is kept between scrapes, so a
//! deleted topic or group simply stops being reported.
//!
//! Lag is the high watermark minus the committed offset; lag in seconds is the
//! age of the first record not yet committed, read from the header of the batch
//! that holds the committed offset (found through the offset index: no scan).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::broker::{Broker, Topic};
use crate::clock::now_ms;
use crate::metrics;
use crate::storage::Partition;

/// One metric family being written.
struct Family<'a> {
    /// Output.
    out: &'a mut String,
    /// Metric name.
    name: &'static str,
}

impl<'a> Family<'a> {
    /// Starts a family with its help text and type.
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    /// One sample with `labels` (name, value) pairs.
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_into(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = writeln!(self.out, "{}", value as i64);
        } else {
            let _ = writeln!(self.out, "{value}");
        }
    }
}

/// Escapes a label value as the text format requires.
fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Label value for partitions summed past `metrics_partitions_max`.
const OTHER: &str = "_other";

/// One partition's numbers (or the sum of several).
#[derive(Debug, Default, Clone, Copy)]
struct PartitionRow {
    /// First offset stored.
    log_start: i64,
    /// Log end offset.
    log_end: i64,
    /// High watermark.
    high_watermark: i64,
    /// Bytes on disk.
    size_bytes: u64,
    /// Segment files.
    segments: usize,
    /// 1 if the partition cannot be served.
    offline: u8,
    /// The log cleaner's last dirty ratio (compacted partitions only; not summed).
    dirty_ratio: Option<f64>,
}

impl PartitionRow {
    fn of(p: &Partition) -> PartitionRow {
        match p.stats_blocking() {
            Ok(s) => PartitionRow {
                log_start: s.log_start_offset,
                log_end: s.log_end_offset,
                high_watermark: p.high_watermark(),
                size_bytes: s.size_bytes,
                segments: s.segments,
                offline: 0,
                dirty_ratio: p.dirty_ratio(),
            },
            Err(_) => PartitionRow {
                offline: 1,
                ..PartitionRow::default()
            },
        }
    }

    fn add(&mut self, o: &PartitionRow) {
        self.log_start += o.log_start;
        self.log_end += o.log_end;
        self.high_watermark += o.high_watermark;
        self.size_bytes += o.size_bytes;
        self.segments += o.segments;
        self.offline += o.offline;
        self.dirty_ratio = None;
    }
}

/// Appends the scrape-time families to `out`. `broker` is `None` while the data
/// directory is still loading.
pub(super) fn render(out: &mut String, broker: Option<&Broker>, ready: bool) {
    let mut f = Family::new(
        out,
        "sluice_ready",
        "gauge",
        "1 when the broker serves clients (as /readyz).",
    );
    f.sample(&[], if ready { 1.0 } else { 0.0 });
    process(out, broker);
    let Some(broker) = broker else {
        return;
    };
    let max = broker.config.metrics_partitions_max;
    let topics = broker.topics();
    partitions(out, &topics, max);
    groups(out, broker, &topics, max);
    share_groups(out, broker, max);
    transactions(out, broker);
}

/// Transactional ids by state (every state always listed, 0 when none).
fn transactions(out: &mut String, broker: &Broker) {
    let counts = broker.txns.state_counts();
    let mut f = Family::new(
        out,
        "sluice_transactional_ids",
        "gauge",
        "Transactional ids by the state of their transaction.",
    );
    for state in [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
    ] {
        let n = counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        f.sample(&[("state", state)], n as f64);
    }
}

fn partitions(out: &mut String, topics: &[Arc<Topic>], max: usize) {
    // (topic, partition label, row): the first `max` partitions one by one,
    // every other partition summed into one `_other` row.
    let mut rows: Vec<(&str, String, PartitionRow)> = Vec::new();
    let mut other: Option<PartitionRow> = None;
    for t in topics {
        for p in &t.partitions {
            let row = PartitionRow::of(p);
            if rows.len() < max {
                rows.push((&t.name, p.index.to_string(), row));
            } else {
                other.get_or_insert_with(PartitionRow::default).add(&row);
            }
        }
    }
    if let Some(o) = other {
        rows.push((OTHER, OTHER.to_string(), o));
    }
    let mut f = Family::new(out, "sluice_topics", "gauge", "Topics.");
    f.sample(&[], topics.len() as f64);
    // Per-topic series: the first `max` topics, the rest summed under `_other`.
    let (listed, rest) = topics.split_at(topics.len().min(max));
    let mut f = Family::new(
        out,
        "sluice_topic_partitions",
        "gauge",
        "Partitions of each topic.",
    );
    for t in listed {
        f.sample(&[("topic", &t.name)], t.partitions.len() as f64);
    }
    if !rest.is_empty() {
        let n: usize = rest.iter().map(|t| t.partitions.len()).sum();
        f.sample(&[("topic", OTHER)], n as f64);
    }
    // In the order `TopicTraffic::read` returns them.
    let traffic: [(&'static str, &str); 4] = [
        (metrics::TOPIC_RECORDS_IN, "Records appended, by topic."),
        (
            metrics::TOPIC_BYTES_IN,
            "Record batch bytes appended, by topic.",
        ),
        (
            metrics::TOPIC_RECORDS_OUT,
            "Offsets sent to consumers by Fetch, counted from each fetch offset, by topic.",
        ),
        (
            metrics::TOPIC_BYTES_OUT,
            "Record batch bytes sent by Fetch, by topic.",
        ),
    ];
    let counts: Vec<[u64; 4]> = listed.iter().map(|t| t.metrics.read()).collect();
    let mut rest_counts = [0u64; 4];
    for t in rest {
        for (sum, v) in rest_counts.iter_mut().zip(t.metrics.read()) {
            *sum += v;
        }
    }
    for (i, (name, help)) in traffic.into_iter().enumerate() {
        let mut f = Family::new(out, name, "counter", help);
        for (t, c) in listed.iter().zip(&counts) {
            f.sample(&[("topic", &t.name)], c[i] as f64);
        }
        if !rest.is_empty() {
            f.sample(&[("topic", OTHER)], rest_counts[i] as f64);
        }
    }
    type Get = fn(&PartitionRow) -> f64;
    let families: [(&'static str, &str, Get); 6] = [
        (
            "sluice_partition_log_start_offset",
            "First offset still stored.",
            |r| r.log_start as f64,
        ),
        (
            "sluice_partition_log_end_offset",
            "Offset the next record gets.",
            |r| r.log_end as f64,
        ),
        (
            "sluice_partition_high_watermark",
            "Offset below which records are readable (the log end on one replica).",
            |r| r.high_watermark as f64,
        ),
        (
            "sluice_partition_size_bytes",
            "Bytes of the partition's segments.",
            |r| r.size_bytes as f64,
        ),
        (
            "sluice_partition_segments",
            "Segment files of the partition.",
            |r| r.segments as f64,
        ),
        (
            "sluice_partition_offline",
            "1 when the partition cannot be served (KAFKA_STORAGE_ERROR).",
            |r| f64::from(r.offline),
        ),
    ];
    for (name, help, get) in families {
        let mut f = Family::new(out, name, "gauge", help);
        for (topic, partition, row) in &rows {
            f.sample(&[("topic", topic), ("partition", partition)], get(row));
        }
    }
    let mut f = Family::new(
        out,
        "sluice_log_cleaner_dirty_ratio",
        "gauge",
        "Share of a compacted partition's cleanable bytes not yet cleaned, as the cleaner last saw it (the cleaner's lag).",
    );
    for (topic, partition, row) in &rows {
        if let Some(r) = row.dirty_ratio {
            f.sample(&[("topic", topic), ("partition", partition)], r);
        }
    }
}

/// A group's lag on a partition in records: the high watermark `end` minus
/// its committed offset, never negative. The console shows the same number.
pub(super) fn lag(end: i64, committed: i64) -> i64 {
    end.saturating_sub(committed).max(0)
}

/// A group's lag on a partition in seconds: the age of its first uncommitted
/// record (below the log start, the oldest one kept); 0 without lag. Reads a
/// batch header (blocking). The console shows the same number.
pub(super) fn lag_seconds(p: &Partition, committed: i64, lag: i64, now: i64) -> f64 {
    if lag == 0 {
        return 0.0;
    }
    let from = committed.max(p.log_start_offset());
    match p.timestamp_at_blocking(from) {
        Ok(Some(ts)) if ts >= 0 => ((now - ts).max(0) as f64) / 1000.0,
        _ => 0.0,
    }
}

/// One lag series (or the sum of several).
#[derive(Debug, Clone)]
struct LagRow {
    /// Group id.
    group: String,
    /// Topic.
    topic: String,
    /// Partition number, or [`OTHER`] for the sum of the rest.
    partition: String,
    /// Committed offset (summed for [`OTHER`]).
    committed: i64,
    /// High watermark minus committed offset.
    lag: i64,
    /// Age of the first uncommitted record in seconds; not computed for [`OTHER`].
    lag_seconds: Option<f64>,
}

/// Share groups (KIP-932): members, records in flight, and what happened to
/// their records, per group (the first `max` groups; the rest summed).
fn share_groups(out: &mut String, broker: &Broker, max: usize) {
    let ids = broker.groups.share_groups();
    let view: Vec<(String, crate::group::ShareGroupSummary)> = ids
        .into_iter()
        .filter_map(|id| broker.groups.share_describe(&id).map(|s| (id, s)))
        .collect();
    type Get = fn(&crate::group::ShareGroupSummary) -> f64;
    let families: [(&str, &str, &str, Get); 6] = [
        (
            "sluice_share_group_members",
            "gauge",
            "Members of each share group.",
            |s| s.members.len() as f64,
        ),
        (
            "sluice_share_group_in_flight_records",
            "gauge",
            "Records of each share group handed out or offered again and not yet done.",
            |s| s.in_flight as f64,
        ),
        (
            "sluice_share_group_acknowledged_total",
            "counter",
            "Records a share group's consumers accepted.",
            |s| s.totals.accepted as f64,
        ),
        (
            "sluice_share_group_redeliveries_total",
            "counter",
            "Records handed out again (released, lock expired, or holder gone).",
            |s| s.totals.redelivered as f64,
        ),
        (
            "sluice_share_group_lock_expiries_total",
            "counter",
            "Record locks that ran out before the record was acknowledged.",
            |s| s.totals.lock_expiries as f64,
        ),
        (
            "sluice_share_group_archived_total",
            "counter",
            "Records given up on: rejected, or at the delivery count limit.",
            |s| s.totals.archived as f64,
        ),
    ];
    let (listed, rest) = view.split_at(view.len().min(max));
    for (name, kind, help, get) in families {
        let mut f = Family::new(out, name, kind, help);
        for (id, s) in listed {
            f.sample(&[("group", id)], get(s));
        }
        if !rest.is_empty() {
            let n: f64 = rest.iter().map(|(_, s)| get(s)).sum();
            f.sample(&[("group", OTHER)], n);
        }
    }
}

fn groups(out: &mut String, broker: &Broker, topics: &[Arc<Topic>], max: usize) {
    let view = broker.groups.metrics_view();
    let mut f = Family::new(
        out,
        "sluice_consumer_groups",
        "gauge",
        "Consumer groups by state.",
    );
    // Classic states, then the KIP-848 ones a consumer group passes through.
    for state in [
        "Empty",
        "PreparingRebalance",
        "CompletingRebalance",
        "Stable",
        "Assigning",
        "Reconciling",
    ] {
        let n = view.iter().filter(|g| g.state == state).count();
        f.sample(&[("state", state)], n as f64);
    }
    let mut f = Family::new(
        out,
        "sluice_consumer_group_members",
        "gauge",
        "Members of each consumer group.",
    );
    let (listed, rest) = view.split_at(view.len().min(max));
    for g in listed {
        f.sample(&[("group", &g.group_id)], g.members as f64);
    }
    if !rest.is_empty() {
        let n: usize = rest.iter().map(|g| g.members).sum();
        f.sample(&[("group", OTHER)], n as f64);
    }
    let by_name: HashMap<&str, &Arc<Topic>> = topics.iter().map(|t| (t.name.as_str(), t)).collect();
    let now = now_ms();
    // The first `max` (group, partition) pairs one by one, with lag in seconds
    // (one header read each); every other pair summed into one `_other` row
    // without it, so a scrape's reads and series stay bounded.
    let mut rows: Vec<LagRow> = Vec::new();
    let mut other: Option<LagRow> = None;
    for g in &view {
        for ((topic, index), committed) in &g.offsets {
            let Some(p) = by_name
                .get(topic.as_str())
                .and_then(|t| t.partition(*index))
            else {
                continue; // offsets of a deleted topic or partition
            };
            if p.is_offline() {
                continue;
            }
            let lag = lag(p.high_watermark(), *committed);
            if rows.len() >= max {
                let o = other.get_or_insert_with(|| LagRow {
                    group: OTHER.to_string(),
                    topic: OTHER.to_string(),
                    partition: OTHER.to_string(),
                    committed: 0,
                    lag: 0,
                    lag_seconds: None,
                });
                o.committed += committed;
                o.lag += lag;
                continue;
            }
            let lag_seconds = lag_seconds(p, *committed, lag, now);
            rows.push(LagRow {
                group: g.group_id.clone(),
                topic: topic.clone(),
                partition: index.to_string(),
                committed: *committed,
                lag,
                lag_seconds: Some(lag_seconds),
            });
        }
    }
    rows.extend(other);
    type Get = fn(&LagRow) -> Option<f64>;
    let families: [(&'static str, &str, Get); 3] = [
        (
            "sluice_consumer_group_committed_offset",
            "Committed offset of a group on a partition.",
            |r| Some(r.committed as f64),
        ),
        (
            "sluice_consumer_group_lag",
            "Records not yet consumed: high watermark minus committed offset.",
            |r| Some(r.lag as f64),
        ),
        (
            "sluice_consumer_group_lag_seconds",
            "Age of the first record not yet committed (0 when caught up).",
            |r| r.lag_seconds,
        ),
    ];
    for (name, help, get) in families {
        let mut f = Family::new(out, name, "gauge", help);
        for r in &rows {
            if let Some(v) = get(r) {
                f.sample(
                    &[
                        ("group", &r.group),
                        ("topic", &r.topic),
                        ("partition", &r.partition),
                    ],
                    v,
                );
            }
        }
    }
}

fn process(out: &mut String, broker: Option<&Broker>) {
    let p = crate::sys::process_stats();
    let mut f = Family::new(
        out,
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent.",
    );
    f.sample(&[], p.cpu_seconds);
    let mut f = Family::new(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size.",
    );
    f.sample(&[], p.resident_bytes as f64);
    let mut f = Family::new(
        out,
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size.",
    );
    f.sample(&[], p.virtual_bytes as f64);
    let mut f = Family::new(out, "process_open_fds", "gauge", "Open file descriptors.");
    f.sample(&[], p.open_fds as f64);
    let mut f = Family::new(out, "process_max_fds", "gauge", "The open-files limit.");
    f.sample(&[], p.max_fds as f64);
    let mut f = Family::new(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time, seconds since the Unix epoch.",
    );
    f.sample(&[], p.start_time_seconds);
    let Some(b) = broker else {
        return;
    };
    if let Ok((total, free)) = crate::sys::disk_space(&b.config.data_dir) {
        let mut f = Family::new(
            out,
            "sluice_data_dir_free_bytes",
            "gauge",
            "Bytes still available to the broker on the data directory's filesystem.",
        );
        f.sample(&[], free as f64);
        let mut f = Family::new(
            out,
            "sluice_data_dir_total_bytes",
            "gauge",
            "Size of the data directory's filesystem.",
        );
        f.sample(&[], total as f64);
    }
    let mut f = Family::new(
        out,
        "sluice_data_dir_offline",
        "gauge",
        "1 once a failed fsync took the data directory offline.",
    );
    f.sample(
        &[],
        if b.storage.health.is_offline() {
            1.0
        } else {
            0.0
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_integers_plain() {
        let mut s = String::new();
        let mut f = Family::new(&mut s, "x", "gauge", "help");
        f.sample(&[("g", "a\"b\\c\nd")], 3.0);
        f.sample(&[], 0.5);
        assert_eq!(
            s,
            "# HELP x help\n# TYPE x gauge\nx{g=\"a\\\"b\\\\c\\nd\"} 3\nx 0.5\n"
        );
    }
}
