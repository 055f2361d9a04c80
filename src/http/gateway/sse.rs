//! Server-Sent Events: a read-only tail of a topic for browsers
//! (`EventSource`) and `curl -N`. Each record is an event `record` whose data
//! is the record as the WebSocket consumer sends it, and whose id holds the
//! position of every partition so far (`0:15,1:7`), so a reconnecting
//! `EventSource` resumes after what it saw (`Last-Event-ID`).
//!
//! The log is read one frame's worth at a time into a small channel: a
//! client that reads slowly holds the reader back (TCP backpressure), never
//! more than the channel's records in memory.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tokio::sync::mpsc;

use super::error::RestError;
use super::instance;
use super::reader::Budget;
use super::ws::{
    may_consume, partitions_of, push_native_record, start_of, Encoding, Plan, READ_WAIT,
};
use super::{query_param, query_params, Caller, Gateway};

/// Frames queued between the reader and the client.
const QUEUED_FRAMES: usize = 16;
/// Most records read at a time.
const READ_RECORDS: usize = 500;

/// The events of one stream, as a `Stream` for axum.
pub(super) struct Events(mpsc::Receiver<Event>);

impl futures_core::Stream for Events {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| e.map(Ok))
    }
}

/// `GET /v1/topics/{topic}/sse?partition=&offset=&format=`.
pub(super) async fn tail(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    let q = query_params(&query);
    let encoding = Encoding::parse(query_param(&q, "format").or(Some("string".into())))?;
    may_consume(&gw, &caller, std::slice::from_ref(&topic), None)?;
    let (start, partition) = start_of(&q)?;
    let parts = partitions_of(&gw, &caller, std::slice::from_ref(&topic), partition)?;
    // Resume after the positions of the last event the client saw (only
    // partitions this stream reads; the id is echoed in every event).
    let mut seen: BTreeMap<i32, i64> = BTreeMap::new();
    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        for pair in last.split(',') {
            if let Some((p, o)) = pair.split_once(':') {
                if let (Ok(p), Ok(o)) = (p.trim().parse::<i32>(), o.trim().parse::<i64>()) {
                    if o >= 0 && parts.iter().any(|(_, q)| *q == p) {
                        seen.insert(p, o);
                    }
                }
            }
        }
    }
    let inst = Plan::Partitions { parts, start }
        .start(&gw, &caller)
        .await?;
    let to = seen
        .iter()
        .map(|(p, o)| ((topic.clone(), *p), o.saturating_add(1)))
        .collect();
    if let Err(e) = inst.seek(to) {
        instance::close(&gw, &inst).await;
        return Err(e);
    }
    let (tx, rx) = mpsc::channel(QUEUED_FRAMES);
    let frame_bytes = gw.broker.config.http_ws_frame_bytes_max;
    let ping = Duration::from_millis(gw.broker.config.http_ws_ping_interval_ms);
    tokio::spawn(async move {
        let budget = Budget {
            records: READ_RECORDS,
            bytes: frame_bytes,
        };
        'stream: loop {
            let read = tokio::select! {
                r = instance::read(&gw, &inst, READ_WAIT, budget, encoding.read_format()) => r,
                _ = tx.closed() => break,
                _ = gw.stopped() => break,
            };
            let records = match read {
                Ok(r) => r,
                Err(e) => {
                    let data = serde_json::json!({"error_code": e.code, "message": e.message});
                    let _ = tx
                        .send(Event::default().event("error").data(data.to_string()))
                        .await;
                    break;
                }
            };
            for ((t, p), r) in records {
                seen.insert(p, r.offset);
                let id: Vec<String> = seen.iter().map(|(p, o)| format!("{p}:{o}")).collect();
                let mut data = String::new();
                push_native_record(&mut data, encoding, &t, p, &r);
                let ev = Event::default().event("record").id(id.join(",")).data(data);
                if tx.send(ev).await.is_err() {
                    break 'stream;
                }
            }
        }
        instance::close(&gw, &inst).await;
    });
    Ok(Sse::new(Events(rx))
        .keep_alive(KeepAlive::new().interval(ping))
        .into_response())
}
