//! The harness itself: servers start, die and come back as fault tests need.

use async_nats::jetstream;
use sqlx::Connection;
use tests::{NatsServer, PostgresOptions, PostgresServer, eventually_ok};

use crate::support::DEADLINE;

#[tokio::test]
async fn a_killed_postgres_refuses_connections_and_comes_back_with_its_data() {
    let server = PostgresServer::start(PostgresOptions::default()).unwrap();
    let db = server.create_database().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)").execute(&mut conn).await.unwrap();
    // Tests run with fsync and synchronous commit off: flush before the crash so the row is on disk.
    sqlx::query("CHECKPOINT").execute(&mut conn).await.unwrap();

    server.kill().unwrap();
    assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err(), "the old connection is dead");
    assert!(sqlx::PgConnection::connect(&db.url).await.is_err(), "nobody listens");

    server.restart().unwrap();
    let mut conn = eventually_ok(DEADLINE, || sqlx::PgConnection::connect(&db.url)).await.unwrap();
    let n: i32 = sqlx::query_scalar("SELECT n FROM kept").fetch_one(&mut conn).await.unwrap();
    assert_eq!(n, 42);
}

#[tokio::test]
async fn a_dropped_server_leaves_no_process_or_directory_behind() {
    let postgres = PostgresServer::start(PostgresOptions::default()).unwrap();
    let (port, directory) = (postgres.port(), postgres.directory().to_path_buf());
    assert!(directory.join("data").is_dir());
    drop(postgres);
    // `drop` kills the server and waits for its watchdog, which removes the directory.
    assert!(!directory.exists(), "{} is left behind", directory.display());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    let nats = NatsServer::start().unwrap();
    let (port, directory) = (nats.port(), nats.directory().to_path_buf());
    assert!(directory.is_dir());
    drop(nats);
    assert!(!directory.exists(), "{} is left behind", directory.display());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
async fn jetstream_keeps_messages_across_a_nats_kill_and_restart() {
    let nats = NatsServer::start().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: "HARNESS".into(),
        subjects: vec!["harness.>".into()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("harness.one", "kept".into()).await.unwrap().await.unwrap();

    nats.kill().unwrap();
    assert!(!nats.is_running());
    nats.restart().unwrap();

    let client = eventually_ok(DEADLINE, || async_nats::connect(nats.url())).await.unwrap();
    let js = jetstream::new(client);
    let stream = eventually_ok(DEADLINE, || js.get_stream("HARNESS")).await.unwrap();
    assert_eq!(stream.cached_info().state.messages, 1);
    let message = stream.get_raw_message(1).await.unwrap();
    assert_eq!(message.payload.as_ref(), b"kept");
}
