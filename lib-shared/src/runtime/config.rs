//! Settings come from the environment only, read once at start-up.

use std::{fmt, str::FromStr, time::Duration};

use crate::http::client_address::TrustedProxies;

/// A missing or malformed setting; its `Display` is the one line printed at start-up.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {name} {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(name: &'static str, problem: impl Into<String>) -> Self {
        Self {
            name,
            problem: problem.into(),
        }
    }
}

/// Where environment values come from; tests pass a map instead of the process environment.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<const N: usize> Source for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

pub fn required(src: &dyn Source, name: &'static str) -> Result<String, ConfigError> {
    src.get(name)
        .ok_or_else(|| ConfigError::new(name, "is required but not set"))
}

pub fn parsed_or<T>(src: &dyn Source, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match src.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| ConfigError::new(name, format!("is malformed ({raw:?}): {e}"))),
    }
}

pub fn bool_or(src: &dyn Source, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match src.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(ConfigError::new(
            name,
            format!("is malformed ({v:?}): expected true or false"),
        )),
    }
}

/// A PEM key given either inline or as the path of a file holding it.
pub fn pem(src: &dyn Source, name: &'static str) -> Result<String, ConfigError> {
    let raw = required(src, name)?;
    let text = if raw.trim_start().starts_with("-----BEGIN") {
        raw
    } else {
        std::fs::read_to_string(raw.trim())
            .map_err(|e| ConfigError::new(name, format!("names an unreadable file: {e}")))?
    };
    if !text.contains("-----BEGIN") {
        return Err(ConfigError::new(name, "is not a PEM key"));
    }
    Ok(text)
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err("expected pretty or json".into()),
        }
    }
}

/// Settings every service reads.
#[derive(Clone, Debug)]
pub struct CommonSettings {
    /// Short service name, e.g. `auth`; also the consumer group name and URL segment.
    pub service: &'static str,
    pub host: String,
    pub port: u16,
    pub mongodb_uri: Secret,
    pub mongodb_database: String,
    pub redis_url: Secret,
    /// Prepended to every Redis key and stream; empty in production, unique per test.
    pub redis_prefix: String,
    pub jwt_public_key: String,
    pub log_format: LogFormat,
    pub shutdown_timeout: Duration,
    /// This instance's consumer name in its service's consumer groups.
    pub instance: String,
    /// Unacknowledged events idle this long are retried or taken over.
    pub event_claim_idle: Duration,
    /// How often the outbox relay looks for events that were not published at once.
    pub outbox_relay_every: Duration,
    /// `TRUSTED_PROXIES`: the proxies (CIDRs) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

impl CommonSettings {
    pub fn from_source(
        src: &dyn Source,
        service: &'static str,
        default_port: u16,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            service,
            host: src.get("HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port: parsed_or(src, "PORT", default_port)?,
            mongodb_uri: Secret(required(src, "MONGODB_URI")?),
            mongodb_database: src
                .get("MONGODB_DATABASE")
                .unwrap_or_else(|| service.into()),
            redis_url: Secret(required(src, "REDIS_URL")?),
            redis_prefix: String::new(),
            jwt_public_key: pem(src, "JWT_PUBLIC_KEY")?,
            log_format: parsed_or(src, "LOG_FORMAT", LogFormat::Pretty)?,
            shutdown_timeout: Duration::from_secs(10),
            instance: src
                .get("HOSTNAME")
                .unwrap_or_else(|| format!("{service}-{}", uuid::Uuid::new_v4().simple())),
            event_claim_idle: Duration::from_secs(30),
            outbox_relay_every: Duration::from_secs(1),
            trusted_proxies: match src.get("TRUSTED_PROXIES") {
                None => TrustedProxies::default(),
                Some(raw) => TrustedProxies::parse(&raw).map_err(|e| {
                    ConfigError::new("TRUSTED_PROXIES", format!("is malformed: {e}"))
                })?,
            },
        })
    }
}

/// A value that must not appear in logs: connection strings carry passwords.
#[derive(Clone)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n";

    #[test]
    fn missing_required_setting_names_the_variable() {
        let src = [("REDIS_URL", "redis://x"), ("JWT_PUBLIC_KEY", KEY)];
        let err = CommonSettings::from_source(&src, "auth", 3001).unwrap_err();
        assert_eq!(err.name, "MONGODB_URI");
        assert_eq!(
            err.to_string(),
            "configuration error: MONGODB_URI is required but not set"
        );
    }

    #[test]
    fn malformed_port_is_refused_with_its_name() {
        let src = [
            ("PORT", "eighty"),
            ("MONGODB_URI", "mongodb://x"),
            ("REDIS_URL", "redis://x"),
            ("JWT_PUBLIC_KEY", KEY),
        ];
        let err = CommonSettings::from_source(&src, "auth", 3001).unwrap_err();
        assert_eq!(err.name, "PORT");
        assert!(err.to_string().contains("eighty"), "{err}");
    }

    #[test]
    fn defaults_apply_and_secrets_stay_out_of_debug() {
        let src = [
            ("MONGODB_URI", "mongodb://user:hunter2@x"),
            ("REDIS_URL", "redis://x"),
            ("JWT_PUBLIC_KEY", KEY),
        ];
        let s = CommonSettings::from_source(&src, "auth", 3001).unwrap();
        assert_eq!(s.port, 3001);
        assert_eq!(s.mongodb_database, "auth");
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn key_path_that_does_not_exist_is_refused() {
        let src = [("JWT_PUBLIC_KEY", "/nonexistent/key.pem")];
        let err = pem(&src, "JWT_PUBLIC_KEY").unwrap_err();
        assert!(err.to_string().contains("unreadable file"), "{err}");
    }

    #[test]
    fn booleans_accept_common_spellings_only() {
        assert!(bool_or(&[("COOKIE_SECURE", "true")], "COOKIE_SECURE", false).unwrap());
        assert!(!bool_or(&[("COOKIE_SECURE", "0")], "COOKIE_SECURE", true).unwrap());
        assert!(bool_or(&[("COOKIE_SECURE", "maybe")], "COOKIE_SECURE", false).is_err());
    }
}
