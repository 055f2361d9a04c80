//! The web console: static HTML, CSS and JavaScript compiled into the binary
//! (no build step, no network), and the JSON it reads under `/ui/api/`.
//! The live tail uses the WebSocket consumer with credit, and the test
//! record the REST produce call.
//!
//! A sampler task keeps what the console shows over time: traffic rates,
//! and each group's total lag (a bounded history per group for the chart).
//! Lag is computed as `/metrics` computes it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::error::{ok_json, RestError};
use super::topics::visible_topic;
use super::{Caller, Gateway};
use crate::auth::acl::{Operation, ResourceType};
use crate::broker::is_internal;
use crate::clock::now_ms;
use crate::group::Assignment;

/// The page.
const INDEX: &str = include_str!("console/index.html");
/// Its style sheet.
const CSS: &str = include_str!("console/app.css");
/// Its script.
const JS: &str = include_str!("console/app.js");

/// No inline script or style, no other origin: the console's pages show
/// record contents, which must never run as code.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'";

/// How often the sampler runs.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// Samples of lag history kept per group (10 minutes).
const HISTORY_SAMPLES: usize = 300;
/// Groups with a lag history; past this, new groups get none.
const HISTORY_GROUPS_MAX: usize = 500;

/// What the sampler keeps.
#[derive(Default)]
pub struct Samples {
    /// Traffic totals at the last sample: records in, bytes in, bytes out.
    totals: Option<(Instant, [u64; 3])>,
    /// Rates over the last interval: records in, bytes in, bytes out per second.
    rates: [f64; 3],
    /// Total lag over time per group: (ms, lag).
    history: HashMap<String, VecDeque<(i64, i64)>>,
}

/// When the gateway started, for the uptime.
pub struct Console {
    /// The sampler's results.
    samples: Mutex<Samples>,
    /// When the gateway started.
    started: Instant,
}

impl Default for Console {
    fn default() -> Self {
        Console {
            samples: Mutex::new(Samples::default()),
            started: Instant::now(),
        }
    }
}

impl Console {
    fn lock(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Total lag per group (no blocking reads), on the topics `caller` may
/// describe (all of them for the sampler, whose history the caller sees
/// only for groups it may describe).
fn group_lags(gw: &Gateway, caller: Option<&Caller>) -> Vec<(String, i64)> {
    gw.broker
        .groups
        .metrics_view()
        .into_iter()
        .map(|g| {
            let lag = g
                .offsets
                .iter()
                .filter(|((t, _), _)| {
                    caller.is_none_or(|c| gw.may(c, Operation::Describe, ResourceType::Topic, t))
                })
                .filter_map(|((t, p), committed)| {
                    let part = gw.broker.topic(t)?.partition(*p)?.clone();
                    Some(crate::http::scrape::lag(part.high_watermark(), *committed))
                })
                .sum();
            (g.group_id, lag)
        })
        .collect()
}

/// Samples traffic and lag every [`SAMPLE_INTERVAL`].
pub async fn sample(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    loop {
        tick.tick().await;
        let mut totals = [0u64; 3];
        for t in gw.broker.topics() {
            let [records_in, bytes_in, _, bytes_out] = t.metrics.read();
            totals[0] += records_in;
            totals[1] += bytes_in;
            totals[2] += bytes_out;
        }
        let lags = group_lags(&gw, None);
        let now = Instant::now();
        let at = now_ms();
        let mut s = gw.console.lock();
        if let Some((then, before)) = s.totals {
            let secs = now.duration_since(then).as_secs_f64().max(0.001);
            for i in 0..3 {
                s.rates[i] = totals[i].saturating_sub(before[i]) as f64 / secs;
            }
        }
        s.totals = Some((now, totals));
        let live: std::collections::HashSet<&String> = lags.iter().map(|(g, _)| g).collect();
        s.history.retain(|g, _| live.contains(g));
        for (g, lag) in &lags {
            if !s.history.contains_key(g) && s.history.len() >= HISTORY_GROUPS_MAX {
                continue;
            }
            let h = s.history.entry(g.clone()).or_default();
            if h.len() >= HISTORY_SAMPLES {
                h.pop_front();
            }
            h.push_back((at, *lag));
        }
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /ui/`.
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/app.css`.
pub(super) async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

/// `GET /ui/app.js`.
pub(super) async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// `GET /ui`: to the page.
pub(super) async fn to_index() -> Response {
    axum::response::Redirect::permanent("/ui/").into_response()
}

/// 403 unless the caller may describe the cluster (the overview's scope).
fn may_describe_cluster(gw: &Gateway, caller: &Caller) -> Result<(), RestError> {
    if gw.may(
        caller,
        Operation::Describe,
        ResourceType::Cluster,
        crate::auth::acl::CLUSTER_NAME,
    ) {
        Ok(())
    } else {
        Err(RestError::forbidden(
            "Not authorized to describe the cluster.",
        ))
    }
}

/// Sizes of every partition of these topics (blocking).
async fn sizes(topics: Vec<Arc<crate::broker::Topic>>) -> HashMap<(String, i32), u64> {
    tokio::task::spawn_blocking(move || {
        let mut out = HashMap::new();
        for t in &topics {
            for (i, p) in t.partitions.iter().enumerate() {
                if let Ok(s) = p.stats_blocking() {
                    out.insert((t.name.clone(), i as i32), s.size_bytes);
                }
            }
        }
        out
    })
    .await
    .unwrap_or_default()
}

/// `GET /ui/api/overview`.
pub(super) async fn overview(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, RestError> {
    may_describe_cluster(&gw, &caller)?;
    let topics: Vec<_> = gw
        .broker
        .topics()
        .into_iter()
        .filter(|t| !is_internal(&t.name))
        .collect();
    let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
    let disk: u64 = sizes(topics.clone()).await.values().sum();
    let rates = gw.console.lock().rates;
    Ok(ok_json(&json!({
        "cluster_id": gw.broker.cluster_id,
        "node_id": gw.broker.config.node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": gw.console.started.elapsed().as_secs(),
        "topics": topics.len(),
        "partitions": partitions,
        "groups": gw.broker.groups.list().len(),
        "connections": crate::metrics::connections_open_now(),
        "disk_bytes": disk,
        "messages_in_per_sec": rates[0],
        "bytes_in_per_sec": rates[1],
        "bytes_out_per_sec": rates[2],
    })))
}

/// `GET /ui/api/topics`: the topics the caller may describe.
pub(super) async fn topics(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let mut topics: Vec<_> = gw
        .broker
        .topics()
        .into_iter()
        .filter(|t| {
            !is_internal(&t.name)
                && gw.may(&caller, Operation::Describe, ResourceType::Topic, &t.name)
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let sizes = sizes(topics.clone()).await;
    let list: Vec<Value> = topics
        .iter()
        .map(|t| {
            let size: u64 = (0..t.partitions.len() as i32).filter_map(|p| sizes.get(&(t.name.clone(), p))).sum();
            let messages: i64 = t.partitions.iter().map(|p| (p.high_watermark() - p.log_start_offset()).max(0)).sum();
            json!({"name": t.name, "partitions": t.partitions.len(), "size_bytes": size, "messages": messages})
        })
        .collect();
    ok_json(&Value::Array(list))
}

/// `GET /ui/api/topics/{topic}`.
pub(super) async fn topic(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, RestError> {
    let t = visible_topic(&gw, &caller, &name)?;
    let sizes = sizes(vec![t.clone()]).await;
    let partitions: Vec<Value> = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "partition": i,
                "log_start_offset": p.log_start_offset(),
                "high_watermark": p.high_watermark(),
                "size_bytes": sizes.get(&(name.clone(), i as i32)).copied().unwrap_or(0),
            })
        })
        .collect();
    let configs = if gw.may(
        &caller,
        Operation::DescribeConfigs,
        ResourceType::Topic,
        &name,
    ) {
        gw.broker.topic_configs(&t)
    } else {
        BTreeMap::new()
    };
    Ok(ok_json(
        &json!({"name": t.name, "partitions": partitions, "configs": configs}),
    ))
}

/// `GET /ui/api/groups`: the groups the caller may describe, with their
/// total lag on the topics the caller may describe.
pub(super) async fn groups(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let lags: HashMap<String, i64> = group_lags(&gw, Some(&caller)).into_iter().collect();
    let members: HashMap<String, usize> = gw
        .broker
        .groups
        .metrics_view()
        .into_iter()
        .map(|g| (g.group_id, g.members))
        .collect();
    let mut list: Vec<Value> = gw
        .broker
        .groups
        .list()
        .into_iter()
        .filter(|g| {
            gw.may(
                &caller,
                Operation::Describe,
                ResourceType::Group,
                &g.group_id,
            )
        })
        .map(|g| {
            json!({
                "group": g.group_id,
                "type": g.group_type,
                "state": g.state,
                "members": members.get(&g.group_id).copied().unwrap_or(0),
                "lag": lags.get(&g.group_id).copied().unwrap_or(0),
            })
        })
        .collect();
    list.sort_by(|a, b| a["group"].as_str().cmp(&b["group"].as_str()));
    ok_json(&Value::Array(list))
}

/// `GET /ui/api/groups/{group}`: members, assignment, lag per partition
/// (offsets and seconds, as `/metrics`), and total lag over time.
pub(super) async fn group(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, RestError> {
    let not_found = || {
        RestError::new(
            axum::http::StatusCode::NOT_FOUND,
            40405,
            "Consumer group id not found.",
        )
    };
    if !gw.may(&caller, Operation::Describe, ResourceType::Group, &id) {
        return Err(not_found());
    }
    let overview = gw
        .broker
        .groups
        .list()
        .into_iter()
        .find(|g| g.group_id == id)
        .ok_or_else(not_found)?;
    let part = |t: &str, p: i32| json!({"topic": t, "partition": p});
    // KIP-848 and share members carry assignments by topic id.
    let member = |member_id: &str, client_id: &str, host: &str, a: &Assignment| {
        let assignment: Vec<Value> = a
            .iter()
            .filter_map(|(tid, ps)| gw.broker.topic_by_id(tid).map(|t| (t, ps)))
            .flat_map(|(t, ps)| ps.iter().map(|p| part(&t.name, *p)).collect::<Vec<_>>())
            .collect();
        json!({"member_id": member_id, "client_id": client_id, "host": host, "assignment": assignment})
    };
    let members: Vec<Value> = if let Some(c) = gw.broker.groups.consumer_describe(&id) {
        c.members
            .iter()
            .map(|m| member(&m.member_id, &m.client_id, &m.client_host, &m.assignment))
            .collect()
    } else if let Some(s) = gw.broker.groups.share_describe(&id) {
        s.members
            .iter()
            .map(|m| member(&m.member_id, &m.client_id, &m.client_host, &m.assignment))
            .collect()
    } else {
        gw.broker
            .groups
            .describe(&id)
            .members
            .iter()
            .map(|m| {
                let assignment: Vec<Value> = crate::group::embedded::parse_assignment(&m.assignment)
                    .map(|a| {
                        a.partitions
                            .iter()
                            .flat_map(|(t, ps)| ps.iter().map(|p| part(t, *p)).collect::<Vec<_>>())
                            .collect()
                    })
                    .unwrap_or_default();
                json!({"member_id": m.member_id, "client_id": m.client_id, "host": m.client_host, "assignment": assignment})
            })
            .collect()
    };
    let offsets: Vec<((String, i32), i64)> = gw
        .broker
        .groups
        .metrics_view()
        .into_iter()
        .find(|g| g.group_id == id)
        .map(|g| g.offsets)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let all = offsets.len();
    let offsets: Vec<((String, i32), i64)> = offsets
        .into_iter()
        .filter(|((t, _), _)| gw.may(&caller, Operation::Describe, ResourceType::Topic, t))
        .collect();
    // The history sums every topic: shown only to who may see them all.
    let whole = offsets.len() == all;
    let b = gw.broker.clone();
    let lag: Vec<Value> = tokio::task::spawn_blocking(move || {
        let now = now_ms();
        offsets
            .into_iter()
            .filter_map(|((t, p), committed)| {
                let part = b.topic(&t)?.partition(p)?.clone();
                let end = part.high_watermark();
                let lag = crate::http::scrape::lag(end, committed);
                let secs = crate::http::scrape::lag_seconds(&part, committed, lag, now);
                Some(json!({"topic": t, "partition": p, "committed": committed, "end": end, "lag": lag, "lag_seconds": secs}))
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    let history: Vec<Value> = gw
        .console
        .lock()
        .history
        .get(&id)
        .filter(|_| whole)
        .map(|h| h.iter().map(|(t, l)| json!({"t": t, "lag": l})).collect())
        .unwrap_or_default();
    Ok(ok_json(&json!({
        "group": id,
        "type": overview.group_type,
        "state": overview.state,
        "members": members,
        "lag": lag,
        "history": history,
    })))
}
