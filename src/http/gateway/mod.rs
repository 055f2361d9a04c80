//! The HTTP gateway (`--http-listen`): the Confluent REST Proxy v2 API, so
//! REST Proxy clients and scripts work unchanged, served from the broker's own
//! log, groups and ACLs. See docs/http.md.
//!
//! Every call is authenticated (`auth`), then judged by the same ACLs as a
//! Kafka request of the same effect. Handlers are thin: topics and produce in
//! `topics`, consumer instances' calls in `consumers`, their state (group
//! membership, positions, long-poll reads) in `instance`.

mod auth;
mod console;
mod consumers;
pub mod error;
mod instance;
mod iso8601;
mod json;
mod pulsar;
mod reader;
mod sse;
mod topics;
mod ws;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::listener::{Incoming, ListenSettings, TlsConfig};
use crate::auth::acl::{Operation, ResourceType};
use crate::auth::oauth::OAuthValidator;
use crate::broker::Broker;
use crate::quota::QuotaKind;
use error::RestError;

/// The client id HTTP callers are quota'd under (their user is their principal's).
pub const HTTP_CLIENT_ID: &str = "sluice-http";

/// The gateway's shared state.
pub struct Gateway {
    /// The broker it serves.
    broker: Arc<Broker>,
    /// Authenticates callers.
    auth: auth::Authenticator,
    /// REST consumer instances.
    instances: instance::Instances,
    /// Round-robin counter for records with neither key nor partition.
    next_partition: AtomicU32,
    /// The scheme of the listener (`https` with TLS), for `base_uri`.
    scheme: &'static str,
    /// What the console samples over time.
    console: console::Console,
    /// Turns true when the gateway stops: streams end, long polls answer.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Bound to a loopback address: only loopback host names are served
    /// (a DNS-rebound name pointing here is refused).
    loopback: bool,
}

/// The caller of one request, as authenticated.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Its Kafka principal (`User:name`).
    pub principal: String,
    /// Its address, for ACL host matching.
    pub host: String,
}

impl Gateway {
    /// Completes when the gateway stops.
    pub async fn stopped(&self) {
        let mut rx = self.stopping.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Records `bytes` of `kind` against the caller's client quota (as user
    /// `caller`, client id `sluice-http`): the throttle time in ms.
    fn quota_ms(&self, caller: &Caller, kind: QuotaKind, bytes: u64) -> u64 {
        let user = caller
            .principal
            .strip_prefix("User:")
            .unwrap_or(&caller.principal);
        let (ms, _) = self.broker.quotas.record(
            kind,
            user,
            HTTP_CLIENT_ID,
            bytes as f64,
            crate::clock::now_ms(),
        );
        if ms > 0 {
            crate::metrics::throttled(kind.key(), ms);
        }
        ms
    }

    /// Waits `ms` (a throttle), or until the gateway stops.
    async fn pause(&self, ms: u64) {
        if ms > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                _ = self.stopped() => {}
            }
        }
    }

    /// Records `bytes` against the caller's quota and waits out the throttle
    /// time, the HTTP form of Kafka's muted connection.
    async fn throttle(&self, caller: &Caller, kind: QuotaKind, bytes: u64) {
        self.pause(self.quota_ms(caller, kind, bytes)).await;
    }

    /// Whether `caller` may do `op` on `(t, name)`.
    fn may(&self, caller: &Caller, op: Operation, t: ResourceType, name: &str) -> bool {
        self.broker
            .acls
            .allowed(&caller.principal, &caller.host, op, t, name)
    }
}

/// The peer address of a gateway connection.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, Incoming>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Incoming>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Serves the gateway on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    oauth: Option<Arc<OAuthValidator>>,
    tls: Option<TlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let c = &broker.config;
    let settings = ListenSettings {
        connections_max: c.http_connections_max,
        idle: Duration::from_millis(c.http_idle_timeout_ms),
        tls: tls.clone(),
        name: "http",
    };
    let body_max = c.http_request_body_max_bytes;
    let gw = Arc::new(Gateway {
        auth: auth::Authenticator::new(&c.http_auth, oauth),
        instances: instance::Instances::new(c),
        next_partition: AtomicU32::new(0),
        scheme: if tls.is_some() { "https" } else { "http" },
        console: console::Console::default(),
        loopback: listener.local_addr().is_ok_and(|a| a.ip().is_loopback()),
        stopping: tokio::sync::watch::channel(false).0,
        broker,
    });
    let reaper = tokio::spawn(instance::reap(gw.clone()));
    let sampler = tokio::spawn(console::sample(gw.clone()));
    let routes = router(gw.clone(), body_max);
    // REST Proxy (JAX-RS) ignores a trailing slash; a path with one is
    // routed again without it.
    let again = routes.clone();
    let app = routes.fallback(move |req: Request| {
        let again = again.clone();
        async move {
            let path = req.uri().path();
            if path.len() > 1 && path.ends_with('/') {
                let mut parts = req.uri().clone().into_parts();
                let trimmed = match req.uri().query() {
                    Some(q) => format!("{}?{q}", path.trim_end_matches('/')),
                    None => path.trim_end_matches('/').to_string(),
                };
                if let Ok(pq) = trimmed.parse() {
                    parts.path_and_query = Some(pq);
                    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                        let (mut head, body) = req.into_parts();
                        head.uri = uri;
                        let req = Request::from_parts(head, body);
                        return match again.oneshot(req).await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        };
                    }
                }
            }
            RestError::not_found().into_response()
        }
    });
    let incoming = Incoming::new(listener, settings)?;
    // On stop: WebSocket and SSE sessions end and consumer instances close
    // (committing, leaving their groups, answering their long polls), so the
    // graceful shutdown has nothing endless to wait for.
    let closing = gw.clone();
    let shutdown = async move {
        shutdown.await;
        closing.stopping.send_replace(true);
        closing.instances.close_all(&closing).await;
    };
    let result = axum::serve(incoming, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown)
        .await;
    reaper.abort();
    sampler.abort();
    gw.instances.close_all(&gw).await;
    result
}

/// Every route, behind authentication and the body checks.
fn router(gw: Arc<Gateway>, body_max: usize) -> Router {
    let inst = "/consumers/{group}/instances/{instance}";
    Router::new()
        .route("/", get(root).post(root))
        .route("/ui", get(console::to_index))
        .route("/ui/", get(console::index))
        .route("/ui/app.css", get(console::css))
        .route("/ui/app.js", get(console::js))
        .route("/ui/api/overview", get(console::overview))
        .route("/ui/api/topics", get(console::topics))
        .route("/ui/api/topics/{topic}", get(console::topic))
        .route("/ui/api/groups", get(console::groups))
        .route("/ui/api/groups/{group}", get(console::group))
        .route("/brokers", get(topics::brokers))
        .route("/topics", get(topics::list))
        .route(
            "/topics/{topic}",
            get(topics::describe).post(topics::produce),
        )
        .route("/topics/{topic}/partitions", get(topics::partitions))
        .route(
            "/topics/{topic}/partitions/{partition}",
            get(topics::partition).post(topics::produce_to_partition),
        )
        .route(
            "/topics/{topic}/partitions/{partition}/offsets",
            get(topics::partition_offsets),
        )
        .route("/consumers/{group}", post(consumers::create))
        .route(inst, axum::routing::delete(consumers::delete))
        .route(
            &format!("{inst}/subscription"),
            get(consumers::subscription)
                .post(consumers::subscribe)
                .delete(consumers::unsubscribe),
        )
        .route(
            &format!("{inst}/assignments"),
            get(consumers::assignments).post(consumers::assign),
        )
        .route(&format!("{inst}/positions"), post(consumers::seek))
        .route(
            &format!("{inst}/positions/beginning"),
            post(consumers::seek_to_beginning),
        )
        .route(
            &format!("{inst}/positions/end"),
            post(consumers::seek_to_end),
        )
        .route(&format!("{inst}/records"), get(consumers::records))
        .route(
            &format!("{inst}/offsets"),
            get(consumers::committed).post(consumers::commit),
        )
        .route("/v1/topics/{topic}/sse", get(sse::tail))
        .route("/v1/ws/consume", get(ws::consume))
        .route("/v1/ws/produce", get(ws::produce))
        .route(
            "/ws/v2/consumer/{domain}/{tenant}/{namespace}/{topic}/{subscription}",
            get(ws::pulsar_consumer),
        )
        .route(
            "/ws/v2/reader/{domain}/{tenant}/{namespace}/{topic}",
            get(ws::pulsar_reader),
        )
        .route(
            "/ws/v2/producer/{domain}/{tenant}/{namespace}/{topic}",
            get(ws::pulsar_producer),
        )
        .method_not_allowed_fallback(|| async {
            RestError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                405,
                "HTTP 405 Method Not Allowed",
            )
        })
        .layer(axum::middleware::from_fn_with_state(gw.clone(), admit))
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(gw)
}

/// REST Proxy's root: an empty object (a liveness check for its clients);
/// a browser asking for a page is sent to the console.
async fn root(headers: axum::http::HeaderMap) -> Response {
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if html {
        return axum::response::Redirect::to("/ui/").into_response();
    }
    error::ok_json(&serde_json::json!({}))
}

/// Refuses what a browser sends on behalf of a page from another site: an
/// `Origin` other than the gateway's own or `--http-allowed-origins` (which
/// covers WebSocket upgrades, outside CORS), or `Sec-Fetch-Site:
/// cross-site` (requests a page may send without CORS). Clients that are not
/// browsers send neither.
fn same_site(gw: &Gateway, req: &Request, peer: IpAddr) -> Result<(), RestError> {
    let headers = req.headers();
    let refuse = |why: &str| {
        RestError::forbidden(format!(
            "{why}: cross-site requests are refused (allow origins with --http-allowed-origins)"
        ))
    };
    let c = &gw.broker.config;
    // The gateway's own origin as clients are told it (a reverse proxy's).
    let advertised = c.http_advertised_url.as_deref().map(|u| {
        let (scheme, rest) = u.split_once("://").unwrap_or(("http", u));
        format!("{scheme}://{}", rest.split('/').next().unwrap_or(""))
    });
    let listed = |origin: &str| {
        advertised
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(origin))
            || c.http_allowed_origins
                .split(',')
                .map(str::trim)
                .any(|a| a == "*" || (!a.is_empty() && a.eq_ignore_ascii_case(origin)))
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // DNS rebinding: a page's name pointed at a loopback address reaches the
    // gateway with its own name as Host (and as Origin).
    if (gw.loopback || peer.to_canonical().is_loopback()) && !host.is_empty() {
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let local = name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback() || !gw.loopback);
        if !local && !listed(&format!("http://{host}")) && !listed(&format!("https://{host}")) {
            return Err(refuse(&format!("host {host} reached from this machine")));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let own = origin
            .split_once("://")
            .is_some_and(|(_, rest)| !host.is_empty() && rest.eq_ignore_ascii_case(host));
        if !own && !listed(origin) {
            return Err(refuse(&format!("origin {origin}")));
        }
    } else if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        // Following a link to the console from elsewhere is fine: the page
        // loads, and its own calls then come from its own origin.
        let navigate = req.method() == Method::GET
            && headers
                .get("sec-fetch-mode")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"navigate"))
            && matches!(req.uri().path(), "/" | "/ui" | "/ui/");
        if !navigate {
            return Err(refuse("a cross-site request"));
        }
    }
    Ok(())
}

/// Authenticates the caller and refuses bodies no REST client sends: over
/// the size limit, or of a type a browser may send across sites without
/// asking (forms, plain text), which would let any web page act as the user.
async fn admit(State(gw): State<Arc<Gateway>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<Peer>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0 .0.ip());
    if let Err(e) = same_site(&gw, &req, peer) {
        return e.into_response();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() != "0");
        if has_body && !req.headers().contains_key(header::CONTENT_TYPE) {
            return RestError::unsupported_media_type(
                "HTTP 415 Unsupported Media Type: a body needs a Content-Type (application/vnd.kafka.v2+json or application/json)",
            )
            .into_response();
        }
        if let Some(ct) = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if matches!(
                essence.as_str(),
                "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
            ) {
                return RestError::unsupported_media_type(format!(
                    "HTTP 415 Unsupported Media Type: {essence} (send application/vnd.kafka.v2+json or application/json)"
                ))
                .into_response();
            }
        }
    }
    let body_max = gw.broker.config.http_request_body_max_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > body_max as u64) {
        return RestError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            413,
            format!("The request body is over {body_max} bytes (--http-request-body-max-bytes)."),
        )
        .into_response();
    }
    match gw.auth.principal(&gw.broker, req.headers(), peer).await {
        Ok(principal) => {
            req.extensions_mut().insert(Caller {
                principal,
                host: peer.to_string(),
            });
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The query's `name=value` pairs, percent-decoded (`+` is a space), in order.
fn query_params(query: &Option<String>) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match std::str::from_utf8(&b[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The last value of query parameter `name`.
fn query_param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_decode() {
        let q = Some("topic=a%2Fb&topic=c+d&x=%zz&empty".to_string());
        let p = query_params(&q);
        assert_eq!(
            p,
            vec![
                ("topic".into(), "a/b".into()),
                ("topic".into(), "c d".into()),
                ("x".into(), "%zz".into()),
                ("empty".into(), "".into()),
            ]
        );
        assert_eq!(query_param(&p, "x").as_deref(), Some("%zz"));
        assert_eq!(
            query_params(&Some("a=%4".into())),
            vec![("a".into(), "%4".into())]
        );
    }
}
