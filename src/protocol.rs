//! The bridge to `kafka-protocol`: the supported-version table, request decoding
//! into a closed [`Request`] enum, response framing, and the zero-copy Fetch
//! response encoder.
//!
//! Invariant: `protocol` and `handlers` are the only modules that name
//! `kafka_protocol` types.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, DeleteGroupsRequest,
    DeleteTopicsRequest, DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest,
    HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, ProduceRequest, RequestHeader, ResponseHeader,
    SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use uuid::Uuid;

use crate::log::FileSlice;

/// Every API this broker answers, with the version range it has been tested on.
/// ApiVersions advertises exactly this table; anything else closes the connection.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
];

// The codec must cover every version we advertise.
const _: () = {
    let mut i = 0;
    while i < SUPPORTED.len() {
        assert!(SUPPORTED[i].1 <= SUPPORTED[i].2);
        i += 1;
    }
};

/// Kafka error codes used by this broker.
pub mod error {
    /// No error.
    pub const NONE: i16 = 0;
    /// The requested offset is not within the log.
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    /// A record batch failed its CRC or structural checks.
    pub const CORRUPT_MESSAGE: i16 = 2;
    /// The topic or partition does not exist.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// A batch is larger than max.message.bytes.
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    /// An offset commit's metadata is longer than offset.metadata.max.bytes.
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    /// The coordinator is not available (e.g. the group is being deleted).
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// This broker is not (or no longer) the coordinator.
    pub const NOT_COORDINATOR: i16 = 16;
    /// The member's generation is stale.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// The member's protocols do not match the group's.
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    /// The group id is empty or invalid.
    pub const INVALID_GROUP_ID: i16 = 24;
    /// The member id is not in the group.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// The session timeout is outside the broker's range.
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    /// The group is rebalancing: rejoin.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// The group still has members.
    pub const NON_EMPTY_GROUP: i16 = 68;
    /// The group does not exist.
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    /// JoinGroup v4+: rejoin with the member id given.
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    /// The group has group.max.size members.
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    /// Another member holds this group.instance.id.
    pub const FENCED_INSTANCE_ID: i16 = 82;
    /// The group still consumes this topic.
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    /// The topic name is not legal.
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    /// acks must be -1, 0 or 1.
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    /// Unsupported API version.
    pub const UNSUPPORTED_VERSION: i16 = 35;
    /// The topic exists already.
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    /// Partition count is not valid.
    pub const INVALID_PARTITIONS: i16 = 37;
    /// Replication factor is not valid.
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    /// Replica assignment is not valid.
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    /// A config is not valid.
    pub const INVALID_CONFIG: i16 = 40;
    /// The request is malformed or inconsistent.
    pub const INVALID_REQUEST: i16 = 42;
    /// An idempotent producer's sequence is out of order.
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    /// An idempotent producer's epoch is stale.
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    /// The fetch session id is not known.
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    /// The broker failed on storage.
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    /// A record in the batch is invalid.
    pub const INVALID_RECORD: i16 = 87;
    /// The topic id is not known.
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    /// An unexpected server error.
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
}

/// The supported version range of `key`, if supported at all.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

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
    pub client_host: String,
    /// The body.
    pub body: Request,
}

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
pub fn decode_request(mut frame: Bytes) -> Result<RequestFrame, DecodeError> {
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
        _ => return Err(unsupported),
    };
    Ok(RequestFrame {
        api_key,
        api_version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        client_host: String::new(),
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
}

impl ResponseFrame {
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
pub fn encode_response<T: Encodable>(
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
        // Only reachable if a handler set a field the version cannot carry: a bug.
        panic!("encoding {api_key:?} v{api_version} response: {e}");
    }
    let len = i32::try_from(buf.len() - 4).expect("response under 2 GiB");
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    ResponseFrame {
        chunks: vec![Chunk::Mem(buf.freeze())],
    }
}

/// The ApiVersions table as kafka-protocol structs.
pub fn api_version_list() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect()
}

/// The answer to an ApiVersions request newer than ours: v0 body, UNSUPPORTED_VERSION,
/// our list, so the client retries with a version we have.
pub fn api_versions_fallback(correlation_id: i32) -> ResponseFrame {
    let body = ApiVersionsResponse::default()
        .with_error_code(error::UNSUPPORTED_VERSION)
        .with_api_keys(api_version_list());
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
}

/// A Fetch response whose record bytes stay in segment files until sent.
#[derive(Debug, Default)]
pub struct FetchReply {
    /// Top-level error (v7+).
    pub error_code: i16,
    /// Fetch session id (v7+); 0 means no session.
    pub session_id: i32,
    /// Per-topic results.
    pub topics: Vec<FetchTopicReply>,
}

/// One topic of a [`FetchReply`].
#[derive(Debug)]
pub struct FetchTopicReply {
    /// Name (v4-v12).
    pub name: String,
    /// Topic id (v13+).
    pub id: Uuid,
    /// Per-partition results.
    pub partitions: Vec<FetchPartitionReply>,
}

/// One partition of a [`FetchReply`].
#[derive(Debug)]
pub struct FetchPartitionReply {
    /// Partition number.
    pub index: i32,
    /// Kafka error code.
    pub error_code: i16,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// Log start offset (v5+).
    pub log_start_offset: i64,
    /// Aborted transactions; `None` encodes as null (read_uncommitted).
    pub aborted: Option<Vec<(i64, i64)>>,
    /// Whole batches from the log; `None` sends an empty (not null) record set.
    pub records: Option<FileSlice>,
}

impl FetchReply {
    /// Bytes of record data in the reply.
    pub fn record_bytes(&self) -> u64 {
        self.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.as_ref())
            .map(|r| r.len)
            .sum()
    }
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_array_len(buf: &mut BytesMut, flexible: bool, n: usize) {
    if flexible {
        put_uvarint(buf, n as u64 + 1);
    } else {
        buf.put_i32(i32::try_from(n).expect("array under 2^31"));
    }
}

fn put_string(buf: &mut BytesMut, flexible: bool, s: &str) {
    if flexible {
        put_uvarint(buf, s.len() as u64 + 1);
    } else {
        buf.put_i16(i16::try_from(s.len()).expect("topic names are short"));
    }
    buf.put_slice(s.as_bytes());
}

/// Encodes a Fetch response (v4 to v18) around raw batch ranges: record bytes are
/// never copied into this buffer, only referenced as [`Chunk::File`].
pub fn encode_fetch(version: i16, correlation_id: i32, reply: FetchReply) -> ResponseFrame {
    let flexible = version >= 12;
    let mut chunks = Vec::new();
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0); // size, patched below
    buf.put_i32(correlation_id);
    if flexible {
        put_uvarint(&mut buf, 0); // response header tagged fields
    }
    buf.put_i32(0); // throttle_time_ms
    if version >= 7 {
        buf.put_i16(reply.error_code);
        buf.put_i32(reply.session_id);
    }
    put_array_len(&mut buf, flexible, reply.topics.len());
    for t in reply.topics {
        if version >= 13 {
            buf.put_slice(t.id.as_bytes());
        } else {
            put_string(&mut buf, flexible, &t.name);
        }
        put_array_len(&mut buf, flexible, t.partitions.len());
        for p in t.partitions {
            buf.put_i32(p.index);
            buf.put_i16(p.error_code);
            buf.put_i64(p.high_watermark);
            buf.put_i64(p.last_stable_offset);
            if version >= 5 {
                buf.put_i64(p.log_start_offset);
            }
            match &p.aborted {
                None if flexible => put_uvarint(&mut buf, 0),
                None => buf.put_i32(-1),
                Some(list) => {
                    put_array_len(&mut buf, flexible, list.len());
                    for (producer_id, first_offset) in list {
                        buf.put_i64(*producer_id);
                        buf.put_i64(*first_offset);
                        if flexible {
                            put_uvarint(&mut buf, 0);
                        }
                    }
                }
            }
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            let len = p.records.as_ref().map_or(0, |r| r.len);
            if flexible {
                put_uvarint(&mut buf, len + 1);
            } else {
                buf.put_i32(i32::try_from(len).expect("fetch below 2 GiB"));
            }
            if let Some(r) = p.records {
                if r.len > 0 {
                    chunks.push(Chunk::Mem(buf.split().freeze()));
                    chunks.push(Chunk::File(r));
                }
            }
            if flexible {
                put_uvarint(&mut buf, 0); // partition tagged fields
            }
        }
        if flexible {
            put_uvarint(&mut buf, 0); // topic tagged fields
        }
    }
    if flexible {
        put_uvarint(&mut buf, 0); // top-level tagged fields
    }
    chunks.push(Chunk::Mem(buf.freeze()));
    let mut frame = ResponseFrame { chunks };
    let size = i32::try_from(frame.wire_len() - 4).expect("fetch below 2 GiB");
    if let Some(Chunk::Mem(first)) = frame.chunks.first_mut() {
        let mut b = BytesMut::from(&first[..]);
        b[0..4].copy_from_slice(&size.to_be_bytes());
        *first = b.freeze();
    }
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
