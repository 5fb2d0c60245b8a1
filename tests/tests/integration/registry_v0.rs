//! The official registry API (`/v0.1`) on every backend: releases by SemVer, statuses of suspended and
//! deleted servers, the query parameters, public reads and the private-registry setting. The documents'
//! shapes are checked against the official OpenAPI document and schema in `api/tests/openapi.rs`.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api_servers::{Api, Reply, start_on};
use crate::conformance::{Backend, on_every_backend};
use crate::support::DEADLINE;

const OFFICIAL: &str = "io.modelcontextprotocol.registry/official";

/// A request without credentials, as any client of a public registry sends it.
async fn anonymous(api: &Api, uri: &str) -> Reply {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 10 << 20).await.unwrap();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), raw }
}

/// `(name, version, official status, isLatest)` of each entry of a list.
fn entries(reply: &Reply) -> Vec<(String, String, String, bool)> {
    reply.body["servers"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {}", reply.raw))
        .iter()
        .map(|s| {
            let meta = &s["_meta"][OFFICIAL];
            (
                s["server"]["name"].as_str().unwrap().to_owned(),
                s["server"]["version"].as_str().unwrap().to_owned(),
                meta["status"].as_str().unwrap().to_owned(),
                meta["isLatest"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Polls `uri` until `done` holds of its answer.
async fn until(api: &Api, uri: &str, what: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    tests::eventually(DEADLINE, what, || async {
        let reply = anonymous(api, uri).await;
        done(&reply).then_some(reply)
    })
    .await
}

fn assert_official_error(reply: &Reply, status: StatusCode, says: &str) {
    assert_eq!(reply.status, status, "{}", reply.raw);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    let error = reply.body["error"].as_str().unwrap_or_else(|| panic!("the official shape: {}", reply.raw));
    assert!(error.contains(says), "{error:?} should say {says:?}");
}

async fn releases_sort_by_semver_and_suspended_and_deleted_servers_keep_their_entries(backend: Backend) {
    let started = start_on(backend).await;
    let api = &started;
    let register =
        |body: Value| async move { api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await };
    let weather = register(json!({
        "name": "io.example/weather", "version": "1.9.0", "description": "Forecasts", "transport": "streamable_http",
        "url": "https://93.184.216.34/mcp",
        "repository": { "url": "https://github.com/example/weather", "source": "github" },
        "packages": [{ "registryType": "pypi", "identifier": "example-weather", "version": "1.9.0",
                       "transport": { "type": "stdio" } }],
    }))
    .await;
    assert_eq!(weather.status, StatusCode::CREATED, "{}", weather.raw);
    let uri = format!("/api/v1/servers/{}", weather.body["id"].as_str().unwrap());
    let patch = |body: Value, revision: u64| {
        let uri = uri.clone();
        async move {
            let if_match = format!("\"{revision}\"");
            api.call(Method::PATCH, &uri, Some(&body.to_string()), &[("if-match", &if_match)]).await
        }
    };
    // 1.10.0 is newer than 1.9.0 by SemVer (not by text); an older or equal-precedence one is refused.
    let released = patch(json!({ "version": "1.10.0", "description": "Hourly forecasts" }), 0).await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.raw);
    let older = patch(json!({ "version": "1.9.5" }), 1).await;
    assert_eq!(older.status, StatusCode::CONFLICT, "{}", older.raw);
    assert_eq!(older.body["type"], "/problems/version-not-newer");
    let same = patch(json!({ "version": "1.10.0+build.2" }), 1).await;
    assert_eq!(same.status, StatusCode::CONFLICT, "build metadata has no precedence: {}", same.raw);
    let range = patch(json!({ "version": "^2.0.0" }), 1).await;
    assert_eq!((range.status, range.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("version")));
    let notes = register(json!({ "name": "io.example/notes", "version": "0.1.0", "description": "Notes",
                                 "transport": "sse", "url": "https://93.184.216.34/sse" }))
    .await;
    let gone = register(json!({ "name": "io.example/gone", "version": "3.0.0", "description": "Gone",
                                "transport": "sse", "url": "https://93.184.216.34/gone" }))
    .await;

    // Every release is an entry, in name order, each server's in release order; reads need no key.
    let all = until(api, "/v0.1/servers", "four releases", |r| entries(r).len() == 4).await;
    let active = |name: &str, version: &str, latest| (name.to_owned(), version.to_owned(), "active".to_owned(), latest);
    assert_eq!(
        entries(&all),
        [
            active("io.example/gone", "3.0.0", true),
            active("io.example/notes", "0.1.0", true),
            active("io.example/weather", "1.9.0", false),
            active("io.example/weather", "1.10.0", true),
        ]
    );
    // The release that lost `isLatest` changed then: a client synchronising with `updated_since` learns it.
    let (older, newer) = (&all.body["servers"][2]["_meta"][OFFICIAL], &all.body["servers"][3]["_meta"][OFFICIAL]);
    assert_eq!(older["updatedAt"], newer["publishedAt"]);
    let first = &all.body["servers"][2]["server"];
    assert_eq!(first["description"], "Forecasts", "an older release keeps what it was published with");
    assert_eq!(first["packages"][0]["identifier"], "example-weather");
    assert_eq!(first["repository"]["source"], "github");
    let versions = anonymous(api, "/v0.1/servers/io.example%2Fweather/versions").await;
    let listed: Vec<(String, String, String, bool)> = entries(&versions);
    assert_eq!(listed, [active("io.example/weather", "1.10.0", true), active("io.example/weather", "1.9.0", false)]);
    let latest = anonymous(api, "/v0.1/servers/io.example%2Fweather/versions/latest").await;
    assert_eq!(latest.body["server"]["version"], "1.10.0");
    assert_eq!(latest.body["server"]["description"], "Hourly forecasts");
    let exact = anonymous(api, "/v0.1/servers/io.example%2Fweather/versions/1.9.0").await;
    assert_eq!(exact.body["_meta"][OFFICIAL]["isLatest"], false);
    let filtered = anonymous(api, "/v0.1/servers?version=latest").await;
    assert_eq!(entries(&filtered).len(), 3);
    assert_eq!(entries(&anonymous(api, "/v0.1/servers?version=1.9.0").await).len(), 1);
    assert_eq!(entries(&anonymous(api, "/v0.1/servers?search=WEATH").await).len(), 2, "search is by name");

    // Pages of one: every release once, through the cursors.
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let uri = match &cursor {
            Some(c) => format!("/v0.1/servers?limit=1&cursor={c}"),
            None => "/v0.1/servers?limit=1".to_owned(),
        };
        let page = anonymous(api, &uri).await;
        assert_eq!(page.body["metadata"]["count"], 1, "{}", page.raw);
        seen.extend(entries(&page));
        match page.body["metadata"]["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, entries(&all));

    // Suspended: `deprecated`, with the reason and when; deleted: kept, `deleted`, listed on request.
    let before_changes = all.body["servers"][3]["_meta"][OFFICIAL]["updatedAt"].as_str().unwrap().to_owned();
    let suspend = json!({ "reason": "upstream maintenance" }).to_string();
    let path = format!("/api/v1/servers/{}/suspend", notes.body["id"].as_str().unwrap());
    assert_eq!(api.call(Method::POST, &path, Some(&suspend), &[]).await.status, StatusCode::OK);
    let path = format!("/api/v1/servers/{}?reason=retired", gone.body["id"].as_str().unwrap());
    assert_eq!(api.call(Method::DELETE, &path, None, &[]).await.status, StatusCode::OK);
    let listed = until(api, "/v0.1/servers", "the deleted server to leave the default list", |r| {
        entries(r).len() == 3 && entries(r)[0].2 == "deprecated"
    })
    .await;
    let notes_meta = &listed.body["servers"][0]["_meta"][OFFICIAL];
    assert_eq!(notes_meta["statusMessage"], "upstream maintenance");
    assert!(notes_meta["statusChangedAt"].is_string());
    assert_eq!(listed.body["servers"][0]["_meta"]["dev.mcp-gateway/server"]["status"], "suspended");
    let with_deleted = anonymous(api, "/v0.1/servers?include_deleted=true").await;
    let deleted = &with_deleted.body["servers"][0];
    assert_eq!(
        (deleted["server"]["name"].as_str(), deleted["_meta"][OFFICIAL]["status"].as_str()),
        (Some("io.example/gone"), Some("deleted"))
    );
    assert_eq!(deleted["_meta"][OFFICIAL]["statusMessage"], "retired");
    assert_official_error(
        &anonymous(api, "/v0.1/servers/io.example%2Fgone/versions").await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    let kept = anonymous(api, "/v0.1/servers/io.example%2Fgone/versions/latest?include_deleted=true").await;
    assert_eq!(kept.body["_meta"][OFFICIAL]["status"], "deleted", "{}", kept.raw);

    // A client synchronising with `updated_since` learns of the suspension and the deletion, and of
    // nothing older.
    let since = format!("/v0.1/servers?updated_since={}", before_changes.replace('+', "%2B"));
    let changed: Vec<(String, String)> =
        entries(&anonymous(api, &since).await).into_iter().map(|(name, _, status, _)| (name, status)).collect();
    assert_eq!(
        changed,
        [
            ("io.example/gone".to_owned(), "deleted".to_owned()),
            ("io.example/notes".to_owned(), "deprecated".to_owned())
        ]
    );

    // The freed name can be registered again; the new server is the one `latest` finds.
    let again = register(json!({ "name": "io.example/gone", "version": "1.0.0", "description": "Back",
                                 "transport": "sse", "url": "https://93.184.216.34/back" }))
    .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.raw);
    let back =
        until(api, "/v0.1/servers/io.example%2Fgone/versions/latest?include_deleted=true", "the new server", |r| {
            r.body["server"]["version"] == "1.0.0"
        })
        .await;
    assert_eq!(back.body["_meta"][OFFICIAL]["status"], "active");
    // One latest release per name: the deleted server's gave way to the new server's.
    let named = entries(&anonymous(api, "/v0.1/servers?include_deleted=true&search=gone").await);
    assert_eq!(
        named,
        [
            ("io.example/gone".to_owned(), "3.0.0".to_owned(), "deleted".to_owned(), false),
            ("io.example/gone".to_owned(), "1.0.0".to_owned(), "active".to_owned(), true),
        ]
    );

    // Bad parameters: 400 in the official shape, naming the parameter.
    for (uri, says) in [
        ("/v0.1/servers?limit=0", "limit"),
        ("/v0.1/servers?limit=-3", "limit"),
        ("/v0.1/servers?updated_since=yesterday", "updated_since"),
        ("/v0.1/servers?include_deleted=yes", "include_deleted"),
        ("/v0.1/servers?cursor=%21%21", "cursor"),
        ("/v0.1/servers?search=a&search=b", "search"),
        ("/v0.1/servers?search=%00", "search"),
    ] {
        assert_official_error(&anonymous(api, uri).await, StatusCode::BAD_REQUEST, says);
    }
    assert_eq!(entries(&anonymous(api, "/v0.1/servers?limit=1000").await).len(), 4, "more than 100 is cut to 100");
    started.gateway.stop();
}

async fn a_private_registry_answers_only_callers_allowed_to_read_servers(backend: Backend) {
    let api =
        crate::api_servers::start_with(backend, |config| config.registry_reads = api::RegistryReads::Authenticated)
            .await;
    let refused = anonymous(&api, "/v0.1/servers").await;
    assert_official_error(&refused, StatusCode::UNAUTHORIZED, "");
    assert!(refused.headers.contains_key(header::WWW_AUTHENTICATE), "a 401 names its scheme");
    let answered = api.call(Method::GET, "/v0.1/servers", None, &[]).await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.raw);
    api.gateway.stop();
}

/// A registration written before versions, namespaces and the description bound: it is read back as it
/// is, and exported with version `0.0.0` and its description cut to the official bound.
async fn servers_from_an_older_log_are_exported_within_the_official_bounds(backend: Backend) {
    use eventstore::{EventData, ExpectedRevision, StreamName};
    let api = start_on(backend).await;
    let id = uuid::Uuid::now_v7();
    let long = format!("{} and more.\\nA second paragraph.", "Reads the weather ".repeat(10));
    let registered = format!(
        r#"{{"server_id":"{id}","name":"legacy","description":"{long}","tags":[],"transport":"sse","endpoint":"https://example.com/mcp","upstream_auth":{{"mode":"none"}},"access":{{}},"owner":"user-1"}}"#
    );
    let event = EventData {
        event_id: uuid::Uuid::now_v7(),
        event_type: "ServerRegistered".into(),
        schema_version: 1,
        data: registered,
        metadata: crate::support::metadata(),
    };
    let stream = StreamName::from_parts("server", id).unwrap();
    api.gateway.state.store.append(&stream, ExpectedRevision::NoStream, vec![event]).await.unwrap();
    let listed = until(&api, "/v0.1/servers", "the older registration", |r| entries(r).len() == 1).await;
    let server = &listed.body["servers"][0]["server"];
    // The official pattern needs a namespace: a one-segment name is exported under `local/`.
    assert_eq!((server["name"].as_str(), server["version"].as_str()), (Some("local/legacy"), Some("0.0.0")));
    let found = anonymous(&api, "/v0.1/servers/local%2Flegacy/versions/latest").await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.raw);
    let description = server["description"].as_str().unwrap();
    assert_eq!(description.chars().count(), 100, "{description}");
    assert!(description.starts_with("Reads the weather") && description.ends_with('…'));
    // The REST API keeps the whole description.
    let read = api.call(Method::GET, &format!("/api/v1/servers/{id}"), None, &[]).await;
    assert!(read.body["description"].as_str().unwrap().contains("A second paragraph."), "{}", read.raw);
    api.gateway.stop();
}

on_every_backend!(
    servers_from_an_older_log_are_exported_within_the_official_bounds,
    releases_sort_by_semver_and_suspended_and_deleted_servers_keep_their_entries,
    a_private_registry_answers_only_callers_allowed_to_read_servers,
);
