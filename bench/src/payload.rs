//! Events of a realistic size: about 230 bytes of data and 190 of metadata, like a server registration.

use chrono::Utc;
use eventstore::{Actor, ActorKind, EventData, Metadata};
use serde::Serialize;
use uuid::Uuid;

#[derive(Serialize)]
struct ServerRegistered<'a> {
    server_id: Uuid,
    name: String,
    url: String,
    transport: &'a str,
    tags: [&'a str; 2],
    description: &'a str,
}

/// The data and metadata of the `n`-th benchmark event, as JSON text.
pub(crate) fn texts(n: u64) -> (String, String) {
    let event = one(n);
    let metadata = serde_json::to_string(&event.metadata).unwrap_or_default();
    (event.data, metadata)
}

/// The columns of `count` benchmark rows for the plain-SQL baselines: ids (minted as the gateway mints
/// them), data and metadata as JSON text.
pub(crate) fn columns(count: u64) -> (Vec<Uuid>, Vec<String>, Vec<String>) {
    let mut columns = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..count {
        let (data, metadata) = texts(n);
        columns.0.push(EventData::deterministic_id(Uuid::now_v7(), 0));
        columns.1.push(data);
        columns.2.push(metadata);
    }
    columns
}

/// The `n`-th benchmark event.
pub(crate) fn one(n: u64) -> EventData {
    let data = ServerRegistered {
        server_id: Uuid::now_v7(),
        name: format!("server-{n}"),
        url: format!("https://mcp.example.com/servers/{n}/mcp"),
        transport: "streamable_http",
        tags: ["prod", "search"],
        description: "A benchmark server registration of typical size.",
    };
    let metadata =
        Metadata::new(Uuid::now_v7(), Actor { id: "apikey-bench".into(), kind: ActorKind::ApiKey }, Utc::now())
            .from_client(
                Some("203.0.113.7".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into())),
                Some("bench/1.0"),
            );
    EventData {
        // As the gateway mints them: time-ordered (see `EventData::deterministic_id`).
        event_id: EventData::deterministic_id(Uuid::now_v7(), 0),
        event_type: "ServerRegistered".into(),
        schema_version: 1,
        data: serde_json::to_string(&data).unwrap_or_default(),
        metadata,
    }
}

/// `count` benchmark events.
pub(crate) fn many(count: u64) -> Vec<EventData> {
    (0..count).map(one).collect()
}
