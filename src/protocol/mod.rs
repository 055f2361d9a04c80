//! The bridge to `kafka-protocol`: the supported-version table (`versions`),
//! request decoding into a closed [`Request`] enum, response framing, error codes
//! (`error`), and the zero-copy Fetch response encoder (`fetch`).
//!
//! Invariant: `protocol` and `handlers` are the only modules that name
//! `kafka_protocol` types.

pub mod error;
pub mod error_codes;
pub mod fetch;
pub mod share_fetch;
pub mod throttle;
pub mod versions;

pub use error_codes::{error_name, ErrorCodes, ErrorTally};
pub use fetch::{encode_fetch, FetchPartitionReply, FetchReply, FetchTopicReply};
pub use share_fetch::{
    encode_share_fetch, ShareFetchPartitionReply, ShareFetchReply, ShareFetchTopicReply,
};
pub use throttle::Throttled;
pub use versions::{
    api_name, api_name_of, api_version_list, api_versions_fallback, supported_range, SUPPORTED,
};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AlterConfigsRequest,
    AlterUserScramCredentialsRequest, ApiKey, ApiVersionsRequest, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest, DescribeLogDirsRequest,
    DescribeProducersRequest, DescribeTopicPartitionsRequest, DescribeTransactionsRequest,
    DescribeUserScramCredentialsRequest, ElectLeadersRequest, EndTxnRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, ListTransactionsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest,
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest, SyncGroupRequest,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::log::FileSlice;

/// A decoded request body: only the APIs in [`SUPPORTED`].
#[derive(Debug)]
pub enum Request {
    /// ApiVersions.
    ApiVersions(ApiVersionsRequest),
    /// Metadata.
    Metadata(MetadataRequest),
    /// Produce.
    Produce(ProduceRequest),
    /// Fetch.
    Fetch(FetchRequest),
    /// ListOffsets.
    ListOffsets(ListOffsetsRequest),
    /// CreateTopics.
    CreateTopics(CreateTopicsRequest),
    /// DeleteTopics.
    DeleteTopics(DeleteTopicsRequest),
    /// InitProducerId (idempotent producers only).
    InitProducerId(InitProducerIdRequest),
    /// FindCoordinator.
    FindCoordinator(FindCoordinatorRequest),
    /// JoinGroup.
    JoinGroup(JoinGroupRequest),
    /// SyncGroup.
    SyncGroup(SyncGroupRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup.
    LeaveGroup(LeaveGroupRequest),
    /// OffsetCommit.
    OffsetCommit(OffsetCommitRequest),
    /// OffsetFetch.
    OffsetFetch(OffsetFetchRequest),
    /// ListGroups.
    ListGroups(ListGroupsRequest),
    /// DescribeGroups.
    DescribeGroups(DescribeGroupsRequest),
    /// DeleteGroups.
    DeleteGroups(DeleteGroupsRequest),
    /// OffsetDelete.
    OffsetDelete(OffsetDeleteRequest),
    /// DescribeConfigs.
    DescribeConfigs(DescribeConfigsRequest),
    /// AlterConfigs.
    AlterConfigs(AlterConfigsRequest),
    /// IncrementalAlterConfigs.
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    /// CreatePartitions.
    CreatePartitions(CreatePartitionsRequest),
    /// DeleteRecords.
    DeleteRecords(DeleteRecordsRequest),
    /// DescribeCluster.
    DescribeCluster(DescribeClusterRequest),
    /// DescribeLogDirs.
    DescribeLogDirs(DescribeLogDirsRequest),
    /// OffsetForLeaderEpoch.
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    /// DescribeTopicPartitions.
    DescribeTopicPartitions(DescribeTopicPartitionsRequest),
    /// ElectLeaders.
    ElectLeaders(ElectLeadersRequest),
    /// DescribeProducers.
    DescribeProducers(DescribeProducersRequest),
    /// AddPartitionsToTxn.
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    /// AddOffsetsToTxn.
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    /// EndTxn.
    EndTxn(EndTxnRequest),
    /// TxnOffsetCommit.
    TxnOffsetCommit(TxnOffsetCommitRequest),
    /// DescribeTransactions.
    DescribeTransactions(DescribeTransactionsRequest),
    /// ListTransactions.
    ListTransactions(ListTransactionsRequest),
    /// DescribeUserScramCredentials.
    DescribeUserScramCredentials(DescribeUserScramCredentialsRequest),
    /// AlterUserScramCredentials.
    AlterUserScramCredentials(AlterUserScramCredentialsRequest),
    /// CreateAcls.
    CreateAcls(kafka_protocol::messages::CreateAclsRequest),
    /// DescribeAcls.
    DescribeAcls(kafka_protocol::messages::DescribeAclsRequest),
    /// DeleteAcls.
    DeleteAcls(kafka_protocol::messages::DeleteAclsRequest),
    /// DescribeClientQuotas.
    DescribeClientQuotas(kafka_protocol::messages::DescribeClientQuotasRequest),
    /// AlterClientQuotas.
    AlterClientQuotas(kafka_protocol::messages::AlterClientQuotasRequest),
    /// ConsumerGroupHeartbeat (KIP-848).
    ConsumerGroupHeartbeat(kafka_protocol::messages::ConsumerGroupHeartbeatRequest),
    /// ConsumerGroupDescribe (KIP-848).
    ConsumerGroupDescribe(kafka_protocol::messages::ConsumerGroupDescribeRequest),
    /// ShareGroupHeartbeat (KIP-932).
    ShareGroupHeartbeat(kafka_protocol::messages::ShareGroupHeartbeatRequest),
    /// ShareGroupDescribe (KIP-932).
    ShareGroupDescribe(kafka_protocol::messages::ShareGroupDescribeRequest),
    /// ShareFetch (KIP-932).
    ShareFetch(kafka_protocol::messages::ShareFetchRequest),
    /// ShareAcknowledge (KIP-932).
    ShareAcknowledge(kafka_protocol::messages::ShareAcknowledgeRequest),
    /// DescribeShareGroupOffsets (KIP-932).
    DescribeShareGroupOffsets(kafka_protocol::messages::DescribeShareGroupOffsetsRequest),
    /// AlterShareGroupOffsets (KIP-932).
    AlterShareGroupOffsets(kafka_protocol::messages::AlterShareGroupOffsetsRequest),
    /// DeleteShareGroupOffsets (KIP-932).
    DeleteShareGroupOffsets(kafka_protocol::messages::DeleteShareGroupOffsetsRequest),
    /// SaslHandshake.
    SaslHandshake(SaslHandshakeRequest),
    /// SaslAuthenticate.
    SaslAuthenticate(SaslAuthenticateRequest),
}

/// A request with the header fields handlers and encoders need.
#[derive(Debug)]
pub struct RequestFrame {
    /// API key.
    pub api_key: ApiKey,
    /// API version the body was decoded with.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// Client id from the header, for logs and group membership.
    pub client_id: Option<String>,
    /// The client's address as Kafka reports it (`/ip`); set by the connection.
    pub client_host: std::sync::Arc<str>,
    /// The listener (by index) the request came through; set by the connection.
    pub listener: usize,
    /// The connection it came on (unique for the process); set by the
    /// connection. Share sessions end with their connection.
    pub conn: u64,
    /// Who sent it, as Kafka's principal (`User:<name>`): the SASL user, the
    /// TLS client certificate's subject, or ANONYMOUS; set by the connection.
    pub principal: std::sync::Arc<str>,
    /// The body.
    pub body: Request,
}

impl RequestFrame {
    /// SaslHandshake or SaslAuthenticate: the connection's authenticator
    /// answers these, not the stateless handlers.
    pub fn is_sasl(&self) -> bool {
        matches!(
            self.api_key,
            ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        )
    }

    /// SaslHandshake, which begins a re-authentication.
    pub fn is_sasl_handshake(&self) -> bool {
        self.api_key == ApiKey::SaslHandshake
    }

    /// ApiVersions, which is served before authentication too.
    pub fn is_api_versions(&self) -> bool {
        self.api_key == ApiKey::ApiVersions
    }
}

/// Kafka's principal name for a client that did not authenticate.
pub const ANONYMOUS: &str = "ANONYMOUS";

/// Why a frame could not be turned into a [`RequestFrame`].
#[derive(Debug)]
pub enum DecodeError {
    /// Shorter than a request header's fixed part.
    TooShort,
    /// An API key we do not know or do not serve, or a version outside our range.
    Unsupported {
        /// Raw API key.
        api_key: i16,
        /// Raw API version.
        api_version: i16,
    },
    /// ApiVersions at a version newer than ours: answer v0 with UNSUPPORTED_VERSION.
    ApiVersionsTooNew {
        /// To echo.
        correlation_id: i32,
    },
    /// The header or body did not decode.
    Malformed {
        /// Raw API key.
        api_key: i16,
        /// Raw API version.
        api_version: i16,
        /// Decoder's message.
        reason: String,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooShort => write!(f, "frame shorter than a request header"),
            DecodeError::Unsupported {
                api_key,
                api_version,
            } => {
                write!(f, "unsupported api key {api_key} version {api_version}")
            }
            DecodeError::ApiVersionsTooNew { .. } => write!(f, "ApiVersions version too new"),
            DecodeError::Malformed {
                api_key,
                api_version,
                reason,
            } => {
                write!(
                    f,
                    "malformed request (api key {api_key} version {api_version}): {reason}"
                )
            }
        }
    }
}

fn decode_body<T: Decodable>(buf: &mut Bytes, version: i16) -> anyhow::Result<T> {
    T::decode(buf, version)
}

/// Decodes one request frame (the bytes after the 4-byte size).
pub fn decode_request(frame: Bytes) -> Result<RequestFrame, DecodeError> {
    // The decoder reserves arrays from wire counts before reading them: whatever
    // this frame could not fill is only mapped, never charged (see `alloc`).
    crate::alloc::decoding(frame.len(), || decode_frame(frame))
}

fn decode_frame(mut frame: Bytes) -> Result<RequestFrame, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort);
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let unsupported = DecodeError::Unsupported {
        api_key: raw_key,
        api_version,
    };
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::Unsupported {
        api_key: raw_key,
        api_version,
    })?;
    let Some((lo, hi)) = supported_range(api_key) else {
        return Err(unsupported);
    };
    if api_key == ApiKey::ApiVersions && api_version > hi {
        return Err(DecodeError::ApiVersionsTooNew { correlation_id });
    }
    if api_version < lo || api_version > hi {
        return Err(unsupported);
    }
    let malformed = |e: anyhow::Error| DecodeError::Malformed {
        api_key: raw_key,
        api_version,
        reason: e.to_string(),
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(api_version))
        .map_err(malformed)?;
    let v = api_version;
    let body = match api_key {
        ApiKey::ApiVersions => Request::ApiVersions(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::Metadata => Request::Metadata(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::Produce => Request::Produce(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::Fetch => Request::Fetch(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::ListOffsets => Request::ListOffsets(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::CreateTopics => {
            Request::CreateTopics(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DeleteTopics => {
            Request::DeleteTopics(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::InitProducerId => {
            Request::InitProducerId(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::FindCoordinator => {
            Request::FindCoordinator(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::JoinGroup => Request::JoinGroup(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::SyncGroup => Request::SyncGroup(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::Heartbeat => Request::Heartbeat(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::LeaveGroup => Request::LeaveGroup(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::OffsetCommit => {
            Request::OffsetCommit(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::OffsetFetch => Request::OffsetFetch(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::ListGroups => Request::ListGroups(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::DescribeGroups => {
            Request::DescribeGroups(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DeleteGroups => {
            Request::DeleteGroups(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::OffsetDelete => {
            Request::OffsetDelete(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DescribeConfigs => {
            Request::DescribeConfigs(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::AlterConfigs => {
            Request::AlterConfigs(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::IncrementalAlterConfigs => {
            Request::IncrementalAlterConfigs(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::CreatePartitions => {
            Request::CreatePartitions(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DeleteRecords => {
            Request::DeleteRecords(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DescribeCluster => {
            Request::DescribeCluster(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DescribeLogDirs => {
            Request::DescribeLogDirs(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::OffsetForLeaderEpoch => {
            Request::OffsetForLeaderEpoch(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DescribeTopicPartitions => {
            Request::DescribeTopicPartitions(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::ElectLeaders => {
            Request::ElectLeaders(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DescribeProducers => {
            Request::DescribeProducers(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::AddPartitionsToTxn => {
            Request::AddPartitionsToTxn(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::AddOffsetsToTxn => {
            Request::AddOffsetsToTxn(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::EndTxn => Request::EndTxn(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::TxnOffsetCommit => {
            Request::TxnOffsetCommit(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DescribeTransactions => {
            Request::DescribeTransactions(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::ListTransactions => {
            Request::ListTransactions(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DescribeUserScramCredentials => {
            Request::DescribeUserScramCredentials(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::AlterUserScramCredentials => {
            Request::AlterUserScramCredentials(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::CreateAcls => Request::CreateAcls(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::DescribeAcls => {
            Request::DescribeAcls(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DeleteAcls => Request::DeleteAcls(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::DescribeClientQuotas => {
            Request::DescribeClientQuotas(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::AlterClientQuotas => {
            Request::AlterClientQuotas(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::ConsumerGroupHeartbeat => {
            Request::ConsumerGroupHeartbeat(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::ConsumerGroupDescribe => {
            Request::ConsumerGroupDescribe(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::ShareGroupHeartbeat => {
            Request::ShareGroupHeartbeat(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::ShareGroupDescribe => {
            Request::ShareGroupDescribe(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::ShareFetch => Request::ShareFetch(decode_body(&mut frame, v).map_err(malformed)?),
        ApiKey::ShareAcknowledge => {
            Request::ShareAcknowledge(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DescribeShareGroupOffsets => {
            Request::DescribeShareGroupOffsets(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::AlterShareGroupOffsets => {
            Request::AlterShareGroupOffsets(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::DeleteShareGroupOffsets => {
            Request::DeleteShareGroupOffsets(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::SaslHandshake => {
            Request::SaslHandshake(decode_body(&mut frame, v).map_err(malformed)?)
        }
        ApiKey::SaslAuthenticate => {
            Request::SaslAuthenticate(decode_body(&mut frame, v).map_err(malformed)?)
        }
        _ => return Err(unsupported),
    };
    Ok(RequestFrame {
        api_key,
        api_version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        client_host: "".into(),
        principal: format!("User:{ANONYMOUS}").into(),
        listener: 0,
        conn: 0,
        body,
    })
}

/// One piece of a response on the wire.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Bytes in memory.
    Mem(Bytes),
    /// Record batches sent straight from a segment file.
    File(FileSlice),
}

/// A complete response: the 4-byte size prefix is part of the first chunk.
#[derive(Debug, Clone)]
pub struct ResponseFrame {
    /// Pieces in wire order.
    pub chunks: Vec<Chunk>,
    /// Set when the response could not be encoded (a handler bug, or a response
    /// over 2 GiB): the connection is closed with this reason instead.
    pub failed: Option<String>,
    /// The non-zero error codes the response carries, for the metrics.
    pub errors: ErrorTally,
    /// How long the client is throttled for (a quota): the connection reads
    /// nothing more for that long after sending this (Kafka's muting, KIP-219).
    pub throttle_ms: u64,
}

impl ResponseFrame {
    /// A response made of `chunks`.
    pub fn new(chunks: Vec<Chunk>) -> ResponseFrame {
        ResponseFrame {
            chunks,
            failed: None,
            errors: ErrorTally::default(),
            throttle_ms: 0,
        }
    }

    /// A response that could not be encoded; logged when the connection closes.
    pub fn failed(why: String) -> ResponseFrame {
        ResponseFrame {
            chunks: Vec::new(),
            failed: Some(why),
            errors: ErrorTally::default(),
            throttle_ms: 0,
        }
    }

    /// Total bytes on the wire, size prefix included.
    pub fn wire_len(&self) -> u64 {
        self.chunks
            .iter()
            .map(|c| match c {
                Chunk::Mem(b) => b.len() as u64,
                Chunk::File(f) => f.len,
            })
            .sum()
    }
}

/// Encodes `body` as the response to `req` (header version from the API and version).
pub fn encode_response<T: Encodable + ErrorCodes>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &T,
) -> ResponseFrame {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let ok = header
        .encode(&mut buf, api_key.response_header_version(api_version))
        .and_then(|_| body.encode(&mut buf, api_version));
    if let Err(e) = ok {
        // Only reachable if a handler set a field the version cannot carry: a bug,
        // answered by closing the connection rather than by a panic.
        return ResponseFrame::failed(format!(
            "cannot encode the {api_key:?} v{api_version} response: {e}"
        ));
    }
    let Ok(len) = i32::try_from(buf.len() - 4) else {
        return ResponseFrame::failed(format!("{api_key:?} response over 2 GiB"));
    };
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    let mut frame = ResponseFrame::new(vec![Chunk::Mem(buf.freeze())]);
    body.error_codes(&mut frame.errors);
    frame
}

/// Whether `s` matches Kafka's client software name/version pattern
/// `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
pub fn valid_client_software(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && edge(&b[0])
        && edge(&b[b.len() - 1])
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
}
