//! Concurrency limits on the MCP endpoints: how many requests one principal, and one server, may have
//! in flight through the gateway (an open SSE answer or GET stream counts until it ends). One caller
//! cannot take every connection to a server, and a slow server cannot take every worker of the gateway.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use uuid::Uuid;

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyLimits {
    /// Requests one principal may have in flight, over every server.
    pub per_principal: usize,
    /// Requests one server may have in flight, from every caller.
    pub per_server: usize,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        Self { per_principal: 128, per_server: 512 }
    }
}

/// Which limit a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitHit {
    /// The caller's own.
    Principal(usize),
    /// The server's.
    Server(usize),
}

/// Requests in flight, per principal and per server.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    limits: ProxyLimits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    principals: HashMap<Uuid, usize>,
    servers: HashMap<Uuid, usize>,
}

/// A request's place, given back when it is dropped.
pub(crate) struct Slot {
    in_flight: Arc<InFlight>,
    principal: Uuid,
    server: Uuid,
}

impl InFlight {
    pub(crate) fn new(limits: ProxyLimits) -> Self {
        Self { limits, counts: Mutex::default() }
    }

    /// A place for a request of `principal` to `server`, or the limit it met.
    pub(crate) fn enter(self: &Arc<Self>, principal: Uuid, server: Uuid) -> Result<Slot, LimitHit> {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let by_principal = counts.principals.get(&principal).copied().unwrap_or(0);
        if by_principal >= self.limits.per_principal {
            return Err(LimitHit::Principal(self.limits.per_principal));
        }
        let by_server = counts.servers.get(&server).copied().unwrap_or(0);
        if by_server >= self.limits.per_server {
            return Err(LimitHit::Server(self.limits.per_server));
        }
        counts.principals.insert(principal, by_principal + 1);
        counts.servers.insert(server, by_server + 1);
        Ok(Slot { in_flight: self.clone(), principal, server })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.in_flight.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        release(&mut counts.principals, self.principal);
        release(&mut counts.servers, self.server);
    }
}

fn release(counts: &mut HashMap<Uuid, usize>, id: Uuid) {
    if let Some(count) = counts.get_mut(&id) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&id);
        }
    }
}

/// A response body that holds its request's [`Slot`] until the body ends or the client goes away.
pub(crate) struct HeldBody {
    inner: Body,
    _slot: Slot,
}

impl HeldBody {
    pub(crate) fn wrap(inner: Body, slot: Slot) -> Body {
        Body::new(Self { inner, _slot: slot })
    }
}

impl HttpBody for HeldBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn each_limit_holds_and_a_dropped_slot_frees_its_place() {
        let in_flight = Arc::new(InFlight::new(ProxyLimits { per_principal: 2, per_server: 3 }));
        let (alice, bob, server, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let a1 = in_flight.enter(alice, server).unwrap();
        let _a2 = in_flight.enter(alice, other).unwrap();
        assert_eq!(in_flight.enter(alice, server).err(), Some(LimitHit::Principal(2)), "over every server");
        let _b1 = in_flight.enter(bob, server).unwrap();
        let _b2 = in_flight.enter(bob, server).unwrap();
        assert_eq!(in_flight.enter(Uuid::now_v7(), server).err(), Some(LimitHit::Server(3)));
        drop(a1);
        assert!(in_flight.enter(alice, other).is_ok(), "a place given back");
    }
}
