//! Properties of the Server aggregate over random command sequences: the invariants hold after every
//! step, every event survives its JSON form, and replaying the emitted events rebuilds the same state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::server::{
    AccessPolicy, Description, Endpoint, NetworkPolicy, Packages, RegisterServer, ServerCommand, ServerEvent,
    ServerName, ServerState, ServerStatus, ServerVersion, Tags, Title, Transport, UpdateServer, UpstreamAuth, decide,
    evolve,
};
use domain::{Role, Sealed};
use proptest::prelude::*;
use uuid::Uuid;

fn sealed() -> impl Strategy<Value = Sealed> {
    ("k[1-3]", "[a-zA-Z0-9]{4,8}").prop_map(|(key_id, c)| Sealed {
        key_id,
        nonce: "bm9uY2U=".into(),
        ciphertext: c,
        fingerprint: None,
    })
}

fn upstream_auth() -> impl Strategy<Value = UpstreamAuth> {
    prop_oneof![
        Just(UpstreamAuth::None),
        sealed().prop_map(|token| UpstreamAuth::Bearer { token }),
        (prop_oneof![Just("X-API-Key"), Just("Host")], sealed())
            .prop_map(|(name, value)| UpstreamAuth::Header { name: name.into(), value }),
        (sealed(), proptest::collection::vec("[a-z:]{1,8}", 0..3)).prop_map(|(client_secret, scopes)| {
            UpstreamAuth::OauthClientCredentials {
                token_url: Endpoint::parse("https://idp.example.com/token", &NetworkPolicy::default()).unwrap(),
                client_id: "gateway".into(),
                client_secret,
                scopes,
            }
        }),
    ]
}

fn access() -> impl Strategy<Value = AccessPolicy> {
    (proptest::sample::subsequence(Role::ALL.to_vec(), 0..3), proptest::collection::btree_set("u[0-9]", 0..3))
        .prop_map(|(roles, users)| AccessPolicy { roles: roles.into_iter().collect(), users, ..Default::default() })
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    "[a-c]".prop_map(|host| {
        Endpoint::parse(&format!("https://{host}.example.com/mcp"), &NetworkPolicy::default()).unwrap()
    })
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![Just(Transport::StreamableHttp), Just(Transport::Sse)]
}

fn reason() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), Just("maintenance".to_owned()), Just("x".repeat(501)), "[a-z ]{1,20}"]
}

fn command() -> impl Strategy<Value = ServerCommand> {
    prop_oneof![
        (
            prop_oneof![Just(Uuid::from_u128(1)), Just(Uuid::from_u128(2))],
            "[a-z]{1,6}",
            proptest::option::of("[A-Za-z ]{1,10}"),
            endpoint(),
            transport(),
            upstream_auth(),
            access()
        )
            .prop_map(|(server_id, name, title, endpoint, transport, upstream_auth, access)| {
                ServerCommand::Register(Box::new(RegisterServer {
                    server_id,
                    name: ServerName::parse(format!("io.example/{name}")).unwrap(),
                    version: ServerVersion::parse("1.0.0").unwrap(),
                    title: title.and_then(|t| Title::parse(&t).ok()),
                    description: Description::parse("a server").unwrap(),
                    tags: Tags::parse(["tools"]).unwrap(),
                    repository: None,
                    packages: Packages::default(),
                    transport,
                    endpoint,
                    upstream_auth,
                    access,
                    owner: "owner-1".into(),
                }))
            }),
        (
            proptest::option::of("[A-Z][a-z]{1,5}"),
            proptest::option::of("[a-z]{1,10}"),
            proptest::option::of(proptest::collection::vec("[a-c]", 0..3)),
            proptest::option::of(transport()),
            proptest::option::of(endpoint()),
            proptest::option::of(prop_oneof![Just("0.9.0"), Just("1.0.0"), Just("1.1.0"), Just("2.0.0-rc.1")])
        )
            .prop_map(|(title, description, tags, transport, endpoint, version)| {
                ServerCommand::Update(UpdateServer {
                    version: version.map(|v| ServerVersion::parse(v).unwrap()),
                    repository: None,
                    packages: None,
                    title: title.map(|t| Title::parse(&t).unwrap()),
                    description: description.map(|d| Description::parse(&d).unwrap()),
                    tags: tags.map(|t| Tags::parse(t).unwrap()),
                    transport,
                    endpoint,
                })
            }),
        access().prop_map(ServerCommand::ChangeAccess),
        upstream_auth().prop_map(ServerCommand::RotateCredential),
        reason().prop_map(|reason| ServerCommand::Suspend { reason }),
        Just(ServerCommand::Resume),
        reason().prop_map(|reason| ServerCommand::Deregister { reason }),
    ]
}

fn replay(history: &[ServerEvent]) -> ServerState {
    history.iter().fold(ServerState::New, evolve)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_and_replay_rebuilds_the_state(commands in proptest::collection::vec(command(), 1..40)) {
        let mut state = ServerState::New;
        let mut history: Vec<ServerEvent> = Vec::new();
        for command in commands {
            let before = state.clone();
            match decide(&state, command.clone()) {
                Ok(events) => {
                    for event in &events {
                        // Every event survives its stored form.
                        let json = event.to_json().unwrap();
                        let back = ServerEvent::from_json(event.event_type(), &json).unwrap().unwrap();
                        prop_assert_eq!(&back, event);
                        state = evolve(state, event);
                    }
                    // A command that changes nothing emits nothing, and one that emits changes the state
                    // (a rotation always changes the sealed value's identity in the log, even if equal).
                    if events.is_empty() {
                        prop_assert_eq!(&state, &before);
                    }
                    history.extend(events);
                }
                Err(_) => prop_assert_eq!(&state, &before, "a refused command changes nothing"),
            }

            // The state is what the history replays to.
            prop_assert_eq!(&replay(&history), &state);
            // Registered once, first.
            let registrations = history.iter().filter(|e| matches!(e, ServerEvent::Registered(_))).count();
            prop_assert!(registrations <= 1);
            if let Some(first) = history.first() {
                prop_assert!(matches!(first, ServerEvent::Registered(_)));
            }
            // Nothing follows a deregistration.
            if let Some(at) = history.iter().position(|e| matches!(e, ServerEvent::Deregistered { .. })) {
                prop_assert_eq!(at, history.len() - 1);
                prop_assert!(matches!(state, ServerState::Deregistered(_)));
            }
            // Suspended exactly when the last suspend/resume was a suspend.
            if let ServerState::Live(server) = &state {
                let last = history.iter().rev().find(|e| matches!(e, ServerEvent::Suspended { .. } | ServerEvent::Resumed));
                let suspended = matches!(last, Some(ServerEvent::Suspended { .. }));
                prop_assert_eq!(matches!(server.status, ServerStatus::Suspended { .. }), suspended);
                // Only valid policies and credentials get in.
                prop_assert!(server.access.validate().is_ok());
                prop_assert!(server.upstream_auth.validate().is_ok());
            }
        }
    }
}
