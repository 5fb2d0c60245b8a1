//! The REST API over the registry, through the binary's router, on every backend: PostgreSQL and the
//! embedded SQLite store (and NATS where the test is about what leaves the process).

use api::{Gateway, GatewayConfig, router};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use commands::servers::CommandContext;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use crate::conformance::{Backend, on_every_backend};
use crate::support::{DEADLINE, metadata};

pub(crate) const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub(crate) struct Api {
    pub(crate) router: Router,
    pub(crate) key: String,
    pub(crate) gateway: Gateway,
    pub(crate) db: Option<tests::TestDatabase>,
    /// The embedded store's directory, when the gateway runs on SQLite.
    pub(crate) _dir: Option<tempfile::TempDir>,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: Value,
    pub(crate) raw: String,
}

/// The configuration of a test gateway on `database_url`.
pub(crate) fn config(database_url: &str, nats_url: Option<String>) -> GatewayConfig {
    GatewayConfig {
        database_url: database_url.to_owned(),
        nats_url,
        listen: "127.0.0.1:0".parse().unwrap(),
        sealing_key_current: "k1".into(),
        sealing_keys: vec![("k1".into(), K1.into())],
        upstream_allowlist: vec!["mcp.internal".into()],
        max_connections: 8,
        audit_signing_keys: vec![("a1".into(), K1.into())],
        public_url: None,
        idps: vec![],
        authz_max_lag: std::time::Duration::from_secs(5),
        registry_reads: api::RegistryReads::Public,
        oauth_clients: Vec::new(),
        call_journal: Some(std::env::temp_dir().join(format!("mgw-calls-{}", uuid::Uuid::now_v7()))),
        health_check_interval: None,
        proxy_limits: api::ProxyLimits::default(),
        rate_limits: {
            // Tests drive one principal far faster than any budget; `rate_limits` tests the limits.
            let mut limits = api::RateLimitConfig::default();
            limits.set("rest.per_principal=off").unwrap();
            limits.set("mcp.per_principal=off").unwrap();
            limits
        },
        cors_origins: Vec::new(),
        readiness: api::ReadinessConfig::default(),
        rotate_signing_keys: true,
        break_glass: None,
        alerting: api::alerting::AlertingConfig::default(),
        shutdown_drain: std::time::Duration::ZERO,
        shutdown_timeout: std::time::Duration::from_secs(30),
        snapshots: api::SnapshotConfig::default(),
        analytics: true,
    }
}

/// A second gateway on `first`'s database (its own pools and NATS connection), with `first`'s owner key.
pub(crate) async fn another_instance(first: &Api, config: GatewayConfig) -> Api {
    let gateway = Gateway::start(&config, None).await.unwrap();
    Api { router: router(gateway.state.clone()), key: first.key.clone(), gateway, db: None, _dir: None }
}

pub(crate) async fn start(nats_url: Option<String>) -> Api {
    let db = tests::PostgresServer::shared().unwrap().create_database().await.unwrap();
    let gateway = Gateway::start(&config(&db.url, nats_url), None).await.unwrap();
    ready(gateway, Some(db), None).await
}

/// A gateway on `backend` with a bootstrapped owner, ready.
pub(crate) async fn start_on(backend: Backend) -> Api {
    start_with(backend, |_| {}).await
}

/// [`start_on`], with the configuration changed by `adjust`.
pub(crate) async fn start_with(backend: Backend, adjust: impl FnOnce(&mut GatewayConfig)) -> Api {
    match backend {
        Backend::Postgres => {
            let db = tests::PostgresServer::shared().unwrap().create_database().await.unwrap();
            let mut config = config(&db.url, None);
            adjust(&mut config);
            ready(Gateway::start(&config, None).await.unwrap(), Some(db), None).await
        }
        Backend::Sqlite => {
            let dir = tempfile::Builder::new().prefix("mgw-embedded-").tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("events.db").display());
            let mut config = config(&url, None);
            adjust(&mut config);
            let gateway = Gateway::start(&config, None).await.unwrap();
            ready(gateway, None, Some(dir)).await
        }
    }
}

async fn ready(gateway: Gateway, db: Option<tests::TestDatabase>, dir: Option<tempfile::TempDir>) -> Api {
    let context = CommandContext { command_id: Uuid::now_v7(), metadata: metadata() };
    let owner = commands::identity::bootstrap(&*gateway.state.store, "owner", &context).await.unwrap();
    let key = owner.api_key.expose().to_owned();
    let api = Api { router: router(gateway.state.clone()), key, gateway, db, _dir: dir };
    // Ready once the authorization model knows the owner's key.
    tests::eventually(DEADLINE, "the gateway to know the owner", || async {
        (api.call(Method::GET, "/api/v1/servers", None, &[]).await.status == StatusCode::OK).then_some(())
    })
    .await;
    api
}

impl Api {
    /// A new service principal holding `developer`: its API key and id.
    pub(crate) async fn developer(&self) -> (String, String) {
        let user = serde_json::json!({ "display_name": "dev", "kind": "service" }).to_string();
        let created = self.call(Method::POST, "/api/v1/users", Some(&user), &[]).await;
        let principal = created.body["id"].as_str().unwrap().to_owned();
        let grant = serde_json::json!({ "role": "developer", "reason": "test" }).to_string();
        self.call(Method::POST, &format!("/api/v1/users/{principal}/roles"), Some(&grant), &[]).await;
        let key = self.call(Method::POST, &format!("/api/v1/users/{principal}/api-keys"), Some("{}"), &[]).await;
        (key.body["key"].as_str().unwrap().to_owned(), principal)
    }

    /// The events of `stream`, oldest first (at most 10,000).
    pub(crate) async fn events_of(&self, stream: &eventstore::StreamName) -> Vec<eventstore::RecordedEvent> {
        let (forwards, start) = (eventstore::Direction::Forwards, eventstore::StreamCursor::Start);
        self.gateway.state.store.read_stream(stream, forwards, start, 10_000).await.unwrap()
    }

    pub(crate) async fn call(&self, method: Method, uri: &str, body: Option<&str>, extra: &[(&str, &str)]) -> Reply {
        self.call_as(&self.key, method, uri, body, extra).await
    }

    /// A request authenticated with `key`.
    pub(crate) async fn call_as(
        &self,
        key: &str,
        method: Method,
        uri: &str,
        body: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut request =
            Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, format!("Bearer {key}"));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let request = request.body(body.map(|b| Body::from(b.to_owned())).unwrap_or_else(Body::empty)).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = axum::body::to_bytes(response.into_body(), 10 << 20).await.unwrap();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, body, raw }
    }

    async fn register(&self, body: Value) -> Reply {
        self.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await
    }

    /// Server events in the store.
    async fn events(&self) -> i64 {
        self.event_count("server-%").await
    }

    /// Moves the expiry of authorization code `code` `seconds` into the past, as time passing would.
    pub(crate) async fn age_code(&self, code: &str, seconds: i64) {
        self.age("oauth_codes", "expires_at", "code_hash", code, seconds).await;
    }

    /// Moves the rotation of refresh token `token` `seconds` into the past (past the grace window).
    pub(crate) async fn age_refresh_rotation(&self, token: &str, seconds: i64) {
        self.age("oauth_refresh_tokens", "rotated_at", "token_hash", token, seconds).await;
    }

    /// Moves the time when the grant behind refresh token `token` asks its IdP again into the past, as
    /// the IdP's own token lifetime passing would.
    pub(crate) async fn age_renewal(&self, token: &str) {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(token.as_bytes()).to_vec();
        let changed = match &self.gateway.state.tables {
            api::tables::Tables::Postgres(pool) => sqlx::query(
                "UPDATE api.oauth_refresh_tokens SET data = jsonb_set(data, '{renewal,expires_at}', '\"2000-01-01T00:00:00Z\"')
                  WHERE token_hash = $1 AND data ? 'renewal'",
            )
            .bind(digest)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected(),
            api::tables::Tables::Sqlite(pool) => sqlx::query(
                "UPDATE api_oauth_refresh_tokens SET data = json_set(data, '$.renewal.expires_at', '2000-01-01T00:00:00Z')
                  WHERE token_hash = ? AND json_extract(data, '$.renewal') IS NOT NULL",
            )
            .bind(digest)
            .execute(pool)
            .await
            .unwrap()
            .rows_affected(),
        };
        assert_eq!(changed, 1, "a grant that keeps its IdP's refresh token");
    }

    /// Moves `column` of the row of OAuth table `table` whose `key` is the digest of `secret` `seconds`
    /// into the past.
    async fn age(&self, table: &str, column: &str, key: &str, secret: &str, seconds: i64) {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(secret.as_bytes()).to_vec();
        let changed = match &self.gateway.state.tables {
            api::tables::Tables::Postgres(pool) => {
                let sql =
                    format!("UPDATE api.{table} SET {column} = {column} - make_interval(secs => $2) WHERE {key} = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(digest).bind(seconds as f64).execute(pool).await.unwrap()
            }
            .rows_affected(),
            api::tables::Tables::Sqlite(pool) => {
                let sql = format!("UPDATE api_{table} SET {column} = {column} - ? WHERE {key} = ?");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(seconds * 1000).bind(digest).execute(pool).await.unwrap()
            }
            .rows_affected(),
        };
        assert_eq!(changed, 1, "the row of {table}");
    }

    /// The URL of the store this gateway runs on.
    pub(crate) fn database_url(&self) -> String {
        match (&self.db, &self._dir) {
            (Some(db), _) => db.url.clone(),
            (None, Some(dir)) => format!("sqlite://{}", dir.path().join("events.db").display()),
            (None, None) => unreachable!("a test gateway has a database"),
        }
    }

    /// This gateway stopped, and another started on its database with `config` (the embedded store's
    /// lock is taken again once the stopped one let it go): the same owner key.
    pub(crate) async fn restarted(self, config: GatewayConfig) -> Api {
        let Api { key, gateway, db, _dir, .. } = self;
        gateway.stop();
        let gateway = tests::eventually_ok(DEADLINE, || Gateway::start(&config, None)).await.unwrap();
        Api { router: router(gateway.state.clone()), key, gateway, db, _dir }
    }

    /// Events in the store whose stream matches the `LIKE` pattern `streams`, counted in the table
    /// (a read of `$all` may be held back by another test's transaction in the shared cluster).
    pub(crate) async fn event_count(&self, streams: &str) -> i64 {
        match &self.gateway.state.tables {
            api::tables::Tables::Postgres(pool) => {
                sqlx::query_scalar("SELECT count(*) FROM es.events WHERE stream_id LIKE $1")
                    .bind(streams)
                    .fetch_one(pool)
                    .await
            }
            api::tables::Tables::Sqlite(pool) => {
                sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id LIKE ?")
                    .bind(streams)
                    .fetch_one(pool)
                    .await
            }
        }
        .unwrap()
    }
}

/// A new principal holding `role`, with its own API key, as the identity step will issue them; waits until
/// the gateway knows the key.
async fn principal_key(api: &Api, role: domain::Role) -> String {
    use domain::identity::{ApiKeyIssued, IdentityEvent, PrincipalCreated, PrincipalKind};
    use eventstore::{EventData, ExpectedRevision, StreamName};
    let (principal, key_id) = (Uuid::now_v7(), Uuid::now_v7());
    let (key, sha256) = commands::identity::new_api_key();
    let events = [
        (
            "principal",
            principal,
            IdentityEvent::PrincipalCreated(PrincipalCreated {
                principal_id: principal,
                kind: PrincipalKind::User,
                display_name: format!("{role:?}"),
                roles: vec![role],
            }),
        ),
        (
            "apikey",
            key_id,
            IdentityEvent::ApiKeyIssued(ApiKeyIssued {
                key_id,
                principal_id: principal,
                prefix: "mgw_".into(),
                sha256,
                name: None,
                expires_at: None,
                scopes: vec![],
            }),
        ),
    ];
    for (category, id, event) in events {
        let data = EventData {
            event_id: Uuid::now_v7(),
            event_type: event.event_type().into(),
            schema_version: 1,
            data: event.to_json().unwrap(),
            metadata: metadata(),
        };
        api.gateway
            .state
            .store
            .append(&StreamName::from_parts(category, id).unwrap(), ExpectedRevision::NoStream, vec![data])
            .await
            .unwrap();
    }
    let key = key.expose().to_owned();
    tests::eventually(DEADLINE, "the new key to be known", || async {
        let model = api.gateway.state.authz.read().unwrap();
        model.by_api_key_digest(&commands::identity::api_key_digest(&key), chrono::Utc::now()).map(|_| ())
    })
    .await;
    key
}

/// A registration; a name without a namespace gets `io.example/`.
pub(crate) fn server(name: &str) -> Value {
    let name = if name.contains('/') { name.to_owned() } else { format!("io.example/{name}") };
    json!({
        "name": name,
        "title": "Weather",
        "description": "Forecasts for any city",
        "tags": ["weather", "public"],
        "transport": "streamable_http",
        "url": "https://93.184.216.34/mcp",
    })
}

fn assert_problem(reply: &Reply, status: StatusCode, kind: &str) {
    assert_eq!(reply.status, status, "{}", reply.raw);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/problem+json", "{}", reply.raw);
    assert_eq!(reply.body["type"], format!("/problems/{kind}"), "{}", reply.raw);
}

async fn add_server_then_read_it_list_it_and_export_it(backend: Backend) {
    let api = start_on(backend).await;
    let created = api.register(server("io.example/weather")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.headers[header::LOCATION], format!("/api/v1/servers/{id}"));
    assert_eq!(created.headers[header::ETAG], "\"0\"");
    let position = created.body["position"].as_str().unwrap();

    let read = api.call(Method::GET, &format!("/api/v1/servers/{id}?min_position={position}"), None, &[]).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.raw);
    assert_eq!(read.body["name"], "io.example/weather");
    assert_eq!(read.body["status"], "active");
    assert_eq!(read.body["auth_mode"], "none");
    assert_eq!(read.headers[header::ETAG], "\"0\"");

    api.register(server("other")).await;
    let created = api
        .register(json!({"name": "io.example/tagged", "description": "d", "transport": "sse", "url": "https://93.184.216.34/sse", "tags": ["rare"]}))
        .await;
    let position = created.body["position"].as_str().unwrap();
    let tagged = api.call(Method::GET, &format!("/api/v1/servers?tag=rare&min_position={position}"), None, &[]).await;
    let names: Vec<&str> =
        tagged.body["servers"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["io.example/tagged"]);
    let searched = api.call(Method::GET, "/api/v1/servers?q=TAGG", None, &[]).await;
    assert_eq!(searched.body["servers"].as_array().unwrap().len(), 1, "case-insensitive text search");
    let searched = api.call(Method::GET, "/api/v1/servers?q=forecasts", None, &[]).await;
    assert_eq!(searched.body["servers"].as_array().unwrap().len(), 2, "descriptions are searched too");

    // Cursor pagination visits every server once, in name order.
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let uri = match &cursor {
            Some(c) => format!("/api/v1/servers?limit=1&cursor={c}"),
            None => "/api/v1/servers?limit=1".to_owned(),
        };
        let page = api.call(Method::GET, &uri, None, &[]).await;
        seen.extend(page.body["servers"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["io.example/other", "io.example/tagged", "io.example/weather"]);

    let exported = api.call(Method::GET, "/v0.1/servers/io.example%2Fweather/versions/latest", None, &[]).await;
    assert_eq!(exported.status, StatusCode::OK, "{}", exported.raw);
    assert_eq!(exported.body["server"]["name"], "io.example/weather");
    let remote = exported.body["server"]["remotes"][0]["url"].as_str().unwrap();
    assert!(remote.ends_with(&format!("/servers/{id}/mcp")), "clients go through the gateway: {remote}");
    let listed = api.call(Method::GET, "/v0.1/servers?limit=2", None, &[]).await;
    assert_eq!(listed.body["metadata"]["count"], 2);
    assert!(listed.body["metadata"]["nextCursor"].is_string());
    api.gateway.stop();
}

async fn a_duplicate_name_is_a_conflict_and_an_idempotent_retry_writes_once(backend: Backend) {
    let api = start_on(backend).await;
    assert_eq!(api.register(server("dup")).await.status, StatusCode::CREATED);
    assert_problem(&api.register(server("dup")).await, StatusCode::CONFLICT, "name-taken");

    let body = server("once").to_string();
    let first = api.call(Method::POST, "/api/v1/servers", Some(&body), &[("idempotency-key", "k-123")]).await;
    let again = api.call(Method::POST, "/api/v1/servers", Some(&body), &[("idempotency-key", "k-123")]).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(first.body, again.body);
    assert_eq!(api.events().await, 2, "one event per registered server");

    let other = server("different").to_string();
    let reused = api.call(Method::POST, "/api/v1/servers", Some(&other), &[("idempotency-key", "k-123")]).await;
    assert_problem(&reused, StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    assert_eq!(api.events().await, 2);

    // A command that fails writes nothing and frees its key: the corrected request runs under it.
    let taken = api
        .call(Method::POST, "/api/v1/servers", Some(&server("dup").to_string()), &[("idempotency-key", "k-456")])
        .await;
    assert_problem(&taken, StatusCode::CONFLICT, "name-taken");
    let fixed = api
        .call(Method::POST, "/api/v1/servers", Some(&server("fixed").to_string()), &[("idempotency-key", "k-456")])
        .await;
    assert_eq!(fixed.status, StatusCode::CREATED, "{}", fixed.raw);
    assert_eq!(api.events().await, 3);
    api.gateway.stop();
}

async fn a_stale_if_match_is_refused_and_writes_nothing(backend: Backend) {
    let api = start_on(backend).await;
    let id = api.register(server("patchme")).await.body["id"].as_str().unwrap().to_owned();
    let uri = format!("/api/v1/servers/{id}");
    let patch = json!({"description": "v2"}).to_string();

    assert_problem(
        &api.call(Method::PATCH, &uri, Some(&patch), &[]).await,
        StatusCode::PRECONDITION_REQUIRED,
        "if-match-required",
    );
    let done = api.call(Method::PATCH, &uri, Some(&patch), &[("if-match", "\"0\"")]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.raw);
    assert_eq!(done.headers[header::ETAG], "\"1\"");
    let stale =
        api.call(Method::PATCH, &uri, Some(&json!({"description": "v3"}).to_string()), &[("if-match", "\"0\"")]).await;
    assert_problem(&stale, StatusCode::PRECONDITION_FAILED, "revision-mismatch");
    assert_eq!(api.events().await, 2);
    api.gateway.stop();
}

async fn ssrf_targets_are_refused_naming_the_rule(backend: Backend) {
    let api = start_on(backend).await;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    let cases = [
        ("http://127.0.0.1/mcp", "blocked-address", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "blocked-address", "cloud_metadata"),
        ("http://[::ffff:10.0.0.1]/mcp", "blocked-address", "private"),
        ("https://[::ffff:0:7f00:1]/mcp", "blocked-address", "loopback"),
        ("https://2130706433/mcp", "blocked-address", "loopback"),
        ("https://0177.0.0.1/mcp", "blocked-address", "loopback"),
        ("https://0x7f000001/mcp", "blocked-address", "loopback"),
        (&format!("https://{hostname}/mcp"), "blocked-address", ""),
        ("http://mcp.example.com/mcp", "insecure-url", ""),
        ("https://user:pw@mcp.example.com/mcp", "url-credentials", ""),
    ];
    for (n, (url, rule, range)) in cases.iter().enumerate() {
        let mut body = server(&format!("ssrf{n}"));
        body["url"] = json!(url);
        let reply = api.register(body).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, rule);
        assert_eq!(reply.body["field"], "url");
        assert!(reply.body["detail"].as_str().unwrap().contains(range), "{url}: {}", reply.raw);
    }
    // An allowlisted host may use plain http.
    let mut allowed = server("internal");
    allowed["url"] = json!("http://mcp.internal:8080/mcp");
    assert_eq!(api.register(allowed).await.status, StatusCode::CREATED);
    assert_eq!(api.events().await, 1, "nothing refused was written");
    api.gateway.stop();
}

async fn bad_bodies_get_a_problem_never_a_500(backend: Backend) {
    let api = start_on(backend).await;
    let api = &api;
    let post = |body: String| async move { api.call(Method::POST, "/api/v1/servers", Some(&body), &[]).await };
    assert_problem(&post("{\"name\": ".into()).await, StatusCode::BAD_REQUEST, "malformed-json");
    let mut unknown = server("x");
    unknown["colour"] = json!("blue");
    assert_problem(&post(unknown.to_string()).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    assert_problem(&post(json!({"name": "x"}).to_string()).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid-body");
    let mut oversized = server("x");
    oversized["description"] = json!("d".repeat(100 * 1024));
    assert_problem(&post(oversized.to_string()).await, StatusCode::PAYLOAD_TOO_LARGE, "body-too-large");
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert_problem(&post(deep).await, StatusCode::BAD_REQUEST, "too-deep");
    let mut bad_name = server("Bad Name");
    bad_name["name"] = json!("Bad Name");
    let reply = post(bad_name.to_string()).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid-field");
    assert_eq!(reply.body["field"], "name");
    let unauthenticated =
        api.router.clone().oneshot(Request::get("/api/v1/servers").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.events().await, 0);
}

async fn suspend_resume_rotate_and_deregister(backend: Backend) {
    let api = start_on(backend).await;
    let registered = api.register(server("lifecycle")).await;
    let id = registered.body["id"].as_str().unwrap().to_owned();
    let post = |path: &'static str, body: Value| {
        let uri = format!("/api/v1/servers/{id}/{path}");
        let api = &api;
        async move { api.call(Method::POST, &uri, Some(&body.to_string()), &[]).await }
    };
    // Pages show each change: a listed entry is kept rendered, and rendered again when its revision moves.
    let listed = |position: String| {
        let api = &api;
        async move {
            let page = api.call(Method::GET, &format!("/api/v1/servers?min_position={position}"), None, &[]).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.raw);
            page.body["servers"][0].clone()
        }
    };
    let active = listed(registered.body["position"].as_str().unwrap().to_owned()).await;
    assert_eq!((active["status"].as_str(), active["revision"].as_i64()), (Some("active"), Some(0)));
    let suspended = post("suspend", json!({"reason": "maintenance"})).await;
    assert_eq!(suspended.status, StatusCode::OK, "{}", suspended.raw);
    assert_problem(&post("suspend", json!({"reason": "again"})).await, StatusCode::CONFLICT, "invalid-state");
    let position = suspended.body["position"].as_str().unwrap().to_owned();
    let read = api.call(Method::GET, &format!("/api/v1/servers/{id}?min_position={position}"), None, &[]).await;
    assert_eq!(read.body["status"], "suspended");
    assert_eq!(read.body["status_reason"], "maintenance");
    assert_eq!(listed(position).await, read.body, "the page shows what a read by id shows");
    let resumed = post("resume", json!({})).await;
    assert_eq!(resumed.status, StatusCode::OK);
    let listed_again = listed(resumed.body["position"].as_str().unwrap().to_owned()).await;
    assert_eq!((listed_again["status"].as_str(), listed_again["revision"].as_i64()), (Some("active"), Some(2)));
    let rotated = post(
        "rotate-credential",
        json!({"upstream_auth": {"mode": "header", "name": "X-API-Key", "value": "hdr-SECRET-9"}}),
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.raw);
    let position = rotated.body["position"].as_str().unwrap().to_owned();
    let read = api.call(Method::GET, &format!("/api/v1/servers/{id}?min_position={position}"), None, &[]).await;
    assert_eq!(read.body["auth_mode"], "header");
    assert!(!read.raw.contains("hdr-SECRET-9"));

    let gone = api.call(Method::DELETE, &format!("/api/v1/servers/{id}?reason=retired"), None, &[]).await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.raw);
    let position = gone.body["position"].as_str().unwrap().to_owned();
    let read = api.call(Method::GET, &format!("/api/v1/servers/{id}?min_position={position}"), None, &[]).await;
    assert_problem(&read, StatusCode::NOT_FOUND, "not-found");
    assert_problem(&post("resume", json!({})).await, StatusCode::GONE, "deregistered");
    assert_eq!(api.register(server("lifecycle")).await.status, StatusCode::CREATED, "the name is free again");
    api.gateway.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_given_at_registration_is_in_no_event_row_no_nats_message_and_no_response() {
    let nats = tests::NatsServer::start().unwrap();
    let api = start(Some(nats.url())).await;
    let mut body = server("secretive");
    body["upstream_auth"] = json!({"mode": "bearer", "token": "tok-TOPSECRET-31337"});
    let created = api.register(body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().unwrap();
    let read = api
        .call(
            Method::GET,
            &format!("/api/v1/servers/{id}?min_position={}", created.body["position"].as_str().unwrap()),
            None,
            &[],
        )
        .await;
    assert_eq!(read.body["auth_mode"], "bearer");

    let rows: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT convert_to(data::text || metadata::text, 'UTF8') FROM es.events")
            .fetch_all(api.gateway.state.tables.postgres().unwrap())
            .await
            .unwrap();
    let needle = b"TOPSECRET";
    let contains = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(!rows.iter().any(|r| contains(r)), "no event row holds the secret");
    for reply in [&created, &read] {
        assert!(!contains(reply.raw.as_bytes()));
    }

    // Every message the relay published, headers and payload, raw.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let total = rows.len() as u64;
    let messages = tests::eventually(DEADLINE, "the relay to publish every event", || async {
        let mut stream = js.get_stream("REGISTRY_EVENTS").await.ok()?;
        let info = stream.info().await.ok()?;
        (info.state.messages >= total).then_some(info.state.last_sequence)
    })
    .await;
    let stream = js.get_stream("REGISTRY_EVENTS").await.unwrap();
    for sequence in 1..=messages {
        let message = stream.direct_get(sequence).await.unwrap();
        let headers: String = message.headers.iter().map(|(k, v)| format!("{k}:{v:?}")).collect();
        assert!(!contains(&message.payload) && !contains(headers.as_bytes()), "message {sequence} holds the secret");
    }
    api.gateway.stop();
}

async fn the_openapi_document_describes_every_endpoint(backend: Backend) {
    let api = start_on(backend).await;
    let unauthenticated = Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(unauthenticated).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["paths"]["/api/v1/servers"]["post"]["operationId"], "add_server");
    for (path, method) in [
        ("/api/v1/servers", "get"),
        ("/api/v1/servers/{id}", "get"),
        ("/api/v1/servers/{id}", "patch"),
        ("/api/v1/servers/{id}", "delete"),
        ("/api/v1/servers/{id}/suspend", "post"),
        ("/api/v1/servers/{id}/resume", "post"),
        ("/api/v1/servers/{id}/rotate-credential", "post"),
        ("/api/v1/audit/hash", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} documented");
    }
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["RegisterInput"].is_object() && schemas["Problem"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    api.gateway.stop();
}

async fn a_viewer_reads_but_may_not_add_a_server_and_health_and_readiness_answer(backend: Backend) {
    let mut api = start_on(backend).await;
    api.key = principal_key(&api, domain::Role::Viewer).await;
    let refused = api.register(server("not-yours")).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(api.events().await, 0);

    assert_eq!(api.call(Method::GET, "/health", None, &[]).await.status, StatusCode::OK);
    let ready = tests::eventually(DEADLINE, "the instance to be ready", || async {
        let reply = api.call(Method::GET, "/ready", None, &[]).await;
        (reply.status == StatusCode::OK).then_some(reply)
    })
    .await;
    assert_eq!(ready.body["checks"]["event_store"]["status"], "ok");
    assert_eq!(ready.body["checks"]["projections"]["detail"]["registry"]["status"], "ok");
    api.gateway.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_lost_response_answers_as_the_first_attempt_and_writes_nothing() {
    let api = start(None).await;
    let id = api.register(server("retried")).await.body["id"].as_str().unwrap().to_owned();
    for (path, body) in [
        ("suspend", json!({"reason": "maintenance"})),
        ("rotate-credential", json!({"upstream_auth": {"mode": "bearer", "token": "t-1"}})),
    ] {
        let uri = format!("/api/v1/servers/{id}/{path}");
        let key = format!("key-{path}");
        let first = api.call(Method::POST, &uri, Some(&body.to_string()), &[("idempotency-key", &key)]).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.raw);
        let events = api.events().await;

        // The process died after the append but before recording the response: the claim is pending,
        // and old enough to be taken over.
        sqlx::query("UPDATE api.idempotency SET status = 0, body = 'null', created_at = now() - interval '2 minutes' WHERE key = $1")
            .bind(&key)
            .execute(api.gateway.state.tables.postgres().unwrap())
            .await
            .unwrap();
        let retry = api.call(Method::POST, &uri, Some(&body.to_string()), &[("idempotency-key", &key)]).await;
        assert_eq!(retry.status, StatusCode::OK, "{}", retry.raw);
        assert_eq!(retry.body, first.body, "the retry answers as the first attempt did");
        assert_eq!(api.events().await, events, "and appends nothing");

        // A retry while the first attempt still runs (a fresh pending claim) is told to come back.
        sqlx::query("UPDATE api.idempotency SET status = 0, created_at = now() WHERE key = $1")
            .bind(&key)
            .execute(api.gateway.state.tables.postgres().unwrap())
            .await
            .unwrap();
        let busy = api.call(Method::POST, &uri, Some(&body.to_string()), &[("idempotency-key", &key)]).await;
        assert_problem(&busy, StatusCode::CONFLICT, "idempotency-key-in-progress");
    }
    api.gateway.stop();
}

async fn malformed_paths_queries_positions_and_preconditions_get_problems(backend: Backend) {
    let api = start_on(backend).await;
    let created = api.register(server("edge")).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_problem(
        &api.call(Method::GET, "/api/v1/servers?q=%00", None, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid-parameter",
    );
    assert_problem(
        &api.call(Method::GET, "/api/v1/servers?cursor=AA", None, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid-cursor",
    );
    assert_problem(
        &api.call(Method::GET, "/api/v1/servers?limit=many", None, &[]).await,
        StatusCode::BAD_REQUEST,
        "bad-request",
    );
    assert_problem(
        &api.call(Method::GET, "/api/v1/servers/not-a-uuid", None, &[]).await,
        StatusCode::BAD_REQUEST,
        "bad-request",
    );
    assert_problem(&api.call(Method::GET, "/api/v1/nothing-here", None, &[]).await, StatusCode::NOT_FOUND, "not-found");
    assert_problem(
        &api.call(Method::PUT, "/api/v1/servers", None, &[]).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    );
    let refused = api.call(Method::GET, "/v0.1/servers?search=%00", None, &[]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.raw);
    assert!(refused.body["error"].as_str().unwrap().starts_with("search:"), "{}", refused.raw);
    let beyond = format!("/api/v1/servers/{id}?min_position=999999999:1");
    assert_problem(&api.call(Method::GET, &beyond, None, &[]).await, StatusCode::BAD_REQUEST, "invalid-position");

    let uri = format!("/api/v1/servers/{id}");
    let patch = json!({"description": "changed"}).to_string();
    assert_problem(
        &api.call(Method::PATCH, &uri, Some(&patch), &[("if-match", "W/\"0\"")]).await,
        StatusCode::PRECONDITION_FAILED,
        "revision-mismatch",
    );
    assert_eq!(api.call(Method::PATCH, &uri, Some(&patch), &[("if-match", "*")]).await.status, StatusCode::OK);
    // Only a quoted revision is an entity tag
    for bad in ["0", "\"0", "0\"", "\"1\", \"2\""] {
        let reply = api.call(Method::PATCH, &uri, Some(&patch), &[("if-match", bad)]).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-if-match");
    }
    // A filter that can never match is a mistake, named; so is a body that does not say it is JSON
    for query in ["/api/v1/servers?status=bogus", "/api/v1/audit?outcome=bogus"] {
        let reply = api.call(Method::GET, query, None, &[]).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-parameter");
        assert!(["status", "outcome"].contains(&reply.body["field"].as_str().unwrap()), "{}", reply.raw);
    }
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut request = Request::post("/api/v1/servers").header(header::AUTHORIZATION, format!("Bearer {}", api.key));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let body = server("untyped").to_string();
        let response = api.router.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
    }
    // A body streamed without a length (chunked, an HTTP/2 stream) is a body too
    let streamed = futures_util::stream::once(async { Ok::<_, std::io::Error>(server("streamed").to_string()) });
    let request = Request::post("/api/v1/servers")
        .header(header::AUTHORIZATION, format!("Bearer {}", api.key))
        .body(Body::from_stream(streamed))
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "a streamed untyped body");

    let mut leaky = server("leaky");
    leaky["url"] = json!("https://93.184.216.34/mcp?api_key=abc");
    assert_problem(&api.register(leaky).await, StatusCode::UNPROCESSABLE_ENTITY, "url-credentials");

    // A suspended server stays in the registry API, marked as not to be relied on.
    let suspended =
        api.call(Method::POST, &format!("{uri}/suspend"), Some(&json!({"reason": "x"}).to_string()), &[]).await;
    let position = suspended.body["position"].as_str().unwrap().to_owned();
    api.call(Method::GET, &format!("{uri}?min_position={position}"), None, &[]).await;
    let edge = api.call(Method::GET, "/v0.1/servers/io.example%2Fedge/versions/latest", None, &[]).await;
    assert_eq!(edge.body["_meta"]["io.modelcontextprotocol.registry/official"]["status"], "deprecated", "{}", edge.raw);
    assert_eq!(api.call(Method::GET, "/v0.1/servers", None, &[]).await.body["metadata"]["count"], 1);
    api.gateway.stop();
}

async fn auditors_query_and_verify_the_trail_and_every_read_and_refusal_is_in_it(backend: Backend) {
    let mut api = start_on(backend).await;
    let owner_key = api.key.clone();
    let created = api.register(server("audited-api")).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let viewer_key = principal_key(&api, domain::Role::Viewer).await;
    let auditor_key = principal_key(&api, domain::Role::Auditor).await;

    // A viewer is refused the trail, and a server manager's action, both recorded.
    api.key = viewer_key;
    assert_problem(&api.call(Method::GET, "/api/v1/audit", None, &[]).await, StatusCode::FORBIDDEN, "forbidden");
    assert_problem(&api.register(server("not-allowed")).await, StatusCode::FORBIDDEN, "forbidden");

    api.key = auditor_key;
    let denied = tests::eventually(DEADLINE, "the refusals to reach the trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?outcome=denied", None, &[]).await;
        let entries = page.body["entries"].as_array()?.clone();
        (entries.len() >= 2).then_some(entries)
    })
    .await;
    assert_eq!(denied[0]["action"], "access.denied");
    assert_eq!(denied[0]["changes"]["action"], "audit.read");
    assert_eq!(denied[1]["changes"]["action"], "servers.manage");

    // Filters: one server's history by target, and by action prefix.
    let history = api.call(Method::GET, &format!("/api/v1/audit?target_kind=server&target_id={id}"), None, &[]).await;
    let actions: Vec<&str> =
        history.body["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["server.registered"]);
    let by_prefix = api.call(Method::GET, "/api/v1/audit?action=server.&limit=1", None, &[]).await;
    assert_eq!(by_prefix.body["entries"].as_array().unwrap().len(), 1);
    assert!(by_prefix.body["next_cursor"].is_null(), "one server action in all");
    assert_problem(
        &api.call(Method::GET, "/api/v1/audit?colour=red", None, &[]).await,
        StatusCode::BAD_REQUEST,
        "bad-request",
    );

    // The auditor's own reads are in the trail too.
    let reads = tests::eventually(DEADLINE, "the reads to reach the trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=audit.read", None, &[]).await;
        let entries = page.body["entries"].as_array()?.clone();
        (entries.len() >= 3).then_some(entries)
    })
    .await;
    assert!(reads.iter().all(|e| e["target_kind"] == "audit_trail"));

    let verified = api.call(Method::GET, "/api/v1/audit/verify", None, &[]).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.raw);
    assert!(verified.body["violation"].is_null(), "{}", verified.raw);
    assert!(verified.body["checked"].as_u64().unwrap() >= 5);
    assert!(verified.body["checkpoint_violation"].is_null(), "{}", verified.raw);
    // The checkpoint keys are published, without authentication.
    let keys =
        api.router.clone().oneshot(Request::get("/api/v1/audit/keys").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(keys.status(), StatusCode::OK);
    let keys: Value = serde_json::from_slice(&axum::body::to_bytes(keys.into_body(), 1 << 16).await.unwrap()).unwrap();
    assert_eq!(keys["keys"][0]["key_id"], "a1");
    assert_eq!(keys["keys"][0]["algorithm"], "Ed25519");

    // The export streams every entry, in order, as JSON lines or CSV; one entry by number.
    let jsonl = api.call(Method::GET, "/api/v1/audit/export?format=jsonl&action=server.", None, &[]).await;
    assert_eq!(jsonl.status, StatusCode::OK, "{}", jsonl.raw);
    assert_eq!(jsonl.headers[header::CONTENT_TYPE], "application/x-ndjson");
    let lines: Vec<Value> = jsonl.raw.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["action"], "server.registered");
    let everything = api.call(Method::GET, "/api/v1/audit/export", None, &[]).await;
    let seqs: Vec<i64> =
        everything.raw.lines().filter_map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_i64()).collect();
    assert!(everything.raw.lines().last().unwrap().starts_with("{\"trailer\""), "a full export ends with its trailer");
    assert!(seqs.len() >= 5 && seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs[0] == 1, "{seqs:?}");
    let csv = api.call(Method::GET, "/api/v1/audit/export?format=csv", None, &[]).await;
    assert!(csv.raw.starts_with("seq,position,event_id,"), "{}", csv.raw);
    assert!(csv.raw.lines().count() > seqs.len(), "a header and at least the entries exported before");
    assert_problem(
        &api.call(Method::GET, "/api/v1/audit/export?format=xml", None, &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid-parameter",
    );
    // An export with the checkpoint that signs it verifies offline with the published key alone, and an
    // edited line is named.
    let keys = projections::audit::AuditKeys::new(&[("a1".into(), K1.into())]).unwrap();
    api::routes::audit::audit(&api.gateway.state).write_checkpoint(&keys).await.unwrap();
    let export = api.call(Method::GET, "/api/v1/audit/export", None, &[]).await;
    let published = projections::audit::AuditKeys::verifying(&keys.public_keys()).unwrap();
    let report = projections::audit::verify_export(export.raw.as_bytes(), &published).unwrap();
    assert_eq!(report.problem, None, "{}", export.raw);
    assert_eq!(report.checkpoints, 1);
    assert!(report.trailer, "a signed trailer vouches for the whole range");
    assert!(report.entries >= 5);
    let lines: Vec<&str> = export.raw.lines().collect();
    // Cut short (the trailer lost with the tail): chained, but unsigned.
    let cut = lines[..lines.len() - 1].join("\n");
    let report = projections::audit::verify_export(cut.as_bytes(), &published).unwrap();
    assert!(report.problem.is_none() && !report.trailer);
    // The last entry dropped, the trailer kept: the trailer no longer vouches.
    let entries = lines.iter().filter(|l| !l.starts_with("{\"checkpoint\"") && !l.starts_with("{\"trailer\"")).count();
    let mut dropped: Vec<&str> = lines.clone();
    dropped.remove(entries - 1);
    let report = projections::audit::verify_export(dropped.join("\n").as_bytes(), &published).unwrap();
    assert!(report.problem.is_some_and(|(_, why)| why.contains("does not vouch") || why.contains("does not hold")));
    // A checkpoint put in front of entries it does not follow.
    let mut moved: Vec<&str> = lines.clone();
    let checkpoint = moved.remove(entries);
    moved.insert(0, checkpoint);
    let report = projections::audit::verify_export(moved.join("\n").as_bytes(), &published).unwrap();
    assert!(report.problem.is_some_and(|(line, _)| line == 1));
    let tampered = export.raw.replacen("\"server.registered\"", "\"server.suspended\"", 1);
    let report = projections::audit::verify_export(tampered.as_bytes(), &published).unwrap();
    let (_, why) = report.problem.unwrap();
    assert!(why.contains("was modified"), "{why}");

    let first = api.call(Method::GET, "/api/v1/audit/1", None, &[]).await;
    assert_eq!(first.body["seq"], 1, "{}", first.raw);
    assert_problem(
        &api.call(Method::GET, "/api/v1/audit/99999999", None, &[]).await,
        StatusCode::NOT_FOUND,
        "not-found",
    );

    // Owners read the trail too; admins and managers do not (separation of duties).
    api.key = owner_key;
    assert_eq!(api.call(Method::GET, "/api/v1/audit?limit=1", None, &[]).await.status, StatusCode::OK);
    api.gateway.stop();
}

async fn the_trail_shows_whether_a_credential_changed_and_an_auditor_can_match_a_candidate_secret(backend: Backend) {
    let mut api = start_on(backend).await;
    let mut body = server("hashed");
    body["upstream_auth"] = json!({ "mode": "bearer", "token": "tok-CANDIDATE-1" });
    let created = api.register(body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let rotate = json!({ "upstream_auth": { "mode": "bearer", "token": "tok-CANDIDATE-2" } }).to_string();
    let rotated = api.call(Method::POST, &format!("/api/v1/servers/{id}/rotate-credential"), Some(&rotate), &[]).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.raw);
    let viewer_key = principal_key(&api, domain::Role::Viewer).await;
    let auditor_key = principal_key(&api, domain::Role::Auditor).await;

    // The trail records keyed hashes of the credentials: a rotation to another secret shows as a change
    api.key = auditor_key;
    let history = tests::eventually(DEADLINE, "the rotation to reach the trail", || async {
        let page = api.call(Method::GET, &format!("/api/v1/audit?target_id={id}"), None, &[]).await;
        let entries = page.body["entries"].as_array()?.clone();
        (entries.len() == 2).then_some(entries)
    })
    .await;
    // Each entry names its actor as the principal was called at the time
    assert!(history.iter().all(|e| e["actor_name"] == "owner"), "{history:?}");
    let first = history[0]["changes"]["credential"].as_str().unwrap().to_owned();
    let change = &history[1]["changes"]["credential"];
    assert_eq!(change["before"], first.as_str());
    assert!(first.starts_with("hmac-sha256:k1:"), "{first}");
    assert_ne!(change["after"], change["before"]);
    assert!(!history.iter().any(|e| e.to_string().contains("CANDIDATE")), "no secret in the trail");

    // An auditor holding a candidate asks for its hash and finds which credential it was
    let ask = |value: &str| json!({ "value": value }).to_string();
    let hashed = api.call(Method::POST, "/api/v1/audit/hash", Some(&ask("tok-CANDIDATE-1")), &[]).await;
    assert_eq!(hashed.status, StatusCode::OK, "{}", hashed.raw);
    assert_eq!(hashed.body["hash"], first.as_str());
    let other = api.call(Method::POST, "/api/v1/audit/hash", Some(&ask("tok-OTHER")), &[]).await;
    assert_ne!(other.body["hash"], first.as_str());
    let unknown = json!({ "value": "x", "key_id": "nope" }).to_string();
    assert_problem(
        &api.call(Method::POST, "/api/v1/audit/hash", Some(&unknown), &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown-key",
    );
    // The question is recorded, never the value
    let asked = tests::eventually(DEADLINE, "the question to reach the trail", || async {
        let page = api.call(Method::GET, "/api/v1/audit?action=audit.read", None, &[]).await;
        let entries = page.body["entries"].as_array()?.clone();
        entries.iter().any(|e| e["changes"]["query"] == "hash?key_id=k1").then_some(entries)
    })
    .await;
    assert!(!asked.iter().any(|e| e.to_string().contains("CANDIDATE")));

    // Only auditors (and owners) may ask
    api.key = viewer_key;
    assert_problem(
        &api.call(Method::POST, "/api/v1/audit/hash", Some(&ask("tok-CANDIDATE-1")), &[]).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    api.gateway.stop();
}

on_every_backend!(
    auditors_query_and_verify_the_trail_and_every_read_and_refusal_is_in_it,
    the_trail_shows_whether_a_credential_changed_and_an_auditor_can_match_a_candidate_secret,
    add_server_then_read_it_list_it_and_export_it,
    a_duplicate_name_is_a_conflict_and_an_idempotent_retry_writes_once,
    a_stale_if_match_is_refused_and_writes_nothing,
    ssrf_targets_are_refused_naming_the_rule,
    bad_bodies_get_a_problem_never_a_500,
    suspend_resume_rotate_and_deregister,
    the_openapi_document_describes_every_endpoint,
    a_viewer_reads_but_may_not_add_a_server_and_health_and_readiness_answer,
    malformed_paths_queries_positions_and_preconditions_get_problems,
);
