//! The error codes a response carries, for `sluice_request_errors_total`: each
//! response type lists its top-level, per-resource and per-partition codes, as
//! Kafka's `errorCounts()` does. Only non-zero codes are tallied.

use kafka_protocol::messages::*;

/// Non-zero error codes of one response with their counts: few distinct codes
/// per response, so a short list.
#[derive(Debug, Default, Clone)]
pub struct ErrorTally(Vec<(i16, u32)>);

impl ErrorTally {
    /// Counts one occurrence of `code` (0 is skipped).
    pub fn add(&mut self, code: i16) {
        if code == 0 {
            return;
        }
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => self.0.push((code, 1)),
        }
    }

    /// `(code, count)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (i16, u32)> + '_ {
        self.0.iter().copied()
    }

    /// Whether no error was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A response body whose error codes can be tallied.
pub trait ErrorCodes {
    /// Adds every error code of the response to `t`.
    fn error_codes(&self, t: &mut ErrorTally);
}

macro_rules! top_level {
    ($($ty:ty),* $(,)?) => {
        $(impl ErrorCodes for $ty {
            fn error_codes(&self, t: &mut ErrorTally) {
                t.add(self.error_code);
            }
        })*
    };
}

top_level!(
    ApiVersionsResponse,
    InitProducerIdResponse,
    HeartbeatResponse,
    SyncGroupResponse,
    JoinGroupResponse,
    ListGroupsResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    ListTransactionsResponse,
);

impl ErrorCodes for AddPartitionsToTxnResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        let topics = self.results_by_topic_v3_and_below.iter().chain(
            self.results_by_transaction
                .iter()
                .flat_map(|r| &r.topic_results),
        );
        for topic in topics {
            topic
                .results_by_partition
                .iter()
                .for_each(|p| t.add(p.partition_error_code));
        }
    }
}

impl ErrorCodes for TxnOffsetCommitResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        for topic in &self.topics {
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for SaslHandshakeResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ErrorCodes for SaslAuthenticateResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ErrorCodes for DescribeUserScramCredentialsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        self.results.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for kafka_protocol::messages::CreateAclsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.results.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for kafka_protocol::messages::DescribeAclsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ErrorCodes for kafka_protocol::messages::DescribeClientQuotasResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ErrorCodes for kafka_protocol::messages::AlterClientQuotasResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.entries.iter().for_each(|e| t.add(e.error_code));
    }
}

impl ErrorCodes for kafka_protocol::messages::DeleteAclsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.filter_results.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for AlterUserScramCredentialsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.results.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for DescribeTransactionsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.transaction_states
            .iter()
            .for_each(|s| t.add(s.error_code));
    }
}

impl ErrorCodes for FindCoordinatorResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        self.coordinators.iter().for_each(|c| t.add(c.error_code));
    }
}

impl ErrorCodes for LeaveGroupResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        self.members.iter().for_each(|m| t.add(m.error_code));
    }
}

impl ErrorCodes for MetadataResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        for topic in &self.topics {
            t.add(topic.error_code);
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for ProduceResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        for topic in &self.responses {
            topic
                .partition_responses
                .iter()
                .for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for ListOffsetsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        for topic in &self.topics {
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for CreateTopicsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.topics.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for DeleteTopicsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.responses.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for OffsetCommitResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        for topic in &self.topics {
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for OffsetFetchResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        for topic in &self.topics {
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
        for g in &self.groups {
            t.add(g.error_code);
            for topic in &g.topics {
                topic.partitions.iter().for_each(|p| t.add(p.error_code));
            }
        }
    }
}

impl ErrorCodes for ConsumerGroupHeartbeatResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ErrorCodes for ConsumerGroupDescribeResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.groups.iter().for_each(|g| t.add(g.error_code));
    }
}

impl ErrorCodes for ShareGroupHeartbeatResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ErrorCodes for ShareGroupDescribeResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.groups.iter().for_each(|g| t.add(g.error_code));
    }
}

impl ErrorCodes for ShareAcknowledgeResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        for topic in &self.responses {
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeShareGroupOffsetsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        for g in &self.groups {
            t.add(g.error_code);
            for topic in &g.topics {
                topic.partitions.iter().for_each(|p| t.add(p.error_code));
            }
        }
    }
}

impl ErrorCodes for AlterShareGroupOffsetsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        for topic in &self.responses {
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for DeleteShareGroupOffsetsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        self.responses.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for DescribeGroupsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.groups.iter().for_each(|g| t.add(g.error_code));
    }
}

impl ErrorCodes for DeleteGroupsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.results.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for OffsetDeleteResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        for topic in &self.topics {
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeConfigsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.results.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for AlterConfigsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.responses.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for IncrementalAlterConfigsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.responses.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for CreatePartitionsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        self.results.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for DeleteRecordsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        for topic in &self.topics {
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeClusterResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
    }
}

impl ErrorCodes for DescribeLogDirsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        self.results.iter().for_each(|r| t.add(r.error_code));
    }
}

impl ErrorCodes for OffsetForLeaderEpochResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        for topic in &self.topics {
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeTopicPartitionsResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        for topic in &self.topics {
            t.add(topic.error_code);
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for ElectLeadersResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        t.add(self.error_code);
        for r in &self.replica_election_results {
            r.partition_result.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeProducersResponse {
    fn error_codes(&self, t: &mut ErrorTally) {
        for topic in &self.topics {
            topic.partitions.iter().for_each(|p| t.add(p.error_code));
        }
    }
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), for metric labels.
/// Names are made once per code and kept: at most one per i16.
pub fn error_name(code: i16) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashMap<i16, &'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    names.entry(code).or_insert_with(|| {
        let name = match kafka_protocol::ResponseError::try_from_code(code) {
            None => "NONE".to_string(),
            Some(kafka_protocol::ResponseError::Unknown(c)) => format!("UNKNOWN_{c}"),
            Some(e) => screaming_snake(&format!("{e:?}")),
        };
        Box::leak(name.into_boxed_str())
    })
}

/// `UnknownTopicOrPartition` -> `UNKNOWN_TOPIC_OR_PARTITION`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(error_name(87), "INVALID_RECORD");
        assert_eq!(error_name(0), "NONE");
    }

    #[test]
    fn tally_counts_each_code() {
        let mut t = ErrorTally::default();
        for c in [0, 3, 3, 56, 0] {
            t.add(c);
        }
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![(3, 2), (56, 1)]);
    }
}
