//! `/ready` as a load balancer and an operator read it: what stops an instance from serving makes it
//! unready and says why in the server's own words; what only degrades it (NATS) does not take it out.

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::api_servers::{Api, config, start};
use crate::support::DEADLINE;

async fn ready(api: &Api) -> (StatusCode, Value) {
    let reply = api.call(Method::GET, "/ready", None, &[]).await;
    (reply.status, reply.body)
}

/// NATS down: the instance still serves (projections follow the store), so `/ready` answers 200
/// `degraded` naming NATS; a NATS that lost the relay's stream (restarted with an empty store) is
/// named too, before any append finds out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_degrades_ready_and_a_lost_stream_is_named() {
    let nats = tests::NatsServer::start().unwrap();
    let api = start(Some(nats.url())).await;
    tests::eventually(DEADLINE, "/ready to be ok with NATS", || async {
        let (status, body) = ready(&api).await;
        (status == StatusCode::OK && body["status"] == "ok" && body["checks"]["nats"]["status"] == "ok").then_some(())
    })
    .await;

    // The stream gone, as from a server restarted on an empty store
    let client = async_nats::connect(nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    jetstream.delete_stream(&api.gateway.state.nats_stream).await.unwrap();
    let (status, body) = ready(&api).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    let error = body["checks"]["nats"]["detail"]["error"].as_str().unwrap_or_default();
    assert!(error.contains(&api.gateway.state.nats_stream), "{body}");

    // NATS down: still serving, degraded
    nats.kill().unwrap();
    let body = tests::eventually(DEADLINE, "/ready to notice NATS is gone", || async {
        let (status, body) = ready(&api).await;
        assert_eq!(status, StatusCode::OK, "a NATS outage is not an outage of the instance: {body}");
        (body["checks"]["nats"]["status"] == "degraded").then_some(body)
    })
    .await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["failing"], serde_json::json!(["nats"]), "{body}");
    assert_eq!(body["checks"]["event_store"]["status"], "ok", "{body}");
    let listed = api.call(Method::GET, "/api/v1/servers", None, &[]).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.raw);
    // A monitor asking strictly is told the instance is not fully ready, and why.
    let strict = api.call(Method::GET, "/ready?strict=true", None, &[]).await;
    assert_eq!(strict.status, StatusCode::SERVICE_UNAVAILABLE, "{}", strict.raw);
    assert_eq!(strict.body["failing"], serde_json::json!(["nats"]), "{}", strict.raw);

    // NATS back, and something to relay: the relay makes its stream again and publishes; ready again.
    nats.restart().unwrap();
    let created = api
        .call(Method::POST, "/api/v1/servers", Some(&crate::api_servers::server("after-nats").to_string()), &[])
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let body = tests::eventually(DEADLINE, "/ready to be strictly ready again", || async {
        let reply = api.call(Method::GET, "/ready?strict=true", None, &[]).await;
        (reply.status == StatusCode::OK).then_some(reply.body)
    })
    .await;
    assert_eq!(body["checks"]["nats"]["status"], "ok", "{body}");
    assert!(body["checks"]["nats"]["detail"]["relay_backlog_events"].is_u64(), "{body}");
}

/// The seven checks are there, each with a status, a latency and a detail; those that do not apply to
/// a deployment say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_answers_with_its_status_latency_and_detail() {
    let api = crate::api_servers::start_on(crate::conformance::Backend::Sqlite).await;
    // A projection still starting on a busy machine makes the instance unready for a moment.
    let body = tests::eventually(DEADLINE, "every projection to be live", || async {
        let (status, body) = ready(&api).await;
        (status == StatusCode::OK).then_some(body)
    })
    .await;
    for name in ["event_store", "nats", "projections", "authz", "idps", "servers", "keys"] {
        let check = &body["checks"][name];
        assert!(check["status"].is_string() && check["latency_ms"].is_f64(), "{name}: {body}");
    }
    assert_eq!(body["checks"]["nats"]["status"], "not_applicable", "{body}");
    assert_eq!(body["checks"]["idps"]["status"], "not_applicable", "{body}");
    assert_eq!(body["checks"]["keys"]["detail"]["sealing"]["current"], "k1", "{body}");
    assert!(body["checks"]["keys"]["detail"]["signing"]["kid"].is_string(), "{body}");
    assert!(body["checks"]["projections"]["detail"]["head"].is_string(), "{body}");
}

/// An identity provider whose discovery fails degrades readiness, named, until it answers again; the
/// probe renews the discovery and keys logins use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_provider_that_stops_answering_is_named_until_it_is_back() {
    let provider = tests::OidcProvider::start(r#"{"clients": [], "users": {}}"#).unwrap();
    let idp: api::oidc::IdpConfig = serde_json::from_value(serde_json::json!({
        "name": "corp", "issuer": provider.issuer(), "client_id": "gateway", "client_secret": "s",
    }))
    .unwrap();
    let api = crate::api_servers::start_with(crate::conformance::Backend::Sqlite, |config| {
        config.idps = vec![idp];
        config.readiness.idp_probe_interval = std::time::Duration::ZERO;
    })
    .await;
    let body = tests::eventually(DEADLINE, "the provider to be probed", || async {
        let (_, body) = ready(&api).await;
        (body["checks"]["idps"]["status"] == "ok").then_some(body)
    })
    .await;
    assert_eq!(body["checks"]["idps"]["detail"][0]["name"], "corp", "{body}");
    assert_eq!(body["checks"]["idps"]["detail"][0]["keys_age_s"], 0, "{body}");

    provider.stop().unwrap();
    let strict = api.call(Method::GET, "/ready?strict=true", None, &[]).await;
    assert_eq!(strict.status, StatusCode::SERVICE_UNAVAILABLE, "{}", strict.raw);
    assert_eq!(strict.body["failing"], serde_json::json!(["idps"]), "{}", strict.raw);
    assert!(
        strict.body["checks"]["idps"]["detail"][0]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        strict.raw
    );
    // Serving all the same: API keys do not need the IdP.
    let (status, _) = ready(&api).await;
    assert_eq!(status, StatusCode::OK);

    provider.resume().unwrap();
    tests::eventually(DEADLINE, "the provider to be ready again", || async {
        let reply = api.call(Method::GET, "/ready?strict=true", None, &[]).await;
        (reply.status == StatusCode::OK).then_some(())
    })
    .await;
}

/// The token signing key near the end of its life (rotation off) degrades readiness, named; a rotation
/// makes it ready again. With rotation on, the key is replaced before readiness ever warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_near_its_expiry_is_named_and_rotation_replaces_it_in_time() {
    let life = std::time::Duration::from_secs(3);
    let api = crate::api_servers::start_with(crate::conformance::Backend::Sqlite, |config| {
        config.readiness.signing_key_max_age = Some(life);
        config.rotate_signing_keys = false;
    })
    .await;
    let (first, _) = api.gateway.state.tokens.active_key().unwrap();
    // Only the keys failing: a projection still starting on a busy machine fails for a moment too.
    let body = tests::eventually(DEADLINE, "the key to be near its expiry, and nothing else failing", || async {
        let reply = api.call(Method::GET, "/ready?strict=true", None, &[]).await;
        (reply.status == StatusCode::SERVICE_UNAVAILABLE && reply.body["failing"] == serde_json::json!(["keys"]))
            .then_some(reply.body)
    })
    .await;
    assert_eq!(body["checks"]["keys"]["detail"]["signing"]["kid"], first.as_str(), "{body}");

    let context =
        commands::servers::CommandContext { command_id: uuid::Uuid::now_v7(), metadata: crate::support::metadata() };
    api.gateway.state.tokens.rotate(&context).await.unwrap();
    let reply = api.call(Method::GET, "/ready?strict=true", None, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    assert_ne!(reply.body["checks"]["keys"]["detail"]["signing"]["kid"], first.as_str(), "{}", reply.raw);

    // Rotation on: the key is replaced at 80 % of its life, and readiness never warns (a 15 s life leaves
    // the rotation 1.5 s before the warning, for a busy machine's delays: CI runs ~300 tests on 2 cores).
    let life = std::time::Duration::from_secs(15);
    let api = crate::api_servers::start_with(crate::conformance::Backend::Sqlite, |config| {
        config.readiness.signing_key_max_age = Some(life);
    })
    .await;
    let (first, _) = api.gateway.state.tokens.active_key().unwrap();
    let until = std::time::Instant::now() + life + life / 5;
    let mut kids = std::collections::BTreeSet::new();
    while std::time::Instant::now() < until {
        // The keys' check only: another check a busy machine may degrade is not this test's business.
        let reply = api.call(Method::GET, "/ready", None, &[]).await;
        assert_eq!(reply.body["checks"]["keys"]["status"], "ok", "{}", reply.raw);
        kids.insert(reply.body["checks"]["keys"]["detail"]["signing"]["kid"].as_str().unwrap().to_owned());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(kids.len() >= 2 && kids.contains(&first), "rotated: {kids:?}");
}

/// A database that refuses connections is reported with its own reason (`too many connections…`), not
/// as a pool that timed out, and quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_refusing_connections_is_reported_in_its_own_words() {
    let server = tests::PostgresServer::shared().unwrap();
    let db = server.create_database().await.unwrap();
    let admin = db.pool(1).await.unwrap();
    // The gateway connects as a role of its own, which the superuser can then limit
    let role = format!("gw_{}", db.name);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN"))).execute(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {} OWNER TO {role}", db.name)))
        .execute(&admin)
        .await
        .unwrap();
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.url, "the test URL names its user: {}", db.url);
    let gateway = api::Gateway::start(&config(&url, None), None).await.unwrap();
    let reply = |gateway: &api::Gateway| {
        let state = gateway.state.clone();
        async move { state.tables.ping().await }
    };
    assert_eq!(reply(&gateway).await, Ok(()));

    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER ROLE {role} CONNECTION LIMIT 0"))).execute(&admin).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(&role)
        .execute(&admin)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let error = tests::eventually(DEADLINE, "the ping to fail", || async { reply(&gateway).await.err() }).await;
    assert!(error.contains("too many connections"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "took {:?}", started.elapsed());

    // At start too
    let refused = api::Gateway::start(&config(&url, None), None).await.err().unwrap().to_string();
    assert!(refused.contains("too many connections"), "{refused}");
    gateway.stop();
}

/// A transaction held open in another database of the cluster (it can never write here) does not hold
/// the readers of `$all` back: changes keep reaching the read models, and no request is refused for
/// lag while it stays open past the lag bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_held_open_in_another_database_leaves_the_api_serving() {
    use sqlx::Connection;
    let api = start(None).await;
    let elsewhere = tests::PostgresServer::shared().unwrap().create_database().await.unwrap();
    let mut open = sqlx::PgConnection::connect(&elsewhere.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut open).await.unwrap();
    let _: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text").fetch_one(&mut open).await.unwrap();

    // Past the 5 s lag bound, every write is applied and every request answered
    let bound = api.gateway.state.authz_lag.bound();
    let until = std::time::Instant::now() + bound + std::time::Duration::from_secs(2);
    let mut n = 0;
    while std::time::Instant::now() < until {
        let body = serde_json::json!({
            "name": format!("io.example/held-{n}"),
            "description": "d",
            "transport": "streamable_http",
            "url": "https://93.184.216.34/mcp",
        });
        let created = api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
        let id = created.body["id"].as_str().unwrap();
        let position = created.body["position"].as_str().unwrap();
        let read = api.call(Method::GET, &format!("/api/v1/servers/{id}?min_position={position}"), None, &[]).await;
        assert_eq!(read.status, StatusCode::OK, "the catalogue follows: {}", read.raw);
        let (status, body) = ready(&api).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        n += 1;
    }
    assert!(n > 0);
    sqlx::query("ROLLBACK").execute(&mut open).await.unwrap();
}

/// Past the lag bound, only a request whose principal, key or session has a change not yet applied is
/// refused; the others are served, and `/ready` says the authorization model is behind.
/// Here the lag comes from a transaction held open in the gateway's own database, which readers must
/// wait for; a key revoked behind it stops working at once, and the bystander's keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_lag_bound_only_callers_with_a_change_pending_are_refused() {
    use sqlx::Connection;
    let first = start(None).await;
    let url = first.db.as_ref().unwrap().url.clone();
    let strict = crate::api_servers::another_instance(
        &first,
        api::GatewayConfig { authz_max_lag: std::time::Duration::from_millis(300), ..config(&url, None) },
    )
    .await;
    let (victim_id, victim) = first.principal_with("victim", &[domain::Role::Viewer]).await;
    let (_, bystander) = first.principal_with("bystander", &[domain::Role::Viewer]).await;
    let status = |key: String| {
        let strict = &strict;
        async move { strict.call_as(&key, Method::GET, "/api/v1/me", None, &[]).await }
    };
    tests::eventually(DEADLINE, "the strict instance to know both keys", || async {
        (status(victim.clone()).await.status == StatusCode::OK
            && status(bystander.clone()).await.status == StatusCode::OK)
            .then_some(())
    })
    .await;
    let victim_key: uuid::Uuid = status(victim.clone()).await.body["key_id"].as_str().unwrap().parse().unwrap();
    let owner: uuid::Uuid =
        first.call(Method::GET, "/api/v1/me", None, &[]).await.body["id"].as_str().unwrap().parse().unwrap();

    // A writing transaction held open in the same database: readers of $all must wait for it
    let mut open = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut open).await.unwrap();
    let _: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text").fetch_one(&mut open).await.unwrap();
    let context =
        commands::servers::CommandContext { command_id: uuid::Uuid::now_v7(), metadata: crate::support::metadata() };
    let victim_id: uuid::Uuid = victim_id.parse().unwrap();
    let revoked = first.gateway.state.principals.revoke_key(owner, victim_id, victim_key, "stolen", &context).await;
    assert!(revoked.unwrap().is_some());

    let refused = tests::eventually(DEADLINE, "the revoked key to be refused for lag", || async {
        let reply = status(victim.clone()).await;
        (reply.status == StatusCode::SERVICE_UNAVAILABLE).then_some(reply)
    })
    .await;
    assert!(refused.body["detail"].as_str().unwrap().contains("not applied yet"), "{}", refused.raw);
    assert!(strict.gateway.state.authz_lag.exceeded().is_some(), "refused because the bound is passed");
    let served = status(bystander.clone()).await;
    assert_eq!(served.status, StatusCode::OK, "a caller with nothing pending is served: {}", served.raw);
    // `/ready` says the model is behind but serving (the table read models, waiting for the same
    // transaction, speak for themselves)
    let (_, body) = ready(&strict).await;
    assert_eq!(body["checks"]["authz"]["status"], "degraded", "{body}");
    assert!(body["checks"]["authz"]["detail"]["behind_ms"].as_u64().unwrap() >= 300, "{body}");

    // The transaction ends: the revocation is applied, the key refused as revoked
    sqlx::query("ROLLBACK").execute(&mut open).await.unwrap();
    tests::eventually(DEADLINE, "the revocation to be applied", || async {
        (status(victim.clone()).await.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert_eq!(status(bystander).await.status, StatusCode::OK);
}
