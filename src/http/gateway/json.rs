//! JSON bodies and the embedded formats of REST Proxy v2: `binary` (keys and
//! values as base64 strings) and `json` (keys and values are JSON documents,
//! stored as their compact text).

use axum::http::{header, HeaderMap};
use base64::Engine;
use serde_json::Value;

use super::error::RestError;

/// Content type of records bodies in the binary format.
pub const BINARY_V2: &str = "application/vnd.kafka.binary.v2+json";
/// Content type of records bodies in the JSON format.
pub const JSON_V2: &str = "application/vnd.kafka.json.v2+json";

/// How keys and values are embedded in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Base64 strings.
    Binary,
    /// JSON documents.
    Json,
}

impl Format {
    /// The format named in a consumer instance's `format` field.
    pub fn from_name(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "binary" => Some(Format::Binary),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// Its records content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Binary => BINARY_V2,
            Format::Json => JSON_V2,
        }
    }

    /// The embedded format a media type names, if any: `Some(Err(name))` for
    /// formats that need a Schema Registry.
    fn of_media_type(essence: &str) -> Option<Result<Format, String>> {
        let inner = essence
            .strip_prefix("application/vnd.kafka.")?
            .strip_suffix(".v2+json")?;
        Some(match inner {
            "binary" => Ok(Format::Binary),
            "json" => Ok(Format::Json),
            other => Err(other.to_string()),
        })
    }
}

/// The media type without parameters, lower case.
fn essence(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The embedded format of a produce request, from its Content-Type: binary
/// unless it names json (REST Proxy assumes binary when none is named).
pub fn produce_format(headers: &HeaderMap) -> Result<Format, RestError> {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(Format::Binary);
    };
    match Format::of_media_type(&essence(ct)) {
        Some(Ok(f)) => Ok(f),
        Some(Err(other)) => Err(RestError::unsupported_media_type(format!(
            "HTTP 415 Unsupported Media Type: the {other} format needs a Schema Registry, which Sluice does not have"
        ))),
        None => Ok(Format::Binary),
    }
}

/// Whether a records request's Accept header allows `format` (a generic or
/// absent Accept does; one naming only another embedded format does not).
pub fn accepts(headers: &HeaderMap, format: Format) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let mut named_other = false;
    for part in accept.split(',') {
        match Format::of_media_type(&essence(part)) {
            Some(Ok(f)) if f == format => return true,
            Some(_) => named_other = true,
            None => return true,
        }
    }
    !named_other
}

/// A request body as JSON: `None` when empty, 400 when malformed.
pub fn body(bytes: &[u8]) -> Result<Option<Value>, RestError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| RestError::bad_request(format!("Unexpected JSON body: {e}")))
}

/// A body that must be a JSON object (an empty body is an empty object).
pub fn object(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, RestError> {
    match body(bytes)? {
        None => Ok(serde_json::Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(RestError::bad_request("The body must be a JSON object.")),
    }
}

/// A key or value of a produce request in `format` (null is null).
pub fn embedded_bytes(
    format: Format,
    v: Option<&Value>,
    what: &str,
) -> Result<Option<Vec<u8>>, RestError> {
    match (format, v) {
        (_, None | Some(Value::Null)) => Ok(None),
        (Format::Binary, Some(Value::String(s))) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Some)
            .map_err(|_| {
                RestError::bad_request(format!(
                    "Bad Request: {what}={s} is not a valid base64 string."
                ))
            }),
        (Format::Binary, Some(other)) => Err(RestError::bad_request(format!(
            "Bad Request: {what}={other} is not a base64 string."
        ))),
        (Format::Json, Some(v)) => serde_json::to_vec(v).map(Some).map_err(|e| {
            RestError::unprocessable(42207, format!("Error serializing message. {e}"))
        }),
    }
}

/// Whether `b` is one JSON document (checked without building it).
pub fn is_json(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

/// Appends `s` as a JSON string.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            use std::fmt::Write as _;
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(esc);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// How a key or value is written for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embed {
    /// A base64 string.
    Binary,
    /// The JSON document itself (checked by the reader).
    Json,
    /// A UTF-8 string, invalid bytes replaced.
    Text,
}

/// Appends a key or value as `how` embeds it (`null` when absent).
pub fn push_embedded(out: &mut String, how: Embed, b: Option<&[u8]>) {
    let Some(b) = b else {
        out.push_str("null");
        return;
    };
    match how {
        Embed::Binary => {
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(b, out);
            out.push('"');
        }
        Embed::Text => push_str(out, &String::from_utf8_lossy(b)),
        Embed::Json => match std::str::from_utf8(b) {
            // Compact already: copied as it is (no line breaks, which would
            // split an SSE event).
            Ok(s) if !s.contains(['\n', '\r']) && is_json(b) => out.push_str(s.trim()),
            _ => match serde_json::from_slice::<Value>(b) {
                Ok(v) => out.push_str(&v.to_string()),
                Err(_) => out.push_str("null"),
            },
        },
    }
}

/// A required string field.
pub fn string_field<'a>(
    m: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, RestError> {
    m.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| RestError::unprocessable(422, format!("{name} may not be null")))
}

/// A required int32 field.
pub fn int_field(m: &serde_json::Map<String, Value>, name: &str) -> Result<i64, RestError> {
    m.get(name)
        .and_then(Value::as_i64)
        .ok_or_else(|| RestError::unprocessable(422, format!("{name} may not be null")))
}

/// The `(topic, partition)` list of a `{"partitions": [...]}` body.
pub fn partitions(m: &serde_json::Map<String, Value>) -> Result<Vec<(String, i32)>, RestError> {
    let Some(list) = m.get("partitions").and_then(Value::as_array) else {
        return Err(RestError::unprocessable(422, "partitions may not be null"));
    };
    list.iter()
        .map(|p| {
            let p = p
                .as_object()
                .ok_or_else(|| RestError::unprocessable(422, "a partition must be an object"))?;
            let partition = i32::try_from(int_field(p, "partition")?)
                .map_err(|_| RestError::unprocessable(422, "partition out of range"))?;
            Ok((string_field(p, "topic")?.to_string(), partition))
        })
        .collect()
}

/// `[{"topic": t, "partition": p}, ...]`.
pub fn partition_list<'a>(ps: impl Iterator<Item = &'a (String, i32)>) -> Value {
    Value::Array(
        ps.map(|(t, p)| serde_json::json!({"topic": t, "partition": p}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, v.parse().unwrap());
        h
    }

    #[test]
    fn produce_formats_follow_the_content_type() {
        let f = |ct| produce_format(&headers(header::CONTENT_TYPE, ct));
        assert_eq!(f(BINARY_V2), Ok(Format::Binary));
        assert_eq!(
            f("application/vnd.kafka.json.v2+json; charset=utf-8"),
            Ok(Format::Json)
        );
        assert_eq!(f("application/json"), Ok(Format::Binary));
        assert_eq!(f("application/vnd.kafka.v2+json"), Ok(Format::Binary));
        assert_eq!(
            f("application/vnd.kafka.avro.v2+json").unwrap_err().code,
            415
        );
        assert_eq!(produce_format(&HeaderMap::new()), Ok(Format::Binary));
    }

    #[test]
    fn accept_negotiation() {
        let a = |v| headers(header::ACCEPT, v);
        assert!(accepts(
            &a("application/vnd.kafka.json.v2+json"),
            Format::Json
        ));
        assert!(!accepts(
            &a("application/vnd.kafka.json.v2+json"),
            Format::Binary
        ));
        assert!(accepts(&a("*/*"), Format::Json));
        assert!(accepts(&a("application/vnd.kafka.v2+json"), Format::Binary));
        assert!(accepts(&HeaderMap::new(), Format::Json));
    }

    #[test]
    fn embedded_values_round_trip() {
        let v: Value = serde_json::from_str(r#"{"z":1,"a":[true,null]}"#).unwrap();
        let b = embedded_bytes(Format::Json, Some(&v), "value")
            .unwrap()
            .unwrap();
        // Keys keep the client's order.
        assert_eq!(b, br#"{"z":1,"a":[true,null]}"#);
        let mut out = String::new();
        push_embedded(&mut out, Embed::Json, Some(&b));
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), v);
        let s = Value::String("aGVsbG8=".into());
        assert_eq!(
            embedded_bytes(Format::Binary, Some(&s), "value").unwrap(),
            Some(b"hello".to_vec())
        );
        assert_eq!(
            embedded_bytes(Format::Binary, Some(&Value::from(3)), "value")
                .unwrap_err()
                .code,
            400
        );
        assert!(!is_json(b"not json"));
    }

    #[test]
    fn strings_and_embedded_values_are_written_as_serde_would() {
        for s in [
            "plain",
            "quote \" and \\ back",
            "line\nbreak\ttab",
            "\u{1}ctl",
            "é ☃",
        ] {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
        let mut out = String::new();
        push_embedded(&mut out, Embed::Binary, Some(b"hello"));
        push_embedded(&mut out, Embed::Json, Some(b"{\n \"a\": 1}"));
        push_embedded(&mut out, Embed::Json, Some(b"[1,2]"));
        push_embedded(&mut out, Embed::Text, Some(b"\xffx"));
        push_embedded(&mut out, Embed::Text, None);
        assert_eq!(out, "\"aGVsbG8=\"{\"a\":1}[1,2]\"\u{fffd}x\"null");
    }
}
