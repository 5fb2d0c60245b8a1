//! Where alerts go: an HTTP webhook (the body signed with HMAC-SHA256), a Slack incoming webhook (a
//! Block Kit message), or email over SMTP (STARTTLS unless the server is on this host).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One channel, as configured.
#[derive(Clone, Deserialize)]
pub struct ChannelConfig {
    /// Its name (rules name it; deliveries record it).
    pub name: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: ChannelKind,
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Slack { .. } => "slack",
            ChannelKind::Email { .. } => "email",
        };
        f.debug_struct("ChannelConfig").field("name", &self.name).field("kind", &kind).finish_non_exhaustive()
    }
}

/// The kinds of channel.
#[derive(Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelKind {
    /// A JSON POST, signed: `X-MGW-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with
    /// `X-MGW-Timestamp`, and `X-MGW-Alert-Id` for the receiver to drop a repeat.
    Webhook {
        /// The receiver.
        url: String,
        /// The HMAC key.
        secret: String,
    },
    /// A Slack incoming webhook.
    Slack {
        /// The webhook URL (a secret: whoever has it can post).
        url: String,
    },
    /// Email.
    Email {
        /// `host:port` of the SMTP server.
        smtp: String,
        /// `required` (STARTTLS or nothing is sent) or `none` (plain, only to a server on this host).
        #[serde(default)]
        starttls: StartTls,
        /// A PEM file of the certificate authority the server's certificate must chain to, beside the
        /// public ones (a company's own CA).
        #[serde(default)]
        ca_file: Option<String>,
        /// SMTP user, if the server wants one.
        #[serde(default)]
        username: Option<String>,
        /// Its password.
        #[serde(default)]
        password: Option<String>,
        /// The sender.
        from: String,
        /// The recipients.
        to: Vec<String>,
    },
}

/// Whether an SMTP connection must be upgraded with STARTTLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartTls {
    /// Always (the default).
    #[default]
    Required,
    /// Never: allowed only for a server on a loopback address.
    None,
}

impl ChannelConfig {
    /// Refuses settings that would send alerts in the clear or cannot work.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        match &self.kind {
            ChannelKind::Webhook { url, secret } => {
                https_or_loopback(url).map_err(|e| format!("alert channel {name:?}: {e}"))?;
                if secret.len() < 16 {
                    return Err(format!("alert channel {name:?}: the webhook secret needs at least 16 characters"));
                }
            }
            ChannelKind::Slack { url } => https_or_loopback(url).map_err(|e| format!("alert channel {name:?}: {e}"))?,
            ChannelKind::Email { smtp, starttls, from, to, .. } => {
                let (host, port) = smtp.rsplit_once(':').ok_or(format!("alert channel {name:?}: smtp is host:port"))?;
                port.parse::<u16>().map_err(|_| format!("alert channel {name:?}: smtp's port is not a number"))?;
                if *starttls == StartTls::None && !is_loopback(host) {
                    return Err(format!("alert channel {name:?}: plain SMTP only to a server on this host"));
                }
                from.parse::<lettre::message::Mailbox>().map_err(|e| format!("alert channel {name:?}: from: {e}"))?;
                if to.is_empty() {
                    return Err(format!("alert channel {name:?}: no recipient"));
                }
                for recipient in to {
                    recipient
                        .parse::<lettre::message::Mailbox>()
                        .map_err(|e| format!("alert channel {name:?}: to {recipient}: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn https_or_loopback(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|_| format!("{url} is not a URL"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if parsed.host_str().is_some_and(is_loopback) => Ok(()),
        _ => Err("alerts leave over https (plain http only to this host)".to_owned()),
    }
}

/// What a channel is sent: the alert and the event that raised it (never the event's payload, which
/// may carry what is only for the audit trail's readers).
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// The alert's id (the same on every delivery of it).
    pub alert_id: uuid::Uuid,
    /// The rule.
    pub rule: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// One line for people.
    pub summary: String,
    /// The event's id, type, stream, position and time, and who caused it.
    pub event: NoticeEvent,
}

/// The event of a [`Notice`].
#[derive(Debug, Clone, Serialize)]
pub struct NoticeEvent {
    /// Its id.
    pub id: uuid::Uuid,
    /// Its type.
    pub r#type: String,
    /// Its stream.
    pub stream: String,
    /// Its position in the log.
    pub position: String,
    /// When it happened.
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// Who caused it (`kind:id`).
    pub actor: String,
}

/// Sends `notice` once; an error says why (no secret in it).
pub async fn send(channel: &ChannelConfig, notice: &Notice, http: &reqwest::Client) -> Result<(), String> {
    match &channel.kind {
        ChannelKind::Webhook { url, secret } => {
            let body = serde_json::to_vec(notice).map_err(|e| e.to_string())?;
            let timestamp = chrono::Utc::now().timestamp().to_string();
            let signature = sign(secret.as_bytes(), &timestamp, &body)?;
            let request = http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("x-mgw-alert-id", notice.alert_id.to_string())
                .header("x-mgw-timestamp", &timestamp)
                .header("x-mgw-signature", format!("sha256={signature}"))
                .body(body);
            answered(request).await
        }
        ChannelKind::Slack { url } => answered(http.post(url).json(&slack_message(notice))).await,
        ChannelKind::Email { smtp, starttls, ca_file, username, password, from, to } => {
            let server = SmtpServer { address: smtp, starttls: *starttls, ca_file: ca_file.as_deref() };
            email(notice, server, username.as_deref().zip(password.as_deref()), from, to).await
        }
    }
}

/// Hex HMAC-SHA256 of `<timestamp>.<body>` under `key` (what a receiver recomputes).
pub fn sign(key: &[u8], timestamp: &str, body: &[u8]) -> Result<String, String> {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).map_err(|e| e.to_string())?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

async fn answered(request: reqwest::RequestBuilder) -> Result<(), String> {
    let response = request.send().await.map_err(|e| format!("not sent: {}", without_url(&e)))?;
    if response.status().is_success() { Ok(()) } else { Err(format!("answered {}", response.status())) }
}

/// A request error without its URL (a Slack webhook's URL is its secret).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    kind.to_owned()
}

/// A Block Kit message: a header, the summary, the facts as fields.
fn slack_message(notice: &Notice) -> serde_json::Value {
    let field =
        |label: &str, value: &str| serde_json::json!({ "type": "mrkdwn", "text": format!("*{label}*\n{value}") });
    serde_json::json!({
        "text": format!("[{}] {}: {}", notice.severity, notice.rule, notice.summary),
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": format!("{} alert: {}", notice.severity, notice.rule) } },
            { "type": "section", "text": { "type": "mrkdwn", "text": notice.summary } },
            { "type": "section", "fields": [
                field("Event", &notice.event.r#type),
                field("Stream", &notice.event.stream),
                field("By", &notice.event.actor),
                field("At", &notice.event.occurred_at.to_rfc3339()),
            ] },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": format!("alert {}", notice.alert_id) } ] },
        ],
    })
}

/// Where email goes and how the connection is secured.
struct SmtpServer<'a> {
    address: &'a str,
    starttls: StartTls,
    ca_file: Option<&'a str>,
}

async fn email(
    notice: &Notice,
    server: SmtpServer<'_>,
    credentials: Option<(&str, &str)>,
    from: &str,
    to: &[String],
) -> Result<(), String> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
    let (host, port) = server.address.rsplit_once(':').ok_or("smtp is host:port")?;
    let port: u16 = port.parse().map_err(|_| "smtp's port is not a number")?;
    let mut message = Message::builder()
        .from(from.parse().map_err(|e| format!("from: {e}"))?)
        .subject(format!("[mcp-gateway] {}: {}", notice.severity, notice.rule))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for recipient in to {
        message = message.to(recipient.parse().map_err(|e| format!("to: {e}"))?);
    }
    let body = format!(
        "{}\n\nrule: {}\nseverity: {}\nevent: {} {} on {}\nby: {}\nat: {}\nalert: {}\n",
        notice.summary,
        notice.rule,
        notice.severity,
        notice.event.r#type,
        notice.event.id,
        notice.event.stream,
        notice.event.actor,
        notice.event.occurred_at.to_rfc3339(),
        notice.alert_id,
    );
    let message = message.body(body).map_err(|e| e.to_string())?;
    let tls = match server.starttls {
        StartTls::Required => {
            let mut parameters = TlsParameters::builder(host.to_owned());
            if let Some(ca_file) = server.ca_file {
                let pem = tokio::fs::read(ca_file).await.map_err(|e| format!("ca_file: {e}"))?;
                parameters = parameters.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| e.to_string())?);
            }
            Tls::Required(parameters.build().map_err(|e| e.to_string())?)
        }
        StartTls::None => Tls::None,
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(10)));
    if let Some((user, password)) = credentials {
        transport = transport
            .credentials(lettre::transport::smtp::authentication::Credentials::new(user.into(), password.into()));
    }
    transport.build().send(message).await.map(drop).map_err(|e| format!("smtp: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(fields: serde_json::Value) -> ChannelConfig {
        serde_json::from_value(fields).unwrap()
    }

    #[test]
    fn channels_refuse_clear_text_off_this_host_and_weak_secrets() {
        let hook = |url: &str, secret: &str| {
            channel(serde_json::json!({ "name": "h", "kind": "webhook", "url": url, "secret": secret }))
        };
        assert!(hook("https://hooks.example.com/x", "0123456789abcdef").validate().is_ok());
        assert!(hook("http://127.0.0.1:9/x", "0123456789abcdef").validate().is_ok());
        assert!(hook("http://hooks.example.com/x", "0123456789abcdef").validate().is_err());
        assert!(hook("https://hooks.example.com/x", "short").validate().is_err());
        let mail = |smtp: &str, starttls: &str| {
            channel(serde_json::json!({ "name": "m", "kind": "email", "smtp": smtp, "starttls": starttls,
                                        "from": "gw@example.com", "to": ["ops@example.com"] }))
        };
        assert!(mail("smtp.example.com:587", "required").validate().is_ok());
        assert!(mail("127.0.0.1:2525", "none").validate().is_ok());
        assert!(mail("smtp.example.com:25", "none").validate().is_err());
        assert!(format!("{:?}", hook("https://h.example/x", "0123456789abcdef")).contains("webhook"));
        assert!(!format!("{:?}", hook("https://h.example/x", "0123456789abcdef")).contains("0123456789"));
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_timestamp_and_the_body() {
        // Computed independently: Python's hmac.new(key, b'1700000000.{"a":1}', sha256).hexdigest().
        let signed = sign(b"0123456789abcdef", "1700000000", br#"{"a":1}"#).unwrap();
        assert_eq!(signed, "9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23");
    }
}
