//! The audit trail against a real PostgreSQL: every event type becomes an entry, the chain verifies, a
//! rebuild reproduces it hash for hash, and tampering with the table is named at the first bad entry.

use std::sync::Arc;

use commands::servers::{CommandContext, RegisterInput, ServerCommands, UpdateInput, UpstreamAuthInput};
use commands::{Keyring, Secret, SystemResolver};
use domain::server::{NetworkPolicy, Transport};
use eventstore::{EventStore, PgEventStore};
use projections::audit::{AuditEntry, AuditProjection, AuditViolationKind, verify};
use projections::{RunnerOptions, TableRunner, load_checkpoint, rebuild};
use uuid::Uuid;

use crate::support::{DEADLINE, metadata, store};

const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn context() -> CommandContext {
    CommandContext { command_id: Uuid::now_v7(), metadata: metadata() }
}

/// Writes one event of every type the gateway has, through the real command handlers.
async fn write_every_event_type(store: &PgEventStore) {
    let owner = commands::identity::bootstrap(store, "Ada", &context()).await.unwrap().principal_id;
    let keyring = Arc::new(Keyring::new("k1", [("k1", K1)]).unwrap());
    let servers = ServerCommands::new(
        Arc::new(store.clone()),
        keyring.clone(),
        NetworkPolicy::default(),
        Arc::new(SystemResolver),
    );
    let id = Uuid::now_v7();
    let input = RegisterInput {
        name: "io.example/audited".into(),
        version: None,
        repository: None,
        packages: vec![],
        title: None,
        description: "d".into(),
        tags: vec![],
        transport: Transport::StreamableHttp,
        url: "https://93.184.216.34/mcp".into(),
        upstream_auth: UpstreamAuthInput::Bearer { token: Secret::new("tok-AUDITSECRET-1") },
        access: Default::default(),
    };
    servers.register(id, input, "owner-1", &context()).await.unwrap();
    let update = UpdateInput { description: Some("d2".into()), ..Default::default() };
    servers.update(id, None, update, &context()).await.unwrap();
    let mut access = domain::server::AccessPolicy::default();
    access.roles.insert(domain::Role::Developer);
    servers.update(id, None, UpdateInput { access: Some(access), ..Default::default() }, &context()).await.unwrap();
    let token = UpstreamAuthInput::Bearer { token: Secret::new("tok-AUDITSECRET-2") };
    servers.rotate_credential(id, None, token, &context()).await.unwrap();
    servers.suspend(id, None, "maintenance".into(), &context()).await.unwrap();
    servers.resume(id, None, &context()).await.unwrap();
    servers.deregister(id, None, "retired".into(), &context()).await.unwrap();

    // Principals: a service account's roles, keys and disabling; the owner's second factor.
    use commands::principals::{Credential, KeyInput, PrincipalCommands, RoleRequest};
    use domain::identity::{PrincipalKind, RoleChange};
    let principals = PrincipalCommands::new(Arc::new(store.clone()), keyring);
    let (bob, now) = (Uuid::now_v7(), chrono::Utc::now());
    principals.create(bob, PrincipalKind::Service, "Bob", &context()).await.unwrap();
    let viewer = domain::Role::Viewer;
    let grant = RoleRequest { target: bob, change: RoleChange::Grant, role: viewer, reason: "reads" };
    let acting = Credential { principal: owner, credential: Uuid::now_v7() };
    principals.change_role(acting, grant, now, &context()).await.unwrap();
    let revoke = RoleRequest { change: RoleChange::Revoke, reason: "no more", ..grant };
    principals.change_role(acting, revoke, now, &context()).await.unwrap();
    let enrolment = principals.enroll_totp(acting, None, now, &context()).await.unwrap();
    let code = crate::api_users::totp_code(enrolment.secret_base32.expose());
    principals.verify_totp(acting, &code, now, &context()).await.unwrap();
    let key = principals.issue_key(owner, bob, Uuid::now_v7(), KeyInput::default(), now, &context()).await.unwrap();
    principals.revoke_key(owner, bob, key.key_id, "rotated", &context()).await.unwrap();
    principals.set_disabled(owner, bob, true, "left", &context()).await.unwrap();
    principals.set_disabled(owner, bob, false, "", &context()).await.unwrap();
}

/// Runs the audit projection until it has applied everything committed.
async fn caught_up(store: &PgEventStore) -> tokio::task::JoinHandle<projections::ProjectionError> {
    let runner = TableRunner::new(store.clone(), Arc::new(AuditProjection::default()), RunnerOptions::default());
    let task = tokio::spawn(runner.run());
    let head = store.committed_head().await.unwrap();
    tests::eventually(DEADLINE, "the audit trail to reach the head", || async {
        (load_checkpoint(store.pool(), "audit").await.unwrap() >= head).then_some(())
    })
    .await;
    task
}

/// action, target kind, target name, reason, changes.
type EntrySummary = (String, String, Option<String>, Option<String>, serde_json::Value);

async fn hashes(store: &PgEventStore) -> Vec<Vec<u8>> {
    sqlx::query_scalar("SELECT entry_hash FROM rm_audit.entries ORDER BY seq").fetch_all(store.pool()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_becomes_an_entry_and_the_chain_verifies_and_rebuilds_identically() {
    let (store, _db) = store().await;
    write_every_event_type(&store).await;
    let runner = caught_up(&store).await;

    let rows: Vec<EntrySummary> =
        sqlx::query_as("SELECT action, target_kind, target_name, reason, changes FROM rm_audit.entries ORDER BY seq")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    // The bootstrap is one multi-stream append; it writes its streams in name order, and so $all has them.
    assert_eq!(
        actions,
        [
            "api_key.issued",
            "principal.created",
            "mfa.enrolment_approved",
            "gateway.bootstrapped",
            "owners.changed",
            "server.registered",
            "server.updated",
            "server.access_changed",
            "server.credential_rotated",
            "server.suspended",
            "server.resumed",
            "server.deregistered",
            "principal.created",
            "role.granted",
            "role.revoked",
            "mfa.enrolled",
            "mfa.verified",
            "api_key.issued",
            "api_key.revoked",
            "user.disabled",
            "user.enabled",
        ]
    );
    // Events that do not carry the server's name get it from the trail; reasons are kept, and changes
    // carry the values they replace.
    use serde_json::json;
    let (server, principal) = (&rows[5..12], &rows[12..]);
    assert!(server.iter().all(|r| r.1 == "server" && r.2.as_deref() == Some("io.example/audited")));
    assert_eq!(server[1].4, json!({"description": {"before": "d", "after": "d2"}}));
    assert_eq!(server[2].4["access"]["before"]["roles"], json!([]));
    assert_eq!(server[2].4["access"]["after"]["roles"], json!(["developer"]));
    assert_eq!(server[3].4["auth_mode"], json!({"before": "bearer", "after": "bearer"}));
    let credential = &server[3].4["credential"];
    assert!(credential["before"].as_str().unwrap().starts_with("hmac-sha256:k1:"), "{credential}");
    assert_ne!(credential["before"], credential["after"], "another secret: another keyed hash");
    assert_eq!(server[4].3.as_deref(), Some("maintenance"));
    assert_eq!(server[4].4, json!({"status": {"before": "active", "after": "suspended"}}));
    assert_eq!(server[5].4, json!({"status": {"before": "suspended", "after": "active"}}));
    assert_eq!(server[6].4, json!({"status": {"before": "active", "after": "deregistered"}}));
    // A principal's role changes and disabling carry their before and after; its name comes from the trail.
    assert_eq!(principal[1].2.as_deref(), Some("Bob"));
    assert_eq!(principal[1].3.as_deref(), Some("reads"));
    assert_eq!(principal[1].4, json!({"roles": {"before": [], "after": ["viewer"]}, "source": "admin"}));
    assert_eq!(principal[2].4, json!({"roles": {"before": ["viewer"], "after": []}, "source": "admin"}));
    assert_eq!(principal[3].2.as_deref(), Some("Ada"), "the owner's second factor, under the owner's name");
    assert_eq!(principal[7].4, json!({"status": {"before": "enabled", "after": "disabled"}}));
    assert_eq!(principal[8].4, json!({"status": {"before": "disabled", "after": "enabled"}}));
    let dump: Vec<String> =
        sqlx::query_scalar("SELECT e::text FROM rm_audit.entries e").fetch_all(store.pool()).await.unwrap();
    assert!(
        dump.iter().all(|row| !row.contains("AUDITSECRET") && !row.contains("ciphertext")),
        "no secret in the trail"
    );

    let report = verify(store.pool()).await.unwrap();
    assert_eq!((report.checked, report.violation), (21, None));

    let before = hashes(&store).await;
    runner.abort();
    let _ = runner.await;
    rebuild(&store, &AuditProjection::default(), RunnerOptions::default()).await.unwrap();
    assert_eq!(hashes(&store).await, before, "a rebuild from zero reproduces every hash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_the_trail_is_named_at_the_first_bad_entry() {
    let (store, _db) = store().await;
    write_every_event_type(&store).await;
    let runner = caught_up(&store).await;
    runner.abort();
    let _ = runner.await;
    let store = &store;
    let restore =
        || async move { rebuild(store, &AuditProjection::default(), RunnerOptions::default()).await.unwrap() };
    let exec = |sql: &'static str| async move { sqlx::query(sql).execute(store.pool()).await.unwrap() };

    // A modified entry.
    exec("UPDATE rm_audit.entries SET reason = 'nothing to see' WHERE seq = 8").await;
    let violation = verify(store.pool()).await.unwrap().violation.unwrap();
    assert_eq!((violation.seq, violation.kind), (8, AuditViolationKind::Modified));
    restore().await;
    assert_eq!(verify(store.pool()).await.unwrap().violation, None);

    // A deleted entry.
    exec("DELETE FROM rm_audit.entries WHERE seq = 5").await;
    let violation = verify(store.pool()).await.unwrap().violation.unwrap();
    assert_eq!((violation.seq, violation.kind), (5, AuditViolationKind::Missing));
    restore().await;

    // Two entries swapped (numbers exchanged).
    exec("UPDATE rm_audit.entries SET seq = -6 WHERE seq = 6").await;
    exec("UPDATE rm_audit.entries SET seq = 6 WHERE seq = 7").await;
    exec("UPDATE rm_audit.entries SET seq = 7 WHERE seq = -6").await;
    let violation = verify(store.pool()).await.unwrap().violation.unwrap();
    assert_eq!(violation.seq, 6);
    assert!(matches!(violation.kind, AuditViolationKind::BrokenLink | AuditViolationKind::Modified), "{violation:?}");
    restore().await;

    // A forged entry appended with a correct link: only the store shows it happened nowhere.
    let (seq, last): (i64, Vec<u8>) =
        sqlx::query_as("SELECT seq, entry_hash FROM rm_audit.entries ORDER BY seq DESC LIMIT 1")
            .fetch_one(store.pool())
            .await
            .unwrap();
    let forged = AuditEntry {
        seq: seq + 1,
        tx: i64::MAX - 1,
        gp: 1,
        event_id: Uuid::now_v7(),
        occurred_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        actor_id: "mallory".into(),
        actor_name: None,
        actor_kind: "user".into(),
        action: "server.registered".into(),
        target_kind: "server".into(),
        target_id: Uuid::now_v7().to_string(),
        target_name: Some("backdoor".into()),
        outcome: "success".into(),
        source_ip: None,
        user_agent: None,
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        reason: None,
        changes: serde_json::json!({}),
    };
    let link = forged.chain_hash(&<[u8; 32]>::try_from(last.as_slice()).unwrap());
    sqlx::query(
        "INSERT INTO rm_audit.entries (seq, tx, gp, event_id, occurred_at, actor_id, actor_kind, action, target_kind,
                                       target_id, target_name, outcome, correlation_id, changes, prev_hash, entry_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(forged.seq)
    .bind(forged.tx)
    .bind(forged.gp)
    .bind(forged.event_id)
    .bind(forged.occurred_at)
    .bind(&forged.actor_id)
    .bind(&forged.actor_kind)
    .bind(&forged.action)
    .bind(&forged.target_kind)
    .bind(&forged.target_id)
    .bind(&forged.target_name)
    .bind(&forged.outcome)
    .bind(forged.correlation_id)
    .bind(&forged.changes)
    .bind(last.as_slice())
    .bind(link.as_slice())
    .execute(store.pool())
    .await
    .unwrap();
    let violation = verify(store.pool()).await.unwrap().violation.unwrap();
    assert_eq!((violation.seq, violation.kind), (seq + 1, AuditViolationKind::Unexpected));
}

const SIGNING: &str = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_checkpoints_verify_with_the_published_keys_and_a_removed_one_is_named() {
    use projections::audit::{AuditKeys, CheckpointViolationKind, verify_checkpoints, write_checkpoint};
    let (store, _db) = store().await;
    let keys = AuditKeys::new(&[("a1".into(), SIGNING.into())]).unwrap();
    write_every_event_type(&store).await;
    let runner = caught_up(&store).await;
    assert_eq!(write_checkpoint(store.pool(), &keys).await.unwrap(), Some(21));
    assert_eq!(write_checkpoint(store.pool(), &keys).await.unwrap(), None, "nothing new to sign");
    write_every_event_type_again(&store).await;
    runner.abort();
    let _ = runner.await;
    let runner = caught_up(&store).await;
    let second = write_checkpoint(store.pool(), &keys).await.unwrap().unwrap();
    assert!(second > 21);
    write_every_event_type_again(&store).await;
    runner.abort();
    let _ = runner.await;
    let runner = caught_up(&store).await;
    write_checkpoint(store.pool(), &keys).await.unwrap().unwrap();
    runner.abort();

    // Verified with the published public keys only, as an auditor would.
    let published = AuditKeys::verifying(&keys.public_keys()).unwrap();
    assert_eq!(verify_checkpoints(store.pool(), &published).await.unwrap(), (3, None));
    // A rebuild keeps every checkpoint valid: it reproduces the hashes they signed.
    rebuild(&store, &AuditProjection::default(), RunnerOptions::default()).await.unwrap();
    assert_eq!(verify_checkpoints(store.pool(), &published).await.unwrap(), (3, None));

    // A removed checkpoint is named at the next one.
    sqlx::query("DELETE FROM audit_sig.checkpoints WHERE seq = $1").bind(second).execute(store.pool()).await.unwrap();
    let (_, violation) = verify_checkpoints(store.pool(), &published).await.unwrap();
    let violation = violation.unwrap();
    assert_eq!(violation.kind, CheckpointViolationKind::Unlinked);
    assert!(violation.seq > second);

    // A key the auditor does not know signs nothing valid.
    let stranger = AuditKeys::new(&[("a1".into(), K1.into())]).unwrap();
    let (_, violation) =
        verify_checkpoints(store.pool(), &AuditKeys::verifying(&stranger.public_keys()).unwrap()).await.unwrap();
    assert_eq!(violation.unwrap().kind, CheckpointViolationKind::BadSignature);
}

/// More events of the same kinds, for a trail that grows between checkpoints.
async fn write_every_event_type_again(store: &PgEventStore) {
    let servers = ServerCommands::new(
        Arc::new(store.clone()),
        Arc::new(Keyring::new("k1", [("k1", K1)]).unwrap()),
        NetworkPolicy::default(),
        Arc::new(SystemResolver),
    );
    let input = RegisterInput {
        name: format!("io.example/more-{}", Uuid::now_v7().simple()),
        version: None,
        repository: None,
        packages: vec![],
        title: None,
        description: "d".into(),
        tags: vec![],
        transport: Transport::Sse,
        url: "https://93.184.216.34/sse".into(),
        upstream_auth: UpstreamAuthInput::None,
        access: Default::default(),
    };
    servers.register(Uuid::now_v7(), input, "owner-2", &context()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_and_their_combination_and_pagination_stable_under_concurrent_appends() {
    use projections::audit::{AuditFilter, query};
    let (store, _db) = store().await;
    write_every_event_type(&store).await;
    let runner = TableRunner::new(store.clone(), Arc::new(AuditProjection::default()), RunnerOptions::default());
    let task = tokio::spawn(runner.run());
    let wait = |store: PgEventStore| async move {
        let head = store.committed_head().await.unwrap();
        tests::eventually(DEADLINE, "the audit trail to reach the head", || async {
            (load_checkpoint(store.pool(), "audit").await.unwrap() >= head).then_some(())
        })
        .await;
    };
    wait(store.clone()).await;
    let all = |filter: AuditFilter| {
        let pool = store.pool().clone();
        async move { query(&pool, &AuditFilter { limit: 500, ..filter }).await.unwrap().0 }
    };
    let everything = all(AuditFilter::default()).await;
    let sample = everything.iter().find(|e| e.action == "server.suspended").unwrap().clone();

    // Each filter alone selects exactly the entries it names.
    let by_actor = all(AuditFilter { actor: Some(sample.actor_id.clone()), ..Default::default() }).await;
    assert!(by_actor.iter().all(|e| e.actor_id == sample.actor_id) && !by_actor.is_empty());
    let by_correlation = all(AuditFilter { correlation_id: Some(sample.correlation_id), ..Default::default() }).await;
    assert_eq!(by_correlation.iter().map(|e| e.seq).collect::<Vec<_>>(), [sample.seq]);
    let window = AuditFilter {
        from: Some(sample.occurred_at),
        to: Some(sample.occurred_at + chrono::Duration::microseconds(1)),
        ..Default::default()
    };
    assert!(all(window).await.iter().any(|e| e.seq == sample.seq));
    let later =
        all(AuditFilter { from: Some(sample.occurred_at + chrono::Duration::days(1)), ..Default::default() }).await;
    assert!(later.is_empty());
    let by_outcome = all(AuditFilter { outcome: Some("denied".into()), ..Default::default() }).await;
    assert!(by_outcome.is_empty());
    // Combined: AND of all.
    let combined = all(AuditFilter {
        actor: Some(sample.actor_id.clone()),
        action_prefix: Some("server.".into()),
        target_kind: Some("server".into()),
        target_id: Some(sample.target_id.clone()),
        outcome: Some("success".into()),
        correlation_id: Some(sample.correlation_id),
        ..Default::default()
    })
    .await;
    assert_eq!(combined.iter().map(|e| e.seq).collect::<Vec<_>>(), [sample.seq]);
    let contradictory = all(AuditFilter {
        action_prefix: Some("principal.".into()),
        target_id: Some(sample.target_id.clone()),
        ..Default::default()
    })
    .await;
    assert!(contradictory.is_empty());

    // Pages of 3 while events keep arriving: every entry seen once, in order, none skipped.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                write_every_event_type_again(&store).await;
            }
        })
    };
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let (page, next) = query(store.pool(), &AuditFilter { after, limit: 3, ..Default::default() }).await.unwrap();
        seen.extend(page.iter().map(|e| e.seq));
        after = seen.last().copied().or(after);
        if next.is_none() && writer.is_finished() {
            break;
        }
    }
    writer.await.unwrap();
    wait(store.clone()).await;
    loop {
        let (page, next) = query(store.pool(), &AuditFilter { after, limit: 3, ..Default::default() }).await.unwrap();
        seen.extend(page.iter().map(|e| e.seq));
        after = seen.last().copied().or(after);
        if next.is_none() {
            break;
        }
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_audit.entries").fetch_one(store.pool()).await.unwrap();
    assert_eq!(seen, (1..=total).collect::<Vec<_>>(), "each entry once, in order");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_archives_old_entries_to_a_file_that_verifies_and_the_rest_of_the_trail_still_verifies() {
    use api::audit_prune::{PruneError, PruneOutcome, prune_to_archive};
    use projections::audit::{AuditKeys, verify_checkpoints, verify_export, write_checkpoint};
    let (store, _db) = store().await;
    let keys = Arc::new(AuditKeys::new(&[("a1".into(), SIGNING.into())]).unwrap());
    let published = AuditKeys::verifying(&keys.public_keys()).unwrap();
    let servers = ServerCommands::new(
        Arc::new(store.clone()),
        Arc::new(Keyring::new("k1", [("k1", K1)]).unwrap()),
        NetworkPolicy::default(),
        Arc::new(SystemResolver),
    );
    // Given entries before a cut-off, among them a server's registration, signed by a checkpoint
    write_every_event_type(&store).await;
    let early = Uuid::now_v7();
    let input = RegisterInput {
        name: "io.example/early".into(),
        version: None,
        repository: None,
        packages: vec![],
        title: None,
        description: "d".into(),
        tags: vec![],
        transport: Transport::StreamableHttp,
        url: "https://93.184.216.34/mcp".into(),
        upstream_auth: UpstreamAuthInput::None,
        access: Default::default(),
    };
    servers.register(early, input, "owner-1", &context()).await.unwrap();
    let runner = caught_up(&store).await;
    let signed = write_checkpoint(store.pool(), &keys).await.unwrap().unwrap();
    runner.abort();
    let _ = runner.await;
    let cutoff = chrono::Utc::now();
    // And entries after it, none of that server
    write_every_event_type_again(&store).await;
    let runner = caught_up(&store).await;
    let before_prune = hashes(&store).await;

    // When the entries before the cut-off are pruned to an archive
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("audit-archive.jsonl");
    let outcome = prune_to_archive(
        &projections::audit::AuditSource::Postgres(store.pool().clone()),
        keys.clone(),
        cutoff,
        &archive,
    )
    .await
    .unwrap();

    // Then exactly the entries up to the signed checkpoint left the table, into a file that verifies offline
    // The recorded digest is the archive file's, in the outcome and in audit_sig.prunes.
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(&archive).unwrap());
    assert_eq!(outcome, PruneOutcome::Pruned { first: 1, last: signed, sha256: hex::encode(digest) });
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT archive_sha256 FROM audit_sig.prunes").fetch_one(store.pool()).await.unwrap();
    assert_eq!(stored, digest.as_slice());
    let oldest: i64 =
        sqlx::query_scalar("SELECT min(seq) FROM rm_audit.entries").fetch_one(store.pool()).await.unwrap();
    assert_eq!(oldest, signed + 1);
    let report = verify_export(std::io::BufReader::new(std::fs::File::open(&archive).unwrap()), &published).unwrap();
    assert_eq!((report.problem, report.trailer, report.entries), (None, true, signed as u64));
    // And the rest of the trail verifies from the recorded link, checkpoints included
    let audit = verify(store.pool()).await.unwrap();
    assert_eq!((audit.violation, audit.checked), (None, before_prune.len() as u64 - signed as u64));
    write_checkpoint(store.pool(), &keys).await.unwrap().unwrap();
    assert_eq!(verify_checkpoints(store.pool(), &published).await.unwrap(), (2, None));
    // And a change after the prune still names the server whose registration was pruned
    let update = UpdateInput { description: Some("after the prune".into()), ..Default::default() };
    servers.update(early, None, update, &context()).await.unwrap();
    let head = store.committed_head().await.unwrap();
    tests::eventually(DEADLINE, "the audit trail to reach the head", || async {
        (load_checkpoint(store.pool(), "audit").await.unwrap() >= head).then_some(())
    })
    .await;
    let named: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT target_name FROM rm_audit.entries WHERE target_id = $1 AND action = 'server.updated' ORDER BY seq",
    )
    .bind(early.to_string())
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(named, [Some("io.example/early".to_owned())]);
    // And an archive is never overwritten
    let again = prune_to_archive(
        &projections::audit::AuditSource::Postgres(store.pool().clone()),
        keys.clone(),
        chrono::Utc::now(),
        &archive,
    )
    .await;
    assert!(matches!(again, Err(PruneError::ArchiveExists(_))), "{again:?}");

    // And a rebuild from the events restores every entry, hash for hash
    runner.abort();
    let _ = runner.await;
    let before_rebuild = hashes(&store).await;
    rebuild(&store, &AuditProjection::default(), RunnerOptions::default()).await.unwrap();
    let rebuilt = hashes(&store).await;
    assert_eq!(rebuilt[..before_prune.len()], before_prune[..]);
    assert_eq!(rebuilt[signed as usize..], before_rebuild[..]);
    assert_eq!(verify(store.pool()).await.unwrap().violation, None);

    // And a deleted entry after the prune point is still named
    sqlx::query("DELETE FROM rm_audit.entries WHERE seq <= $1").bind(signed + 1).execute(store.pool()).await.unwrap();
    let violation = verify(store.pool()).await.unwrap().violation.unwrap();
    assert_eq!((violation.kind, violation.seq), (AuditViolationKind::Missing, signed + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_of_an_older_chain_format_keep_their_place_and_cannot_be_passed_off_as_another() {
    use base64::Engine;
    use ed25519_dalek::Signer;
    use projections::audit::{AuditKeys, CHAIN_VERSION, CheckpointViolationKind, verify_checkpoints, write_checkpoint};
    let (store, _db) = store().await;
    let keys = AuditKeys::new(&[("a1".into(), SIGNING.into())]).unwrap();
    let published = AuditKeys::verifying(&keys.public_keys()).unwrap();
    write_every_event_type(&store).await;
    let runner = caught_up(&store).await;
    // Given a checkpoint signed in chain format 1, over an entry that hashed differently in that format
    let seed: [u8; 32] = base64::engine::general_purpose::STANDARD.decode(SIGNING).unwrap().try_into().unwrap();
    let old_hash = [7u8; 32];
    let message = format!("mcp-gateway audit checkpoint v1\n5\n{}\n", hex::encode(old_hash));
    let signature = ed25519_dalek::SigningKey::from_bytes(&seed).sign(message.as_bytes());
    sqlx::query(
        "INSERT INTO audit_sig.checkpoints (seq, entry_hash, prev_signature, key_id, signature, chain_version)
         VALUES (5, $1, '', 'a1', $2, 1)",
    )
    .bind(old_hash.as_slice())
    .bind(signature.to_bytes().as_slice())
    .execute(store.pool())
    .await
    .unwrap();
    // And one in the current format after it
    write_checkpoint(store.pool(), &keys).await.unwrap().unwrap();
    runner.abort();

    // Then both verify: the old one by its signature and its place, the new one also against its entry
    const { assert!(CHAIN_VERSION > 1) };
    assert_eq!(verify_checkpoints(store.pool(), &published).await.unwrap(), (2, None));

    // And a current checkpoint relabelled as the old format (whose entries are not compared) is refused
    sqlx::query("UPDATE audit_sig.checkpoints SET chain_version = 1 WHERE seq <> 5")
        .execute(store.pool())
        .await
        .unwrap();
    let violation = verify_checkpoints(store.pool(), &published).await.unwrap().1.unwrap();
    assert_eq!(violation.kind, CheckpointViolationKind::BadSignature);
    // And so is an old one relabelled as current
    sqlx::query("UPDATE audit_sig.checkpoints SET chain_version = $1")
        .bind(CHAIN_VERSION)
        .execute(store.pool())
        .await
        .unwrap();
    let violation = verify_checkpoints(store.pool(), &published).await.unwrap().1.unwrap();
    assert_eq!((violation.kind, violation.seq), (CheckpointViolationKind::BadSignature, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_a_trail_of_several_pages_and_names_tampering_on_any_page() {
    use eventstore::{EventData, ExpectedRevision, StreamName};
    // Given 26,000 entries (verify reads 10,000 per page, the next page while it hashes one)
    let (store, _db) = store().await;
    for n in 0..260u32 {
        let id = Uuid::now_v7();
        let registered = format!(
            r#"{{"server_id":"{id}","name":"paged-{n}","description":"d","tags":[],"transport":"sse","endpoint":"https://example.com/mcp","upstream_auth":{{"mode":"none"}},"access":{{}},"owner":"user-1"}}"#
        );
        let mut events = vec![EventData {
            event_id: Uuid::now_v7(),
            event_type: "ServerRegistered".into(),
            schema_version: 1,
            data: registered,
            metadata: metadata(),
        }];
        events.extend((1..100).map(|i| EventData {
            event_id: Uuid::now_v7(),
            event_type: "ServerUpdated".into(),
            schema_version: 1,
            data: format!(r#"{{"description":"d{i}"}}"#),
            metadata: metadata(),
        }));
        let stream = StreamName::from_parts("server", id).unwrap();
        store.append(&stream, ExpectedRevision::NoStream, events).await.unwrap();
    }
    let runner = caught_up(&store).await;
    runner.abort();
    let _ = runner.await;
    let report = verify(store.pool()).await.unwrap();
    assert_eq!((report.checked, report.violation), (26_000, None));

    // A modified entry on the third page, then a deleted one at the start of the third page
    sqlx::query("UPDATE rm_audit.entries SET reason = 'edited' WHERE seq = 23456").execute(store.pool()).await.unwrap();
    let violation = verify(store.pool()).await.unwrap().violation.unwrap();
    assert_eq!((violation.seq, violation.kind), (23456, AuditViolationKind::Modified));
    sqlx::query("DELETE FROM rm_audit.entries WHERE seq = 20001").execute(store.pool()).await.unwrap();
    let violation = verify(store.pool()).await.unwrap().violation.unwrap();
    assert_eq!((violation.seq, violation.kind), (20001, AuditViolationKind::Missing));
}

/// Sequential scans of the audit tables so far, as the statistics collector has them.
async fn audit_seq_scans(pool: &sqlx::PgPool) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT relname::text, seq_scan FROM pg_stat_user_tables WHERE schemaname = 'rm_audit' ORDER BY relname",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Runs `work` on a connection named `name`, closes it and waits until its backend is gone (and so has
/// reported its statistics).
async fn on_own_backend<T>(
    db: &tests::TestDatabase,
    name: &str,
    work: impl for<'c> FnOnce(&'c mut sqlx::PgConnection) -> futures_util::future::BoxFuture<'c, T>,
) -> T {
    use sqlx::Connection;
    use sqlx::postgres::PgConnectOptions;
    let options = db.url.parse::<PgConnectOptions>().unwrap().application_name(name);
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let result = work(&mut conn).await;
    conn.close().await.unwrap();
    wait_for_backends_to_exit(db, name).await;
    result
}

async fn wait_for_backends_to_exit(db: &tests::TestDatabase, name: &str) {
    let observer = db.pool(1).await.unwrap();
    tests::eventually(DEADLINE, "the backends to exit", || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(name)
            .fetch_one(&observer)
            .await
            .unwrap();
        (left == 0).then_some(())
    })
    .await;
}

/// Runs the audit projection to the head on connections of its own, and waits until they are gone: a
/// backend reports its statistics (the scans it made) before it leaves `pg_stat_activity`.
async fn catch_up_on_own_backends(db: &tests::TestDatabase, name: &str) {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let options = db.url.parse::<PgConnectOptions>().unwrap().application_name(name);
    let pool = PgPoolOptions::new().max_connections(4).connect_with(options).await.unwrap();
    let store = PgEventStore::new(pool.clone(), Default::default());
    let runner = caught_up(&store).await;
    runner.abort();
    let _ = runner.await;
    drop(store);
    pool.close().await;
    wait_for_backends_to_exit(db, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_keeps_to_its_indexes_while_its_tables_outgrow_their_statistics() {
    use eventstore::{EventData, ExpectedRevision, StreamName};
    // Given an audit trail of a few entries, analyzed while it is that small
    let (store, db) = store().await;
    write_every_event_type(&store).await;
    catch_up_on_own_backends(&db, "audit-small").await;
    // The analysis and the count (on a table this small, itself a sequential scan) on a connection of
    // their own, gone before the scans are counted: a backend may report its scans up to seconds later,
    // but always before it exits. This test counts only its runner's scans, whatever else runs.
    let small: i64 = on_own_backend(&db, "audit-setup", |conn| {
        Box::pin(async move {
            sqlx::query("ANALYZE rm_audit.entries, rm_audit.target_names").execute(&mut *conn).await.unwrap();
            sqlx::query_scalar("SELECT count(*) FROM rm_audit.entries").fetch_one(&mut *conn).await.unwrap()
        })
    })
    .await;
    let before = audit_seq_scans(store.pool()).await;

    // When 3,000 more events arrive, applied in batches planned from those statistics
    for n in 0..30u32 {
        let id = Uuid::now_v7();
        let registered = format!(
            r#"{{"server_id":"{id}","name":"grown-{n}","description":"d","tags":[],"transport":"sse","endpoint":"https://example.com/mcp","upstream_auth":{{"mode":"none"}},"access":{{}},"owner":"user-1"}}"#
        );
        let events = std::iter::once(("ServerRegistered", registered))
            .chain((1..100).map(|i| ("ServerUpdated", format!(r#"{{"description":"d{i}"}}"#))))
            .map(|(event_type, data)| EventData {
                event_id: Uuid::now_v7(),
                event_type: event_type.into(),
                schema_version: 1,
                data,
                metadata: metadata(),
            })
            .collect();
        let stream = StreamName::from_parts("server", id).unwrap();
        store.append(&stream, ExpectedRevision::NoStream, events).await.unwrap();
    }
    catch_up_on_own_backends(&db, "audit-grown").await;

    // Then no batch scanned an audit table whole: the chain head, the names and the inserts went by index
    let after = audit_seq_scans(store.pool()).await;
    assert_eq!(after, before, "sequential scans of rm_audit tables while the trail grew");
    let report = verify(store.pool()).await.unwrap();
    assert_eq!((report.checked, report.violation.is_none()), (small as u64 + 3_000, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_log_makes_the_same_trail_on_sqlite_whose_chain_verifies_and_names_tampering() {
    use eventstore::{SqliteEventStore, SqliteEventStoreOptions};
    use projections::audit::{SqliteAuditProjection, SqliteAuditTrail};
    // A Postgres trail of every event type, and the same log copied into SQLite
    let (store, _db) = store().await;
    write_every_event_type(&store).await;
    let task = caught_up(&store).await;
    task.abort();
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        SqliteEventStore::open(&dir.path().join("events.db"), SqliteEventStoreOptions::default()).await.unwrap();
    eventstore::copy_events(&store, &sqlite, |_| {}).await.unwrap();

    // The SQLite trail, folded from the copy
    let runner = projections::SqliteRunner::new(
        sqlite.clone(),
        Arc::new(SqliteAuditProjection::default()),
        RunnerOptions::default(),
    );
    let task = tokio::spawn(runner.run());
    let head = sqlite.committed_head().await.unwrap();
    tests::eventually(DEADLINE, "the SQLite trail to reach the head", || async {
        (projections::load_sqlite_checkpoint(sqlite.pool(), "audit").await.ok()? >= head).then_some(())
    })
    .await;
    task.abort();

    // Entry for entry the same, but for the positions (each store numbers its own)
    let trail = SqliteAuditTrail::new(sqlite.pool().clone());
    let without_positions = |mut e: AuditEntry| {
        (e.tx, e.gp) = (0, 0);
        e
    };
    let theirs: Vec<AuditEntry> = sqlx::query_as("SELECT * FROM rm_audit.entries ORDER BY seq")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .into_iter()
        .map(without_positions)
        .collect();
    let ours: Vec<AuditEntry> = trail.entries(0, 10_000).await.unwrap().into_iter().map(without_positions).collect();
    assert!(theirs.len() >= 20, "{}", theirs.len());
    assert_eq!(ours, theirs);
    let intact = trail.verify().await.unwrap();
    assert_eq!((intact.checked, intact.violation), (theirs.len() as u64, None));

    // An entry changed behind the trail's back is named; put back, the trail verifies again
    let original: Option<String> =
        sqlx::query_scalar("SELECT reason FROM audit_entries WHERE seq = 3").fetch_one(sqlite.pool()).await.unwrap();
    let set_reason = |reason: Option<String>| {
        sqlx::query("UPDATE audit_entries SET reason = ? WHERE seq = 3").bind(reason).execute(sqlite.pool())
    };
    set_reason(Some("nothing happened".into())).await.unwrap();
    let report = trail.verify().await.unwrap();
    let violation = report.violation.expect("the edited entry is named");
    assert_eq!((report.checked, violation.seq, violation.kind), (2, 3, AuditViolationKind::Modified));
    set_reason(original).await.unwrap();
    assert_eq!(trail.verify().await.unwrap().violation, None);
    // An entry removed: the numbering skips at its number
    sqlx::query("DELETE FROM audit_entries WHERE seq = 5").execute(sqlite.pool()).await.unwrap();
    let violation = trail.verify().await.unwrap().violation.expect("the removed entry is named");
    assert_eq!((violation.seq, violation.kind), (5, AuditViolationKind::Missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_trail_prunes_to_an_archive_that_verifies_and_the_rest_still_verifies() {
    use api::audit_prune::{PruneOutcome, prune_to_archive};
    use eventstore::{SqliteEventStore, SqliteEventStoreOptions};
    use projections::audit::{AuditKeys, AuditSource, SqliteAuditProjection, SqliteAuditTrail, verify_export};
    // A SQLite trail of every event type (copied from Postgres), signed by a checkpoint
    let (store, _db) = store().await;
    write_every_event_type(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        SqliteEventStore::open(&dir.path().join("events.db"), SqliteEventStoreOptions::default()).await.unwrap();
    eventstore::copy_events(&store, &sqlite, |_| {}).await.unwrap();
    let runner = projections::SqliteRunner::new(
        sqlite.clone(),
        Arc::new(SqliteAuditProjection::default()),
        RunnerOptions::default(),
    );
    let task = tokio::spawn(runner.run());
    let caught_up = || async {
        let head = sqlite.committed_head().await.unwrap();
        tests::eventually(DEADLINE, "the SQLite trail to reach the head", || async {
            (projections::load_sqlite_checkpoint(sqlite.pool(), "audit").await.ok()? >= head).then_some(())
        })
        .await;
    };
    caught_up().await;
    let keys = Arc::new(AuditKeys::new(&[("a1".into(), SIGNING.into())]).unwrap());
    let published = AuditKeys::verifying(&keys.public_keys()).unwrap();
    let trail = AuditSource::Sqlite(SqliteAuditTrail::new(sqlite.pool().clone()));
    let signed = trail.write_checkpoint(&keys).await.unwrap().unwrap();
    let cutoff = chrono::Utc::now();
    // And entries after the cut-off
    let servers = ServerCommands::new(
        Arc::new(sqlite.clone()),
        Arc::new(Keyring::new("k1", [("k1", K1)]).unwrap()),
        NetworkPolicy::default(),
        Arc::new(SystemResolver),
    );
    for name in ["later-1", "later-2"] {
        let input = RegisterInput {
            name: format!("io.example/{name}"),
            version: None,
            repository: None,
            packages: vec![],
            title: None,
            description: "d".into(),
            tags: vec![],
            transport: Transport::StreamableHttp,
            url: "https://93.184.216.34/mcp".into(),
            upstream_auth: UpstreamAuthInput::None,
            access: Default::default(),
        };
        servers.register(Uuid::now_v7(), input, "owner-1", &context()).await.unwrap();
    }
    caught_up().await;
    task.abort();

    // When the entries before the cut-off are pruned
    let archive = dir.path().join("archive.jsonl");
    let outcome = prune_to_archive(&trail, keys.clone(), cutoff, &archive).await.unwrap();

    // Then they left the table into an archive that verifies offline, and the rest verifies from the mark
    let PruneOutcome::Pruned { first, last, .. } = outcome else { panic!("nothing pruned") };
    assert_eq!((first, last), (1, signed));
    let report = verify_export(std::io::BufReader::new(std::fs::File::open(&archive).unwrap()), &published).unwrap();
    assert_eq!((report.problem, report.trailer, report.entries), (None, true, signed as u64));
    let rest = trail.verify().await.unwrap();
    assert_eq!((rest.violation, rest.checked), (None, 2));
    assert_eq!(trail.verify_checkpoints(&published).await.unwrap(), (1, None));
}
