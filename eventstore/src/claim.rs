//! [`Claim`]s: values unique among streams (a server's name, say), taken and released atomically with an
//! append.
//!
//! Set validation is the one rule an aggregate cannot decide from its own stream. A claim row, written in
//! the append's own statement or transaction, decides it: the append and its claims are written together,
//! or neither is. Claims are write-side state derived from the log (the events that took and released
//! them), never read by projections.

/// A value unique within its scope, held by one stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Claim {
    /// What the value is unique among (`server-name`).
    pub scope: String,
    /// The value. Compared byte for byte: normalise it (case, Unicode form) before claiming.
    pub value: String,
}

impl Claim {
    /// A claim of `value` in `scope`.
    pub fn new(scope: impl Into<String>, value: impl Into<String>) -> Self {
        Self { scope: scope.into(), value: value.into() }
    }
}

/// What an append does to claims: takes some (refused with [`Error::ClaimTaken`](crate::Error::ClaimTaken)
/// when another stream holds one; a claim the stream already holds is kept) and releases some (only
/// claims the stream holds; releasing one it does not hold does nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// Claims to take for the stream.
    pub take: Vec<Claim>,
    /// Claims of the stream to release.
    pub release: Vec<Claim>,
}

impl Claims {
    /// No claims taken or released.
    pub fn none() -> Self {
        Self::default()
    }

    /// Takes `claim`.
    pub fn take(claim: Claim) -> Self {
        Self { take: vec![claim], release: Vec::new() }
    }

    /// Releases `claim`.
    pub fn release(claim: Claim) -> Self {
        Self { take: Vec::new(), release: vec![claim] }
    }

    /// True when the append touches no claim.
    pub fn is_empty(&self) -> bool {
        self.take.is_empty() && self.release.is_empty()
    }
}

/// Claims as stored (scope, value, stream), or the first row naming no valid stream.
pub(crate) fn held(rows: Vec<(String, String, String)>) -> crate::Result<Vec<(Claim, crate::StreamName)>> {
    rows.into_iter()
        .map(|(scope, value, stream)| {
            let stream = crate::StreamName::parse(stream)
                .map_err(|e| crate::Error::Corrupt { position: crate::Position::START, source: e.into() })?;
            Ok((Claim { scope, value }, stream))
        })
        .collect()
}
