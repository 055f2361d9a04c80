//! SASL on the wire, for what stock clients do not exercise: the legacy
//! framing after SaslHandshake v0, requests before authentication, an
//! unsupported mechanism, and the connection closing after a failure.

mod common;

use common::{Client, TestBroker};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice::auth::scram::{Credential, Mechanism};
use sluice::broker::credentials::Change;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn broker_with_user(dir: &std::path::Path) -> TestBroker {
    let b = TestBroker::start_sasl(dir).await;
    b.broker
        .credentials
        .apply(&[Change::Upsert {
            user: "alice".into(),
            mechanism: Mechanism::Sha256,
            credential: Credential::from_password(Mechanism::Sha256, "pw", b"salt", 4096),
        }])
        .unwrap();
    b
}

/// SaslHandshake `version` for `mechanism`.
async fn handshake(c: &mut Client, version: i16, mechanism: &str) -> SaslHandshakeResponse {
    c.call(
        ApiKey::SaslHandshake,
        version,
        &SaslHandshakeRequest::default().with_mechanism(s(mechanism)),
    )
    .await
}

/// SaslAuthenticate `version` with `token`.
async fn authenticate(
    c: &mut Client,
    version: i16,
    token: &'static [u8],
) -> SaslAuthenticateResponse {
    c.call(
        ApiKey::SaslAuthenticate,
        version,
        &SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from_static(token)),
    )
    .await
}

/// A token in the legacy framing: its size, then the bytes, no request header.
async fn send_raw_token(c: &mut Client, token: &[u8]) {
    let mut frame = (token.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(token);
    c.send_raw(&frame).await.unwrap();
}

/// Reads until the peer closes; true if it did within a few seconds.
async fn closes(c: &mut Client) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match c.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    });
    read.await.unwrap_or(false)
}

#[tokio::test]
async fn requests_before_authentication_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker_with_user(dir.path()).await;
    let mut c = b.client().await;
    // ApiVersions is served before authentication.
    let r: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await;
    assert_eq!(r.error_code, 0);
    c.send(ApiKey::Metadata, 9, &MetadataRequest::default())
        .await;
    assert!(
        closes(&mut c).await,
        "Metadata before authentication closes"
    );

    let mut c = b.client().await;
    let r = handshake(&mut c, 1, "GSSAPI").await;
    assert_eq!(r.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    let names: Vec<String> = r.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(names, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    assert!(closes(&mut c).await);
    b.stop().await;
}

#[tokio::test]
async fn plain_with_saslauthenticate_then_a_failure_closes() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker_with_user(dir.path()).await;
    let mut c = b.client().await;
    let r = handshake(&mut c, 1, "PLAIN").await;
    assert_eq!(r.error_code, 0);
    let r = authenticate(&mut c, 2, b"\0alice\0pw").await;
    assert_eq!(r.error_code, 0);
    let md: MetadataResponse = c
        .call(ApiKey::Metadata, 9, &MetadataRequest::default())
        .await;
    assert_eq!(md.brokers.len(), 1, "served once authenticated");

    let mut c = b.client().await;
    handshake(&mut c, 1, "PLAIN").await;
    let r = authenticate(&mut c, 1, b"\0alice\0wrong").await;
    assert_eq!(r.error_code, 58, "SASL_AUTHENTICATION_FAILED");
    assert_eq!(
        r.error_message.as_deref(),
        Some("Authentication failed: Invalid username or password")
    );
    assert!(
        closes(&mut c).await,
        "a failed authentication closes the connection"
    );
    b.stop().await;
}

#[tokio::test]
async fn legacy_framing_after_handshake_v0() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker_with_user(dir.path()).await;
    let mut c = b.client().await;
    let r = handshake(&mut c, 0, "PLAIN").await;
    assert_eq!(r.error_code, 0);
    send_raw_token(&mut c, b"\0alice\0pw").await;
    let reply = c.recv_frame().await.expect("an (empty) reply token");
    assert!(reply.is_empty());
    let md: MetadataResponse = c
        .call(ApiKey::Metadata, 9, &MetadataRequest::default())
        .await;
    assert_eq!(md.brokers.len(), 1);

    // A wrong password in the legacy framing: the connection just closes.
    let mut c = b.client().await;
    handshake(&mut c, 0, "PLAIN").await;
    send_raw_token(&mut c, b"\0alice\0nope").await;
    assert!(closes(&mut c).await);
    b.stop().await;
}
