//! The `throttle_time_ms` of each response, so a request quota's throttle
//! can be set on any response without each handler knowing about it.

use kafka_protocol::messages::*;

/// A response that can tell the client to wait (a quota's throttle time).
pub trait Throttled {
    /// The throttle time the response carries, in ms.
    fn throttle_time_ms(&self) -> i32;
    /// Sets the throttle time (ignored where the response has no such field).
    fn set_throttle_time_ms(&mut self, ms: i32);
}

macro_rules! throttled {
    ($($ty:ty),* $(,)?) => {
        $(impl Throttled for $ty {
            fn throttle_time_ms(&self) -> i32 {
                self.throttle_time_ms
            }
            fn set_throttle_time_ms(&mut self, ms: i32) {
                self.throttle_time_ms = ms;
            }
        })*
    };
}

throttled!(
    ApiVersionsResponse,
    MetadataResponse,
    ProduceResponse,
    ListOffsetsResponse,
    CreateTopicsResponse,
    DeleteTopicsResponse,
    InitProducerIdResponse,
    FindCoordinatorResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    ListGroupsResponse,
    DescribeGroupsResponse,
    DeleteGroupsResponse,
    OffsetDeleteResponse,
    DescribeConfigsResponse,
    AlterConfigsResponse,
    IncrementalAlterConfigsResponse,
    CreatePartitionsResponse,
    DeleteRecordsResponse,
    DescribeClusterResponse,
    DescribeLogDirsResponse,
    OffsetForLeaderEpochResponse,
    DescribeTopicPartitionsResponse,
    ElectLeadersResponse,
    DescribeProducersResponse,
    AddPartitionsToTxnResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    TxnOffsetCommitResponse,
    DescribeTransactionsResponse,
    ListTransactionsResponse,
    DescribeUserScramCredentialsResponse,
    AlterUserScramCredentialsResponse,
    CreateAclsResponse,
    DescribeAclsResponse,
    DeleteAclsResponse,
    DescribeClientQuotasResponse,
    AlterClientQuotasResponse,
    ConsumerGroupHeartbeatResponse,
    ConsumerGroupDescribeResponse,
    ShareGroupHeartbeatResponse,
    ShareGroupDescribeResponse,
    ShareAcknowledgeResponse,
    DescribeShareGroupOffsetsResponse,
    AlterShareGroupOffsetsResponse,
    DeleteShareGroupOffsetsResponse,
);

/// SASL responses carry no throttle time (they are never throttled).
macro_rules! unthrottled {
    ($($ty:ty),* $(,)?) => {
        $(impl Throttled for $ty {
            fn throttle_time_ms(&self) -> i32 {
                0
            }
            fn set_throttle_time_ms(&mut self, _ms: i32) {}
        })*
    };
}

unthrottled!(SaslHandshakeResponse, SaslAuthenticateResponse);
