//! Where a server's code and packages come from: the `repository` and `packages` of the official
//! registry's `server.json`, so that the `/v0.1` export is a document clients can install from.
//!
//! Field names follow the official schema (camelCase), in the log as on the wire. Every string goes
//! through the one text check, and a secret input may not carry a value or a default: the catalogue is
//! public, secrets are the user's to supply.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use url::Url;

/// Most packages on one server.
pub const MAX_PACKAGES: usize = 8;
/// Most arguments, environment variables or headers in one list.
pub const MAX_INPUTS: usize = 32;
/// Longest identifier, version, value or other short string, in characters.
const MAX_SHORT_CHARS: usize = 255;
/// Longest description of an input, in characters.
const MAX_INPUT_DESCRIPTION_CHARS: usize = 500;
/// Longest URL, in bytes.
const MAX_URL_BYTES: usize = 2_048;

/// A refused `repository` or `packages` field: which one, and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct DistributionError {
    /// The field's path (`packages[0].transport.url`).
    pub field: String,
    /// The rule.
    pub rule: &'static str,
}

fn refuse(field: impl Into<String>, rule: &'static str) -> DistributionError {
    DistributionError { field: field.into(), rule }
}

const SHORT_TEXT: &str = "1 to 255 characters, no control or invisible formatting characters";

fn short(field: &str, value: &str) -> Result<(), DistributionError> {
    match crate::text::line(value, MAX_SHORT_CHARS) {
        Ok(checked) if checked == value => Ok(()),
        _ => Err(refuse(field, SHORT_TEXT)),
    }
}

fn optional_short(field: &str, value: Option<&String>) -> Result<(), DistributionError> {
    value.map_or(Ok(()), |v| short(field, v))
}

fn https_url(field: &str, value: &str) -> Result<(), DistributionError> {
    const RULE: &str = "an absolute https URL of at most 2048 bytes";
    let url = Url::parse(value).map_err(|_| refuse(field, RULE))?;
    let fits = value.len() <= MAX_URL_BYTES && url.scheme() == "https" && url.host().is_some();
    if fits && !value.chars().any(crate::text::is_forbidden) { Ok(()) } else { Err(refuse(field, RULE)) }
}

/// The source repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Repository {
    /// Where to browse and clone it (https).
    pub url: String,
    /// The hosting service (`github`, `gitlab`, …).
    pub source: String,
    /// The hosting service's stable id of the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The server's folder in a monorepo, relative to its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subfolder: Option<String>,
}

impl Repository {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), DistributionError> {
        https_url("repository.url", &self.url)?;
        if !is_label(&self.source, 32) {
            return Err(refuse("repository.source", "1 to 32 lowercase letters, digits and `-`"));
        }
        optional_short("repository.id", self.id.as_ref())?;
        if let Some(subfolder) = &self.subfolder {
            let clean = subfolder.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
            if !clean || short("repository.subfolder", subfolder).is_err() {
                return Err(refuse("repository.subfolder", "a clean relative path (no empty, `.` or `..` parts)"));
            }
        }
        Ok(())
    }
}

fn is_label(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A value an input's `value` refers to as `{name}`: the official `Input`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Variable {
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether it must be given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_required: bool,
    /// The value's format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<InputFormat>,
    /// A fixed value (never for a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Whether the value is a secret the user supplies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_secret: bool,
    /// A default value (never for a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// A hint shown where the value is typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// The values allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

/// How a package's process talks MCP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PackageTransport {
    /// Standard input and output.
    Stdio,
    /// Streamable HTTP at `url` (a URL or a `{variable}` template).
    StreamableHttp {
        /// The URL template.
        url: String,
        /// Headers to send.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<KeyValueInput>,
    },
    /// Server-sent events at `url`.
    Sse {
        /// The URL template.
        url: String,
        /// Headers to send.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        headers: Vec<KeyValueInput>,
    },
}

/// The format of an input's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// Text.
    String,
    /// A decimal number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A path on the user's file system.
    Filepath,
}

/// An environment variable or header the user may have to supply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyValueInput {
    /// The variable's or header's name.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether it must be given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_required: bool,
    /// The value's format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<InputFormat>,
    /// A fixed value (never for a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Whether the value is a secret the user supplies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_secret: bool,
    /// A default value (never for a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// A hint shown where the value is typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// The values allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Values `value` refers to as `{name}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, Variable>,
}

/// A positional or named command-line argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArgumentKind {
    /// Inserted as it is.
    Positional,
    /// `--flag=value`.
    Named,
}

/// A command-line argument of a package or its runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Argument {
    /// Positional or named.
    #[serde(rename = "type")]
    pub kind: ArgumentKind,
    /// The flag, dashes included (named arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A label for the value (positional arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_hint: Option<String>,
    /// Whether it may be repeated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_repeated: bool,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether it must be given.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_required: bool,
    /// The value's format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<InputFormat>,
    /// A fixed value (never for a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Whether the value is a secret the user supplies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_secret: bool,
    /// A default value (never for a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// A hint shown where the value is typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// The values allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Values `value` refers to as `{name}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, Variable>,
}

/// The parts every input shares, checked the same way.
struct InputParts<'a> {
    variables: &'a BTreeMap<String, Variable>,
    description: Option<&'a String>,
    value: Option<&'a String>,
    default: Option<&'a String>,
    placeholder: Option<&'a String>,
    choices: &'a [String],
    is_secret: bool,
}

impl InputParts<'_> {
    fn validate(&self, field: &str) -> Result<(), DistributionError> {
        if let Some(description) = self.description
            && crate::text::line(description, MAX_INPUT_DESCRIPTION_CHARS).ok().as_ref() != Some(description)
        {
            return Err(refuse(format!("{field}.description"), "1 to 500 characters, no control characters"));
        }
        optional_short(&format!("{field}.value"), self.value)?;
        optional_short(&format!("{field}.default"), self.default)?;
        optional_short(&format!("{field}.placeholder"), self.placeholder)?;
        if self.choices.len() > MAX_INPUTS {
            return Err(refuse(format!("{field}.choices"), "at most 32 choices"));
        }
        for (i, choice) in self.choices.iter().enumerate() {
            short(&format!("{field}.choices[{i}]"), choice)?;
        }
        if self.is_secret && (self.value.is_some() || self.default.is_some()) {
            return Err(refuse(
                field,
                "a secret input has no value or default: the catalogue is readable by its clients, the secret is theirs to supply",
            ));
        }
        if self.variables.len() > MAX_INPUTS {
            return Err(refuse(format!("{field}.variables"), "at most 32 variables"));
        }
        for (name, variable) in self.variables {
            let field = format!("{field}.variables.{name}");
            if !is_variable_name(name) {
                return Err(refuse(field, "a variable name has letters, digits and `_`, 1 to 128 characters"));
            }
            InputParts {
                variables: &BTreeMap::new(),
                description: variable.description.as_ref(),
                value: variable.value.as_ref(),
                default: variable.default.as_ref(),
                placeholder: variable.placeholder.as_ref(),
                choices: &variable.choices,
                is_secret: variable.is_secret,
            }
            .validate(&field)?;
        }
        Ok(())
    }
}

impl KeyValueInput {
    fn validate(&self, field: &str, name_rule: fn(&str) -> bool) -> Result<(), DistributionError> {
        if !name_rule(&self.name) {
            return Err(refuse(
                format!("{field}.name"),
                "an environment variable (letters, digits, `_`) or header name (an HTTP token), 1 to 128 characters",
            ));
        }
        InputParts {
            variables: &self.variables,
            description: self.description.as_ref(),
            value: self.value.as_ref(),
            default: self.default.as_ref(),
            placeholder: self.placeholder.as_ref(),
            choices: &self.choices,
            is_secret: self.is_secret,
        }
        .validate(field)
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

impl Argument {
    fn validate(&self, field: &str) -> Result<(), DistributionError> {
        optional_short(&format!("{field}.name"), self.name.as_ref())?;
        optional_short(&format!("{field}.valueHint"), self.value_hint.as_ref())?;
        match self.kind {
            ArgumentKind::Named if self.name.is_none() => {
                return Err(refuse(field, "a named argument has a `name`"));
            }
            ArgumentKind::Positional if self.value_hint.is_none() && self.value.is_none() => {
                return Err(refuse(field, "a positional argument has a `valueHint` or a `value`"));
            }
            _ => {}
        }
        InputParts {
            variables: &self.variables,
            description: self.description.as_ref(),
            value: self.value.as_ref(),
            default: self.default.as_ref(),
            placeholder: self.placeholder.as_ref(),
            choices: &self.choices,
            is_secret: self.is_secret,
        }
        .validate(field)
    }
}

/// One way to install and run the server locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Package {
    /// The package registry (`npm`, `pypi`, `oci`, `nuget`, `mcpb`, `cargo`, …).
    pub registry_type: String,
    /// The registry's base URL (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_base_url: Option<String>,
    /// The package's name there, or its download URL.
    pub identifier: String,
    /// The package's exact version (not a range, not `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SHA-256 of the package file, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
    /// The runtime to start it with (`npx`, `uvx`, `docker`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_hint: Option<String>,
    /// How it talks MCP.
    pub transport: PackageTransport,
    /// Arguments for the runtime.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_arguments: Vec<Argument>,
    /// Arguments for the package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub package_arguments: Vec<Argument>,
    /// Environment variables to set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_variables: Vec<KeyValueInput>,
}

impl Package {
    fn validate(&self, field: &str) -> Result<(), DistributionError> {
        if !is_label(&self.registry_type, 32) {
            return Err(refuse(format!("{field}.registryType"), "1 to 32 lowercase letters, digits and `-`"));
        }
        if let Some(base) = &self.registry_base_url {
            https_url(&format!("{field}.registryBaseUrl"), base)?;
        }
        short(&format!("{field}.identifier"), &self.identifier)?;
        if let Some(version) = &self.version {
            short(&format!("{field}.version"), version)?;
            if is_range(version) {
                return Err(refuse(format!("{field}.version"), "an exact version, not a range or `latest`"));
            }
        }
        if self.registry_type == "mcpb" && self.file_sha256.is_none() {
            return Err(refuse(format!("{field}.fileSha256"), "an `mcpb` package names the SHA-256 of its file"));
        }
        if let Some(hash) = &self.file_sha256
            && !(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
        {
            return Err(refuse(format!("{field}.fileSha256"), "64 lowercase hexadecimal digits"));
        }
        if let Some(hint) = &self.runtime_hint
            && !is_label(hint, 32)
        {
            return Err(refuse(format!("{field}.runtimeHint"), "1 to 32 lowercase letters, digits and `-`"));
        }
        match &self.transport {
            PackageTransport::Stdio => {}
            PackageTransport::StreamableHttp { url, headers } | PackageTransport::Sse { url, headers } => {
                if !is_transport_url(url) {
                    return Err(refuse(
                        format!("{field}.transport.url"),
                        "an http(s) URL without spaces, at most 2048 bytes",
                    ));
                }
                inputs(&format!("{field}.transport.headers"), headers, |i, f| i.validate(f, is_header_name))?;
            }
        }
        inputs(&format!("{field}.runtimeArguments"), &self.runtime_arguments, |a, f| a.validate(f))?;
        inputs(&format!("{field}.packageArguments"), &self.package_arguments, |a, f| a.validate(f))?;
        inputs(&format!("{field}.environmentVariables"), &self.environment_variables, |i, f| {
            i.validate(f, is_variable_name)
        })
    }
}

fn inputs<T>(
    field: &str,
    items: &[T],
    check: impl Fn(&T, &str) -> Result<(), DistributionError>,
) -> Result<(), DistributionError> {
    if items.len() > MAX_INPUTS {
        return Err(refuse(field, "at most 32 entries"));
    }
    items.iter().enumerate().try_for_each(|(i, item)| check(item, &format!("{field}[{i}]")))
}

/// A version range or moving tag, which a package version must not be (`^1.2.3`, `~1.2`, `>=1`, `1.x`,
/// `1.*`, `latest`).
fn is_range(version: &str) -> bool {
    // Only the release numbers: `1.0.0-x.7` is an exact pre-release.
    let core = version.split(['-', '+']).next().unwrap_or(version);
    version == "latest"
        || version.starts_with(['^', '~', '>', '<', '='])
        || version.contains([' ', '*', '|'])
        || core.split('.').any(|part| matches!(part, "x" | "X"))
}

/// A transport URL as the `server.json` schema takes it: `http(s)://…`, without white space. (The OpenAPI
/// document also allows a leading `{variable}`, but the schema the documents declare does not.)
fn is_transport_url(url: &str) -> bool {
    if url.len() > MAX_URL_BYTES || url.chars().any(|c| c.is_whitespace() || crate::text::is_forbidden(c)) {
        return false;
    }
    url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).is_some_and(|rest| !rest.is_empty())
}

/// A server's packages.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Packages(Vec<Package>);

impl Packages {
    /// Checks every package.
    pub fn parse(packages: Vec<Package>) -> Result<Self, DistributionError> {
        if packages.len() > MAX_PACKAGES {
            return Err(refuse("packages", "at most 8 packages"));
        }
        packages.iter().enumerate().try_for_each(|(i, p)| p.validate(&format!("packages[{i}]")))?;
        Ok(Self(packages))
    }

    /// The packages.
    pub fn as_slice(&self) -> &[Package] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(json: serde_json::Value) -> Result<Packages, String> {
        let packages: Vec<Package> = serde_json::from_value(json).map_err(|e| e.to_string())?;
        Packages::parse(packages).map_err(|e| e.to_string())
    }

    #[test]
    fn an_official_npm_package_is_accepted_and_written_back_the_same() {
        let json = serde_json::json!([{
            "registryType": "npm", "registryBaseUrl": "https://registry.npmjs.org",
            "identifier": "@modelcontextprotocol/server-filesystem", "version": "1.0.2", "runtimeHint": "npx",
            "transport": { "type": "stdio" },
            "packageArguments": [{ "type": "positional", "valueHint": "directory", "isRequired": true }],
            "environmentVariables": [{ "name": "API_KEY", "isSecret": true, "isRequired": true }],
        }]);
        let packages = package(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&packages).unwrap(), json);
    }

    #[test]
    fn each_rule_is_named_with_its_field() {
        let base = |patch: serde_json::Value| {
            let mut p =
                serde_json::json!({ "registryType": "npm", "identifier": "x", "transport": { "type": "stdio" } });
            for (k, v) in patch.as_object().unwrap() {
                p[k] = v.clone();
            }
            package(serde_json::json!([p]))
        };
        assert!(base(serde_json::json!({ "version": "^1.2.3" })).unwrap_err().contains("packages[0].version"));
        assert!(base(serde_json::json!({ "version": "1.x" })).is_err());
        assert!(base(serde_json::json!({ "version": "latest" })).is_err());
        assert!(base(serde_json::json!({ "fileSha256": "ABC" })).unwrap_err().contains("fileSha256"));
        assert!(base(serde_json::json!({ "registryBaseUrl": "http://registry.npmjs.org" })).is_err());
        assert!(base(serde_json::json!({ "identifier": "a\u{202E}b" })).is_err());
        let secret =
            serde_json::json!({ "environmentVariables": [{ "name": "TOKEN", "isSecret": true, "default": "abc" }] });
        assert!(base(secret).unwrap_err().contains("secret"));
        let named = serde_json::json!({ "packageArguments": [{ "type": "named" }] });
        assert!(base(named).unwrap_err().contains("packageArguments[0]"));
        let http = serde_json::json!({ "transport": { "type": "streamable-http", "url": "ftp://x" } });
        assert!(base(http).unwrap_err().contains("transport.url"));
        let template = serde_json::json!({ "transport": { "type": "sse", "url": "{host}/sse" } });
        assert!(base(template).unwrap_err().contains("transport.url"), "the schema takes http(s) URLs only");
        assert!(base(serde_json::json!({ "version": "1.0.0-x.7.z.92" })).is_ok(), "a pre-release, not a range");
        let mcpb = serde_json::json!({ "registryType": "mcpb", "identifier": "https://example.com/x.mcpb" });
        assert!(base(mcpb).unwrap_err().contains("fileSha256"));
        let variables = serde_json::json!({ "transport": { "type": "streamable-http", "url": "https://h/mcp",
            "headers": [{ "name": "Authorization", "value": "Bearer {token}",
                          "variables": { "token": { "isSecret": true, "isRequired": true } } }] } });
        assert!(base(variables).is_ok());
        let leaky = serde_json::json!({ "transport": { "type": "streamable-http", "url": "https://h/mcp",
            "headers": [{ "name": "Authorization", "value": "Bearer {token}",
                          "variables": { "token": { "isSecret": true, "default": "s3cret" } } }] } });
        assert!(base(leaky).unwrap_err().contains("variables.token"));
        assert!(base(serde_json::json!({ "unknown": 1 })).unwrap_err().contains("unknown field"));
    }

    #[test]
    fn repositories_are_https_with_a_clean_subfolder() {
        let repo = |url: &str, subfolder: Option<&str>| {
            Repository { url: url.into(), source: "github".into(), id: None, subfolder: subfolder.map(Into::into) }
                .validate()
        };
        assert!(repo("https://github.com/acme/weather", Some("servers/weather")).is_ok());
        assert!(repo("http://github.com/acme/weather", None).is_err());
        assert!(repo("https://github.com/acme/weather", Some("../etc")).is_err());
        assert!(repo("https://github.com/acme/weather", Some("/abs")).is_err());
    }
}
