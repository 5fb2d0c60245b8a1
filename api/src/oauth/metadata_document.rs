//! Fetching client ID metadata documents, the way an SSRF-safe client must (C26, A32): the URL's form
//! checked first; its host's every address checked against the SSRF guard and the connection pinned to
//! those addresses (a second DNS answer cannot move it inside the network); no redirects, no proxy;
//! at most 5 KiB within 5 seconds. Documents are cached for a few minutes, as their HTTP caching allows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commands::HostResolver;
use domain::oauth::{MAX_DOCUMENT_BYTES, MetadataDocumentError, RegisteredMetadata};
use domain::server::{Endpoint, NetworkPolicy};

/// The whole fetch, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a document is used without fetching it again, unless its `Cache-Control` says less.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Documents kept at most (the cache starts afresh past it: they are cheap to fetch again).
const MAX_CACHED: usize = 1_000;

/// Fetches and caches metadata documents.
pub struct DocumentFetcher {
    network: NetworkPolicy,
    resolver: Arc<dyn HostResolver>,
    cache: Mutex<HashMap<String, (RegisteredMetadata, Instant)>>,
}

impl DocumentFetcher {
    /// A fetcher trusting the hosts `network` allows (they may be plain http and internal), resolving
    /// names with `resolver`.
    pub fn new(network: NetworkPolicy, resolver: Arc<dyn HostResolver>) -> Self {
        Self { network, resolver, cache: Mutex::default() }
    }

    /// The checked metadata of the client whose id is the URL `client_id`.
    pub async fn metadata(&self, client_id: &str) -> Result<RegisteredMetadata, MetadataDocumentError> {
        if let Some((metadata, until)) = self.cache.lock().ok().and_then(|c| c.get(client_id).cloned())
            && until > Instant::now()
        {
            return Ok(metadata);
        }
        let host_trusted = url::Url::parse(client_id)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .is_some_and(|host| self.network.allows(&host));
        let url = domain::oauth::check_client_id_url(client_id, host_trusted)?;
        let (body, ttl) = self.fetch(&url).await?;
        let metadata = domain::oauth::read_document(client_id, &body)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(client_id.to_owned(), (metadata.clone(), Instant::now() + ttl));
        }
        Ok(metadata)
    }

    /// The document's bytes and how long to keep it.
    async fn fetch(&self, url: &url::Url) -> Result<(Vec<u8>, Duration), MetadataDocumentError> {
        let refused = |why: String| MetadataDocumentError::Fetch(why);
        let endpoint = Endpoint::parse(url.as_str(), &self.network).map_err(|e| refused(e.to_string()))?;
        let host = endpoint.host().unwrap_or_default();
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT);
        if let Some(domain) = endpoint.domain() {
            let addresses = self.resolver.resolve(domain, endpoint.port()).await;
            if !self.network.allows(&host) {
                endpoint.check_resolved(&self.network, &addresses).map_err(|e| refused(e.to_string()))?;
            }
            if addresses.is_empty() {
                return Err(refused(format!("{domain} does not resolve")));
            }
            // Connect only to the addresses just checked.
            let pinned: Vec<SocketAddr> = addresses.iter().map(|ip| SocketAddr::new(*ip, endpoint.port())).collect();
            client = client.resolve_to_addrs(domain, &pinned);
        }
        let client = client.build().map_err(|e| refused(e.to_string()))?;
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| refused(format!("{host}: {}", crate::proxy::describe(&e))))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(refused(format!("{host} answered {} (redirects are not followed)", response.status())));
        }
        if response.content_length().is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
            return Err(refused(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
        }
        let ttl = max_age(response.headers()).unwrap_or(DEFAULT_TTL).min(DEFAULT_TTL);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| refused(crate::proxy::describe(&e).to_owned()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(refused(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
            }
        }
        Ok((body, ttl))
    }
}

/// `max-age` of `Cache-Control` (`no-store` and `no-cache` are 0).
fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    value.split(',').map(str::trim).find_map(|directive| {
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        let (name, seconds) = directive.split_once('=')?;
        name.trim().eq_ignore_ascii_case("max-age").then(|| seconds.trim().parse().ok().map(Duration::from_secs))?
    })
}
