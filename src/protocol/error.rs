//! Kafka error codes used by this broker.
/// No error.
pub const NONE: i16 = 0;
/// The requested offset is not within the log.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
/// A record batch failed its CRC or structural checks.
pub const CORRUPT_MESSAGE: i16 = 2;
/// The partition has no leader right now (here: its log is offline).
pub const LEADER_NOT_AVAILABLE: i16 = 5;
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
/// An unknown SCRAM mechanism (AlterUserScramCredentials; SASL later).
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// A SASL request out of order, or on a listener without SASL.
pub const ILLEGAL_SASL_STATE: i16 = 34;
/// SASL authentication failed (wrong password, unknown user).
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// The user credential to delete or describe does not exist.
pub const RESOURCE_NOT_FOUND: i16 = 91;
/// A user appears twice in one request.
pub const DUPLICATE_RESOURCE: i16 = 92;
/// A credential Kafka refuses (empty name, too few or many iterations).
pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
/// A Produce request older than v7 carries zstd, which only v7+ may.
pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
/// The topic id is not known.
pub const UNKNOWN_TOPIC_ID: i16 = 100;
/// An unexpected server error.
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
/// An acks=all write needs more in-sync replicas than the partition has.
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
/// The leader epoch in the request is newer than the broker's.
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
/// ElectLeaders: the partition already has its preferred leader.
pub const ELECTION_NOT_NEEDED: i16 = 84;
/// DescribeCluster: this endpoint does not serve that endpoint type.
pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;
/// The producer has an open transaction and sent a batch outside it, or the
/// transaction request does not fit the transaction's state.
pub const INVALID_TXN_STATE: i16 = 48;
/// The producer id is not the one the transactional id holds.
pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
/// `transaction.timeout.ms` is above the broker's maximum.
pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
/// A previous transaction of this transactional id is still completing: retry.
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
/// The transactional id is not authorized (unused until ACLs).
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
/// OffsetFetch with require_stable: a transactional offset commit is pending.
pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
/// A newer producer with the same transactional id exists (newer API versions;
/// older ones get INVALID_PRODUCER_EPOCH).
pub const PRODUCER_FENCED: i16 = 90;
/// DescribeTransactions: the transactional id is not known.
pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
/// The coordinator is loading its state: retry.
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// The partition was not tried because another in the request failed.
pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
/// A record's timestamp is outside the topic's allowed range around the broker's clock.
pub const INVALID_TIMESTAMP: i16 = 32;
/// The principal may not do this to the topic.
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
/// The principal may not do this to the group.
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
/// The principal may not do this to the cluster.
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
/// No authorizer is configured (the ACL APIs).
pub const SECURITY_DISABLED: i16 = 54;
/// KIP-848: the member's epoch is not one the group accepts; rejoin.
pub const FENCED_MEMBER_EPOCH: i16 = 110;
/// KIP-848: a live member still holds the static member's instance id.
pub const UNRELEASED_INSTANCE_ID: i16 = 111;
/// KIP-848: the requested server assignor does not exist.
pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
/// KIP-848: an offset commit or fetch at an epoch other than the member's.
pub const STALE_MEMBER_EPOCH: i16 = 113;
/// KIP-848: the subscribed regular expression does not compile.
pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
/// A share acknowledgement of a record the member does not hold (KIP-932).
pub const INVALID_RECORD_STATE: i16 = 121;
/// The share session named does not exist (KIP-932).
pub const SHARE_SESSION_NOT_FOUND: i16 = 122;
/// The share session epoch is not the expected one (KIP-932).
pub const INVALID_SHARE_SESSION_EPOCH: i16 = 123;
/// The broker holds `group.share.max.share.sessions` share sessions (KIP-932).
pub const SHARE_SESSION_LIMIT_REACHED: i16 = 133;
