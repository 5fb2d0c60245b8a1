//! The Server aggregate's decisions.

use super::command::{RegisterServer, ServerCommand, UpdateServer};
use super::error::ServerError;
use super::event::{ServerChanges, ServerEvent, ServerRegistered};
use super::state::{Server, ServerState, ServerStatus};

/// The events `command` produces in `state`, or why it is refused. An empty list means the command
/// changes nothing (an update to the current values, the same policy again): nothing is appended.
pub fn decide(state: &ServerState, command: ServerCommand) -> Result<Vec<ServerEvent>, ServerError> {
    let server = match (state, &command) {
        (ServerState::New, ServerCommand::Register(_)) => None,
        (ServerState::New, _) => return Err(ServerError::NotFound),
        (ServerState::Live(_), ServerCommand::Register(_)) => return Err(ServerError::AlreadyExists),
        (ServerState::Live(server), _) => Some(server.as_ref()),
        (ServerState::Deregistered(_), ServerCommand::Register(_)) => return Err(ServerError::AlreadyExists),
        (ServerState::Deregistered(_), _) => return Err(ServerError::Deregistered),
    };
    match (server, command) {
        (None, ServerCommand::Register(register)) => register_server(*register),
        (Some(server), ServerCommand::Update(update)) => update_server(server, update),
        (Some(server), ServerCommand::ChangeAccess(access)) => {
            access.validate()?;
            Ok(if access == server.access { vec![] } else { vec![ServerEvent::AccessChanged(access)] })
        }
        (Some(server), ServerCommand::ChangeToolRules(tools)) => {
            tools.validate()?;
            Ok(if tools == server.access.tools { vec![] } else { vec![ServerEvent::ToolRulesChanged(tools)] })
        }
        (Some(server), ServerCommand::RecordHealth(health)) => {
            let changed = server.health.as_ref().is_none_or(|last| last.differs_from(&health));
            Ok(if changed { vec![ServerEvent::HealthChanged(health)] } else { vec![] })
        }
        (Some(server), ServerCommand::RecordTools(tools)) => {
            Ok(if server.tools.as_ref() == Some(&tools) { vec![] } else { vec![ServerEvent::ToolsDiscovered(tools)] })
        }
        (Some(_), ServerCommand::RotateCredential(auth)) => {
            auth.validate()?;
            Ok(vec![ServerEvent::CredentialRotated(auth)])
        }
        (Some(server), ServerCommand::Suspend { reason }) => {
            if matches!(server.status, ServerStatus::Suspended { .. }) {
                return Err(ServerError::AlreadySuspended);
            }
            Ok(vec![ServerEvent::Suspended { reason: checked_reason(reason)? }])
        }
        (Some(server), ServerCommand::Resume) => match server.status {
            ServerStatus::Suspended { .. } => Ok(vec![ServerEvent::Resumed]),
            ServerStatus::Active => Err(ServerError::NotSuspended),
        },
        (Some(server), ServerCommand::Deregister { reason }) => {
            Ok(vec![ServerEvent::Deregistered { name: server.name.clone(), reason: checked_reason(reason)? }])
        }
        // Every other pairing was answered above.
        (_, _) => Err(ServerError::NotFound),
    }
}

fn register_server(register: RegisterServer) -> Result<Vec<ServerEvent>, ServerError> {
    register.access.validate()?;
    register.upstream_auth.validate()?;
    if let Some(repository) = &register.repository {
        repository.validate()?;
    }
    let RegisterServer {
        server_id,
        name,
        version,
        title,
        description,
        tags,
        repository,
        packages,
        transport,
        endpoint,
        upstream_auth,
        access,
        owner,
    } = register;
    Ok(vec![ServerEvent::Registered(Box::new(ServerRegistered {
        server_id,
        name,
        version,
        title,
        description,
        tags,
        repository,
        packages,
        transport,
        endpoint,
        upstream_auth,
        access,
        owner,
    }))])
}

/// `new` when it differs from `old`.
fn changed<T: PartialEq>(new: Option<T>, old: Option<&T>) -> Option<T> {
    new.filter(|value| Some(value) != old)
}

/// Only the fields whose value differs are recorded; a new version must be newer than the current one.
fn update_server(server: &Server, update: UpdateServer) -> Result<Vec<ServerEvent>, ServerError> {
    let version = changed(update.version, Some(&server.version));
    if let Some(version) = &version
        && !version.is_newer_than(&server.version)
    {
        return Err(ServerError::VersionNotNewer {
            given: version.as_str().to_owned(),
            current: server.version.as_str().to_owned(),
        });
    }
    if let Some(repository) = &update.repository {
        repository.validate()?;
    }
    let changes = ServerChanges {
        version,
        repository: changed(update.repository, server.repository.as_ref()),
        packages: changed(update.packages, Some(&server.packages)),
        title: changed(update.title, server.title.as_ref()),
        description: changed(update.description, Some(&server.description)),
        tags: changed(update.tags, Some(&server.tags)),
        transport: update.transport.filter(|t| *t != server.transport),
        endpoint: changed(update.endpoint, Some(&server.endpoint)),
    };
    Ok(if changes.is_empty() { vec![] } else { vec![ServerEvent::Updated(changes)] })
}

fn checked_reason(reason: String) -> Result<String, ServerError> {
    crate::text::reason(&reason).map_err(|_| ServerError::Reason)
}
