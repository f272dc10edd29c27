//! fowld's output lines: the reference's kinds and field names (§4.3), `kind` last as Python
//! writes it, plus our opt-in kinds.

use serde_json::{json, Map, Value};

use crate::forward::{Event, Status};
use crate::remember::RememberReport;

/// One output object with `kind` appended last.
pub fn line(kind: &str, fields: Value) -> Value {
    let mut map = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    map.insert("kind".into(), kind.into());
    Value::Object(map)
}

/// The JSON form of an engine event.
pub fn event(e: &Event) -> Value {
    match e {
        Event::Listening { name, port, path } => {
            let mut v = json!({"name": name, "listening_port": port});
            if let Some(p) = path {
                v["listening_path"] = p.as_str().into();
            }
            line("listening", v)
        }
        Event::ListeningFailed { name, reason } => {
            line("listening-failed", json!({"name": name, "reason": reason}))
        }
        Event::AwaitingConnect { name, port, path } => {
            let mut v = json!({"name": name, "local_port": port});
            if let Some(p) = path {
                v["local_path"] = p.as_str().into();
            }
            line("awaiting-connect", v)
        }
        Event::OutgoingConnection { name, id } => line(
            "outgoing-connection",
            json!({"service_name": name, "id": id}),
        ),
        Event::IncomingConnection { name, id } => line(
            "incoming-connection",
            json!({"service_name": name, "id": id}),
        ),
        Event::BytesIn { id, bytes } => line("bytes-in", json!({"id": id, "bytes": bytes})),
        Event::BytesOut { id, bytes } => line("bytes-out", json!({"id": id, "bytes": bytes})),
        Event::OutgoingDone { name, id } => {
            line("outgoing-done", json!({"service_name": name, "id": id}))
        }
        Event::OutgoingLost { name, id, reason } => line(
            "outgoing-lost",
            json!({"service_name": name, "id": id, "reason": reason}),
        ),
        Event::IncomingDone { id } => line("incoming-done", json!({"id": id})),
        Event::IncomingLost { id, reason } => {
            line("incoming-lost", json!({"id": id, "reason": reason}))
        }
        Event::Error(message) => error(message),
        Event::Status(status) => self::status(status),
    }
}

fn status(s: &Status) -> Value {
    match s {
        Status::Welcome {
            url,
            welcome,
            proxy,
        } => {
            let mut fields = json!({"url": url, "welcome": welcome});
            if let Some(proxy) = proxy {
                fields["proxy"] = proxy.as_str().into();
            }
            line("welcome", fields)
        }
        Status::CodeAllocated { code } => line("code-allocated", json!({"code": code})),
        Status::PeerConnected { verifier, versions } => line(
            "peer-connected",
            json!({"verifier": verifier, "versions": versions}),
        ),
        Status::DilationConnected {
            generation,
            path,
            peer,
            outage,
        } => {
            let mut fields = json!({
                "generation": generation,
                "path": path.to_string(),
                "peer_address": peer.to_string(),
            });
            if let Some(outage) = outage {
                fields["outage_seconds"] = json!(outage.as_secs_f64());
            }
            line("dilation-connected", fields)
        }
        Status::DilationLost { generation, reason } => {
            let mut fields = json!({
                "generation": generation,
                "reason": reason.kind(),
                "detail": reason.to_string(),
            });
            if let crate::dilation::LossReason::Silent(d) = reason {
                fields["silent_seconds"] = json!(d.as_secs_f64());
            }
            line("dilation-lost", fields)
        }
        Status::DilationReconnecting {
            generation,
            attempt,
        } => line(
            "dilation-reconnecting",
            json!({"generation": generation, "attempt": attempt}),
        ),
        Status::Pong {
            ping_id,
            time_of_flight,
        } => line(
            "pong",
            json!({"ping_id": ping_id, "time_of_flight": time_of_flight}),
        ),
        Status::Remember(report) => remember(report),
        Status::Rendezvous { name, generations } => line(
            "rendezvous",
            json!({"name": name, "generations": generations}),
        ),
        Status::Closed { mood } => closed(mood.as_str()),
    }
}

fn remember(report: &RememberReport) -> Value {
    let fields = match report {
        RememberReport::PeerAsked => json!({"state": "peer-asked"}),
        RememberReport::PeerCannot { name } => json!({"state": "peer-cannot", "name": name}),
        RememberReport::Stored { name, generation } => {
            json!({"state": "stored", "name": name, "generation": generation})
        }
        RememberReport::Remembered { name, generation } => {
            json!({"state": "remembered", "name": name, "generation": generation})
        }
        RememberReport::NotRemembered { name, reason } => {
            json!({"state": "not-remembered", "name": name, "reason": reason})
        }
    };
    line("remember", fields)
}

/// An `error` line with `message`.
pub fn error(message: &str) -> Value {
    line("error", json!({"message": message}))
}

/// A `closed` line with `result` (a mood: `happy`, `lonely`, `scary`, `errory` or `unwelcome`).
pub fn closed(result: &str) -> Value {
    line("closed", json!({"result": result}))
}
