//! `/v0.1/servers`: the catalogue in the official MCP registry's generic API and `server.json` shape,
//! for MCP clients that read a private registry.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use domain::authz::Action;
use projections::registry::{CatalogueEntry, CatalogueFilter};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// The schema the documents follow.
const SCHEMA: &str = "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json";

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v0.1/servers", get(list)).route("/v0.1/servers/{name}", get(read))
}

/// One server as `server.json`, with the gateway's metadata under `_meta`.
fn document(entry: &CatalogueEntry) -> Value {
    let remote_type = if entry.transport == "sse" { "sse" } else { "streamable-http" };
    let mut server = json!({
        "$schema": SCHEMA,
        "name": entry.name,
        "description": entry.description,
        "version": format!("1.0.0-r{}", entry.revision),
        "remotes": [{ "type": remote_type, "url": entry.url }],
    });
    if let Some(title) = &entry.title {
        server["title"] = json!(title);
    }
    json!({
        "server": server,
        "_meta": { "io.modelcontextprotocol.registry/official": {
            "status": "active",
            "publishedAt": entry.registered_at,
            "updatedAt": entry.updated_at,
            "isLatest": true,
        }},
    })
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    cursor: Option<String>,
    limit: Option<u32>,
    search: Option<String>,
}

#[utoipa::path(get, path = "/v0.1/servers", operation_id = "registry_list_servers", tag = "registry", params(("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query), ("search" = Option<String>, Query)), responses((status = 200, description = "servers in the official registry's shape", body = Object), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Value>, Problem> {
    caller.authorize(&state, Action::ReadServers, "registry").await?;
    let filter = CatalogueFilter {
        text: crate::params::text("search", query.search)?,
        // Suspended servers are not offered to clients.
        status: Some("active".into()),
        after: query.cursor.map(|c| crate::cursor::decode(&c)).transpose()?,
        limit: query.limit.unwrap_or(30).min(100),
        ..Default::default()
    };
    let page = state.registry.list(&filter).await.map_err(|_| Problem::unavailable("the read model is unreachable"))?;
    let servers: Vec<Value> = page.entries.iter().map(document).collect();
    let mut metadata = json!({ "count": servers.len() });
    if let Some(next) = page.next.as_deref() {
        metadata["nextCursor"] = json!(crate::cursor::encode(next));
    }
    Ok(axum::Json(json!({ "servers": servers, "metadata": metadata })))
}

#[utoipa::path(get, path = "/v0.1/servers/{name}", operation_id = "registry_read_server", tag = "registry", params(("name" = String, Path)), responses((status = 200, description = "one server in the official registry's shape", body = Object), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)), security(("api_key" = [])))]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, Problem> {
    caller.authorize(&state, Action::ReadServers, "registry").await?;
    let name = crate::params::text("name", Some(name))?.unwrap_or_default();
    let entry =
        state.registry.get_by_name(&name).await.map_err(|_| Problem::unavailable("the read model is unreachable"))?;
    entry.filter(|e| e.status == "active").map(|e| axum::Json(document(&e))).ok_or_else(Problem::not_found)
}
