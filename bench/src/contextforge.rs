//! IBM ContextForge (PyPI `mcp-contextforge-gateway`, pinned in `bench/peers/contextforge-requirements.txt`)
//! in front of the same upstream as the gateway, for `bench proxy`: started from the bench's own virtual
//! environment on a SQLite file, with authentication on (an HS256 token its own tool mints), its admin UI,
//! plugins and rate limiter off, upstream sessions kept (`USE_STATEFUL_SESSIONS`: without it every call
//! opens a new upstream session, three times slower); the upstream registered as a "gateway", its `echo`
//! tool exposed through a virtual server whose MCP endpoint the bench calls.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running ContextForge, set up: where clients call, with what token, and its name for `echo`.
pub(crate) struct ContextForge {
    pub(crate) child: tokio::process::Child,
    pub(crate) mcp_url: String,
    pub(crate) token: String,
    pub(crate) tool: String,
    _dir: tempfile::TempDir,
}

/// 64 hex characters (ContextForge refuses short or low-entropy secrets).
fn secret() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl ContextForge {
    /// Starts ContextForge on `port` and puts the MCP server at `upstream` behind it.
    pub(crate) async fn start(http: &reqwest::Client, port: u16, upstream: &str) -> anyhow::Result<Self> {
        let venv = crate::python_peer::venv("mgw-bench-contextforge-venv", "contextforge-requirements.txt")?;
        // Its settings loader reads `./.env`: it runs in a directory of its own.
        let dir = tempfile::tempdir()?;
        let jwt_secret = secret();
        let env = [
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", port.to_string()),
            ("DATABASE_URL", format!("sqlite:///{}", dir.path().join("contextforge.db").display())),
            ("JWT_SECRET_KEY", jwt_secret.clone()),
            ("AUTH_ENCRYPTION_SECRET", secret()),
            ("PLATFORM_ADMIN_EMAIL", "admin@example.com".to_owned()),
            ("PLATFORM_ADMIN_PASSWORD", "Bench-Admin-Pass-2024!x".to_owned()),
            ("AUTH_REQUIRED", "true".to_owned()),
            ("MCPGATEWAY_UI_ENABLED", "false".to_owned()),
            ("MCPGATEWAY_ADMIN_API_ENABLED", "false".to_owned()),
            ("LOG_LEVEL", "ERROR".to_owned()),
            ("PLUGINS_ENABLED", "false".to_owned()),
            ("SSRF_ALLOW_LOCALHOST", "true".to_owned()),
            ("RATE_LIMITING_ENABLED", "false".to_owned()),
            ("USE_STATEFUL_SESSIONS", "true".to_owned()),
            ("LEGACY_API_ENABLED", "false".to_owned()),
            ("HEALTH_CHECK_INTERVAL", "3600".to_owned()),
        ];
        let child = tokio::process::Command::new(venv.join("bin/mcpgateway"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let healthy = http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success());
            if healthy {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "ContextForge did not become healthy within 2 minutes");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let minted = std::process::Command::new(venv.join("bin/python"))
            .args(["-m", "mcpgateway.utils.create_jwt_token", "-u", "admin@example.com", "--admin", "--exp", "1440"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir.path())
            .stderr(std::process::Stdio::null())
            .output()?;
        anyhow::ensure!(minted.status.success(), "minting a ContextForge token");
        let token = String::from_utf8(minted.stdout)?.trim().to_owned();

        let gateway = json!({ "name": "echo", "url": upstream, "transport": "STREAMABLEHTTP" });
        let registered: Value = http
            .post(format!("{base}/v1/gateways"))
            .bearer_auth(&token)
            .json(&gateway)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let gateway_id = registered["id"].as_str().ok_or_else(|| anyhow::anyhow!("no gateway id: {registered}"))?;
        let (tool_id, tool) = loop {
            let tools: Value = http
                .get(format!("{base}/v1/tools?gateway_id={gateway_id}&limit=0"))
                .bearer_auth(&token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let listed = tools.as_array().cloned().or_else(|| tools["items"].as_array().cloned()).unwrap_or_default();
            if let Some(echo) = listed.iter().find(|t| t["originalName"] == "echo" || t["original_name"] == "echo") {
                let id = echo["id"].as_str().unwrap_or_default().to_owned();
                break (id, echo["name"].as_str().unwrap_or("echo").to_owned());
            }
            anyhow::ensure!(Instant::now() < deadline, "ContextForge did not discover the echo tool: {tools}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let server = json!({ "server": { "name": "bench", "associated_tools": [tool_id] }, "visibility": "public" });
        let created: Value = http
            .post(format!("{base}/v1/servers"))
            .bearer_auth(&token)
            .json(&server)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let server_id = created["id"].as_str().ok_or_else(|| anyhow::anyhow!("no server id: {created}"))?;
        Ok(Self { child, mcp_url: format!("{base}/servers/{server_id}/mcp"), token, tool, _dir: dir })
    }
}
