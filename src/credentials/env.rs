//! Credentials from environment variables, and the environment abstraction the chain uses.
//!
//! Two families are read, in this order (see the chain order in [`super`]):
//! `OSS_ACCESS_KEY_ID` / `OSS_ACCESS_KEY_SECRET` / `OSS_SESSION_TOKEN` (the OSS SDKs'
//! `EnvironmentVariableCredentialsProvider`) and `ALIBABA_CLOUD_ACCESS_KEY_ID` /
//! `ALIBABA_CLOUD_ACCESS_KEY_SECRET` / `ALIBABA_CLOUD_SECURITY_TOKEN` (credentials-go's
//! default chain).
//!
//! Pitfall: the process environment is global, so tests that set variables race with each
//! other. Everything here reads through [`EnvLookup`], and tests pass a map instead.

use std::collections::HashMap;

use super::{Credentials, CredentialsError, Secret, StaticProvider};

/// Read access to environment variables. Empty values count as unset.
pub trait EnvLookup: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;

    /// `true`/`1`/`yes` (any case) → true.
    fn flag(&self, name: &str) -> bool {
        self.var(name)
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
            .unwrap_or(false)
    }
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl EnvLookup for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).cloned()
    }
}

/// The names of one family of access-key variables.
#[derive(Debug, Clone, Copy)]
pub struct EnvKeyNames {
    pub id: &'static str,
    pub secret: &'static str,
    pub token: &'static str,
}

/// `OSS_ACCESS_KEY_ID` family.
pub const OSS_ENV: EnvKeyNames = EnvKeyNames {
    id: "OSS_ACCESS_KEY_ID",
    secret: "OSS_ACCESS_KEY_SECRET",
    token: "OSS_SESSION_TOKEN",
};

/// `ALIBABA_CLOUD_ACCESS_KEY_ID` family.
pub const ALIBABA_CLOUD_ENV: EnvKeyNames = EnvKeyNames {
    id: "ALIBABA_CLOUD_ACCESS_KEY_ID",
    secret: "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    token: "ALIBABA_CLOUD_SECURITY_TOKEN",
};

/// Static credentials from one family of variables.
///
/// `Ok(None)` when the id and the secret are both unset; an error when only one of them is
/// set (a half-configured source must not silently fall through to another identity).
pub fn from_env(
    env: &dyn EnvLookup,
    names: EnvKeyNames,
) -> Result<Option<StaticProvider>, CredentialsError> {
    let id = env.var(names.id).map(|v| v.trim().to_string());
    let secret = env.var(names.secret).map(|v| v.trim().to_string());
    match (id, secret) {
        (None, None) => Ok(None),
        (Some(id), Some(secret)) => {
            let mut creds = Credentials::new(id, secret);
            creds.security_token = env.var(names.token).map(|t| Secret::new(t.trim()));
            Ok(Some(StaticProvider {
                creds,
                source: format!("environment {}", names.id),
            }))
        }
        (Some(_), None) => Err(CredentialsError(format!(
            "{} is set but {} is not; set both (or unset {})",
            names.id, names.secret, names.id
        ))),
        (None, Some(_)) => Err(CredentialsError(format!(
            "{} is set but {} is not; set both (or unset {})",
            names.secret, names.id, names.secret
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_id_secret_and_token() {
        let e = env(&[
            ("OSS_ACCESS_KEY_ID", "AKID"),
            ("OSS_ACCESS_KEY_SECRET", "s3cr3t"),
            ("OSS_SESSION_TOKEN", "tok"),
        ]);
        let p = from_env(&e, OSS_ENV).unwrap().unwrap();
        assert_eq!(p.creds.access_key_id, "AKID");
        assert_eq!(p.creds.access_key_secret.expose(), "s3cr3t");
        assert_eq!(p.creds.security_token.as_ref().unwrap().expose(), "tok");
        assert_eq!(p.source, "environment OSS_ACCESS_KEY_ID");
    }

    #[test]
    fn absent_is_none_and_empty_is_absent() {
        let e = env(&[("ALIBABA_CLOUD_ACCESS_KEY_ID", "")]);
        assert!(from_env(&e, ALIBABA_CLOUD_ENV).unwrap().is_none());
    }

    #[test]
    fn half_configured_is_an_error_without_the_secret() {
        let e = env(&[("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "topsecret")]);
        let err = from_env(&e, ALIBABA_CLOUD_ENV).unwrap_err().to_string();
        assert!(err.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"), "{err}");
        assert!(!err.contains("topsecret"));
    }

    #[test]
    fn flags() {
        let e = env(&[("A", "TRUE"), ("B", "no")]);
        assert!(e.flag("A"));
        assert!(!e.flag("B"));
        assert!(!e.flag("C"));
    }
}
