//! The server command handlers on every event store backend: names unique among live servers,
//! optimistic concurrency, the SSRF guard on resolved addresses, and secrets that never reach the event
//! log; and the registry read model meeting them (Postgres).

use std::sync::Arc;

use commands::servers::{CommandContext, RegisterInput, ServerCommands, UpdateInput, UpstreamAuthInput};
use commands::{CommandError, Keyring, Secret, SystemResolver};
use domain::server::{BlockedRange, EndpointError, NetworkPolicy, ServerError, ServerState, Transport, UpstreamAuth};
use eventstore::EventStore;
use uuid::Uuid;

use crate::conformance::{Backend, on_every_backend};
use crate::support::{metadata, store};

const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";

fn handlers(store: Arc<dyn EventStore>, keyring: Keyring) -> ServerCommands {
    ServerCommands::new(store, Arc::new(keyring), NetworkPolicy::default(), Arc::new(SystemResolver))
}

fn context() -> CommandContext {
    CommandContext { command_id: Uuid::now_v7(), metadata: metadata() }
}

fn input(name: &str, url: &str) -> RegisterInput {
    RegisterInput {
        name: format!("io.example/{name}"),
        version: None,
        repository: None,
        packages: vec![],
        title: Some("Weather".into()),
        description: "Forecasts".into(),
        tags: vec!["weather".into()],
        transport: Transport::StreamableHttp,
        url: url.into(),
        upstream_auth: UpstreamAuthInput::None,
        access: Default::default(),
    }
}

async fn a_name_is_unique_among_live_servers_and_free_again_after_deregistration(backend: Backend) {
    let opened = backend.open().await;
    let servers = handlers(opened.store(), Keyring::new("k1", [("k1", K1)]).unwrap());
    let first = Uuid::now_v7();
    servers.register(first, input("weather", "https://93.184.216.34/mcp"), "owner", &context()).await.unwrap();

    let taken =
        servers.register(Uuid::now_v7(), input("weather", "https://93.184.216.34/mcp"), "owner", &context()).await;
    assert!(matches!(taken, Err(CommandError::NameTaken(ref n)) if n == "io.example/weather"), "{taken:?}");
    assert_eq!(opened.row_count().await, 1, "the refused registration wrote nothing");

    servers.deregister(first, Some(0), "retired".into(), &context()).await.unwrap();
    servers.register(Uuid::now_v7(), input("weather", "https://93.184.216.34/mcp"), "owner", &context()).await.unwrap();
}

async fn the_same_command_retried_writes_nothing_new(backend: Backend) {
    let opened = backend.open().await;
    let servers = handlers(opened.store(), Keyring::new("k1", [("k1", K1)]).unwrap());
    let (id, ctx) = (Uuid::now_v7(), context());
    let first = servers.register(id, input("echo", "https://93.184.216.34/mcp"), "owner", &ctx).await.unwrap();
    let again = servers.register(id, input("echo", "https://93.184.216.34/mcp"), "owner", &ctx).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(opened.row_count().await, 1);
}

async fn a_stale_expected_revision_is_refused_and_writes_nothing(backend: Backend) {
    let opened = backend.open().await;
    let servers = handlers(opened.store(), Keyring::new("k1", [("k1", K1)]).unwrap());
    let id = Uuid::now_v7();
    servers.register(id, input("files", "https://93.184.216.34/mcp"), "owner", &context()).await.unwrap();
    let update = UpdateInput { description: Some("v2".into()), ..Default::default() };
    let done = servers.update(id, Some(0), update.clone(), &context()).await.unwrap();
    assert_eq!(done.revision, 1);

    let stale = servers
        .update(id, Some(0), UpdateInput { description: Some("v3".into()), ..Default::default() }, &context())
        .await;
    assert!(matches!(stale, Err(CommandError::RevisionMismatch { expected: 0, actual: 1 })), "{stale:?}");
    assert_eq!(opened.row_count().await, 2);

    // The same values again change nothing and append nothing.
    let same = servers.update(id, Some(1), update, &context()).await.unwrap();
    assert_eq!((same.revision, same.position), (1, None));
    assert!(matches!(servers.resume(id, None, &context()).await, Err(CommandError::Domain(ServerError::NotSuspended))));
}

async fn a_host_that_resolves_to_an_internal_address_is_refused_naming_the_rule(backend: Backend) {
    let opened = backend.open().await;
    let servers = handlers(opened.store(), Keyring::new("k1", [("k1", K1)]).unwrap());
    // This machine's own name resolves (through /etc/hosts) to one of its loopback or private addresses.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    let addresses: Vec<std::net::IpAddr> =
        tokio::net::lookup_host((hostname.as_str(), 443)).await.unwrap().map(|a| a.ip()).collect();
    assert!(
        addresses.iter().any(|ip| domain::server::blocked_range(*ip).is_some()),
        "precondition: {hostname} resolves to an internal address ({addresses:?})"
    );

    let refused =
        servers.register(Uuid::now_v7(), input("local", &format!("https://{hostname}/mcp")), "owner", &context()).await;
    let Err(CommandError::Endpoint { field: "url", source: EndpointError::BlockedAddress { range, .. } }) = refused
    else {
        panic!("expected a blocked address, got {refused:?}");
    };
    assert!(matches!(range, BlockedRange::Loopback | BlockedRange::Private | BlockedRange::LinkLocal));
    assert_eq!(opened.row_count().await, 0);
}

async fn secrets_are_sealed_before_the_event_and_stay_readable_after_a_key_rotation(backend: Backend) {
    let opened = backend.open().await;
    let servers = handlers(opened.store(), Keyring::new("k1", [("k1", K1)]).unwrap());
    let id = Uuid::now_v7();
    let mut register = input("vault", "https://93.184.216.34/mcp");
    register.upstream_auth = UpstreamAuthInput::Bearer { token: Secret::new("tok-PLAINTEXT-4711") };
    servers.register(id, register, "owner", &context()).await.unwrap();

    let stored = opened.store().read_all(None, 100).await.unwrap();
    assert_eq!(stored.len(), 1);
    let raw = |e: &eventstore::RecordedEvent| format!("{}{}", e.data, serde_json::to_string(&e.metadata).unwrap());
    assert!(stored.iter().all(|e| !raw(e).contains("PLAINTEXT")), "no event row holds the secret");

    // After the sealing key rotates, the old secret still opens; a new one is sealed with the new key.
    let rotated = handlers(opened.store(), Keyring::new("k2", [("k1", K1), ("k2", K2)]).unwrap());
    let (ServerState::Live(server), _) = rotated.load(id).await.unwrap() else { panic!("live server") };
    let UpstreamAuth::Bearer { token } = &server.upstream_auth else { panic!("bearer") };
    assert_eq!(token.key_id, "k1");
    assert_eq!(rotated.open(id, "bearer", token).unwrap().expose(), "tok-PLAINTEXT-4711");

    let new = UpstreamAuthInput::Bearer { token: Secret::new("tok-NEW-4712") };
    rotated.rotate_credential(id, None, new, &context()).await.unwrap();
    let (ServerState::Live(server), _) = rotated.load(id).await.unwrap() else { panic!("live server") };
    let UpstreamAuth::Bearer { token } = &server.upstream_auth else { panic!("bearer") };
    assert_eq!(token.key_id, "k2");
    assert_eq!(rotated.open(id, "bearer", token).unwrap().expose(), "tok-NEW-4712");
}

async fn concurrent_registrations_of_the_same_names_keep_names_unique_and_answer_each_on_its_own(backend: Backend) {
    let opened = backend.open().await;
    let servers = handlers(opened.store(), Keyring::new("k1", [("k1", K1)]).unwrap());
    // 48 registrations at once, 16 names three times each.
    let attempts: Vec<_> = (0..48)
        .map(|n| {
            let servers = servers.clone();
            tokio::spawn(async move {
                let name = format!("name-{}", n % 16);
                let ctx = context();
                (
                    name.clone(),
                    servers.register(Uuid::now_v7(), input(&name, "https://93.184.216.34/mcp"), "owner", &ctx).await,
                )
            })
        })
        .collect();
    let mut won = std::collections::BTreeMap::new();
    for attempt in attempts {
        let (name, result) = attempt.await.unwrap();
        match result {
            Ok(outcome) => assert!(won.insert(name, outcome).is_none(), "one winner per name"),
            Err(CommandError::NameTaken(taken)) => assert_eq!(taken, format!("io.example/{name}")),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won.len(), 16, "every name registered once");
    assert_eq!(opened.row_count().await, 16, "one event per winner, nothing for the refused");
    let reservations = opened.claims("server-name").await;
    let expected: Vec<(String, String)> = won
        .iter()
        .map(|(name, outcome)| (format!("io.example/{name}"), format!("server-{}", outcome.server_id)))
        .collect();
    assert_eq!(reservations, expected, "each name reserved for its winner");
    for outcome in won.values() {
        let (state, revision) = servers.load(outcome.server_id).await.unwrap();
        assert!(matches!(state, ServerState::Live(_)) && revision == Some(0));
    }
}

on_every_backend!(
    a_name_is_unique_among_live_servers_and_free_again_after_deregistration,
    the_same_command_retried_writes_nothing_new,
    a_stale_expected_revision_is_refused_and_writes_nothing,
    a_host_that_resolves_to_an_internal_address_is_refused_naming_the_rule,
    secrets_are_sealed_before_the_event_and_stay_readable_after_a_key_rotation,
    concurrent_registrations_of_the_same_names_keep_names_unique_and_answer_each_on_its_own,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_applies_registrations_updates_and_a_reused_name_in_one_page() {
    // Given commands written before the registry runs, so that it meets them in one page: registrations,
    // an update between them, a deregistration and a registration reusing the freed name
    let (store, _db) = store().await;
    let servers = handlers(Arc::new(store.clone()), Keyring::new("k1", [("k1", K1)]).unwrap());
    let url = "https://93.184.216.34/mcp";
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = Uuid::now_v7();
        servers.register(id, input(&format!("server-{n}"), url), "owner", &context()).await.unwrap();
        ids.push(id);
    }
    let update = UpdateInput { description: Some("Updated".into()), ..Default::default() };
    servers.update(ids[1], Some(0), update, &context()).await.unwrap();
    servers.register(Uuid::now_v7(), input("server-5", url), "owner", &context()).await.unwrap();
    servers.deregister(ids[0], Some(0), "retired".into(), &context()).await.unwrap();
    let reused = Uuid::now_v7();
    servers.register(reused, input("server-0", url), "owner", &context()).await.unwrap();

    // When the registry projection runs
    let runner = projections::TableRunner::new(
        store.clone(),
        Arc::new(projections::registry::RegistryProjection::default()),
        projections::RunnerOptions::default(),
    );
    let task = tokio::spawn(runner.run());
    let registry = projections::registry::Registry::new(store.pool().clone());
    let entry = tests::eventually(crate::support::DEADLINE, "the registry to apply the page", || async {
        registry.get(reused).await.ok().flatten()
    })
    .await;
    task.abort();

    // Then it holds each live server once, with its latest revision
    assert_eq!(entry.name, "io.example/server-0");
    assert!(registry.get(ids[0]).await.unwrap().is_none(), "the deregistered server is gone");
    let updated = registry.get(ids[1]).await.unwrap().unwrap();
    assert_eq!((updated.description.as_str(), updated.revision), ("Updated", 1));
    let live: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rm_registry.servers").fetch_one(store.pool()).await.unwrap();
    assert_eq!(live, 6);
}
