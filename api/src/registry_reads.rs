//! Who may read the `/v0.1` catalogue: a setting the state carries and the registry routes obey.

/// Who may read the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryReads {
    /// Anyone, as the official registry.
    #[default]
    Public,
    /// Callers with the `servers.read` permission (a private registry).
    Authenticated,
}
