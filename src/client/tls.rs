//! HTTPS trust, like the rest of the system.
//!
//! Trusted roots are the system's CA store, read at client start by rustls-native-certs:
//! `SSL_CERT_FILE` and/or `SSL_CERT_DIR` when set (they replace the system store, as
//! with OpenSSL), else the distribution's bundle (`/etc/ssl/certs/…`, from the
//! `ca-certificates` package). No roots are compiled in, so a package or image must carry
//! or depend on the system bundle. `--ca-cert FILE` adds the certificates of one PEM file
//! on top (a private CA, a TLS-inspecting proxy).
//!
//! A certificate the roots do not vouch for is not a network hiccup: it is reported at
//! once (no retries) as one line naming the host and the reason, with what to do.

use std::path::Path;

use crate::store::StoreError;

/// Adds the certificates of the PEM file `path` to `builder`'s trusted roots.
pub(crate) fn add_ca_file(
    builder: reqwest::ClientBuilder,
    path: &Path,
) -> Result<reqwest::ClientBuilder, StoreError> {
    let pem = std::fs::read(path).map_err(|e| {
        StoreError::InvalidArgument(format!("cannot read --ca-cert {}: {e}", path.display()))
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        StoreError::InvalidArgument(format!(
            "--ca-cert {} is not a PEM certificate file: {e}",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(StoreError::InvalidArgument(format!(
            "--ca-cert {} holds no PEM CERTIFICATE block",
            path.display()
        )));
    }
    Ok(certs
        .into_iter()
        .fold(builder, |b, c| b.add_root_certificate(c)))
}

/// The rustls error somewhere in `e`'s source chain (io::Error hides its payload from
/// `source()`, so each io::Error is opened by hand).
fn find_rustls_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a tokio_rustls::rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<tokio_rustls::rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<tokio_rustls::rustls::Error>()
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// Words for a certificate rejection.
fn reason(e: &tokio_rustls::rustls::Error) -> Option<String> {
    use tokio_rustls::rustls::{CertificateError, Error};
    let Error::InvalidCertificate(c) = e else {
        return None;
    };
    Some(match c {
        CertificateError::UnknownIssuer => {
            "it is signed by a CA this machine does not trust".to_string()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "it is not valid for this host name".to_string()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet (check the local clock)".to_string()
        }
        CertificateError::Revoked => "it has been revoked".to_string(),
        other => format!("{other:?}"),
    })
}

/// Words for rustls's rendering `invalid peer certificate: <Variant>`, for chains where
/// the typed error is out of reach (reqwest boxes the connector's error privately).
fn reason_from_text(chain: &str) -> Option<String> {
    let (_, rest) = chain.split_once("invalid peer certificate: ")?;
    let variant: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    Some(match variant.as_str() {
        "UnknownIssuer" => "it is signed by a CA this machine does not trust".to_string(),
        "NotValidForName" | "NotValidForNameContext" => {
            "it is not valid for this host name".to_string()
        }
        "Expired" | "ExpiredContext" => "it has expired".to_string(),
        "NotValidYet" | "NotValidYetContext" => {
            "it is not valid yet (check the local clock)".to_string()
        }
        "Revoked" => "it has been revoked".to_string(),
        "" => return None,
        other => other.to_string(),
    })
}

/// A fatal, one-line error when `e` is a rejected server certificate.
pub(crate) fn certificate_failure(e: &reqwest::Error, endpoint: &str) -> Option<StoreError> {
    let why = match find_rustls_error(e).and_then(reason) {
        Some(w) => w,
        None => reason_from_text(&crate::credentials::ecs_ram_role::error_chain(e))?,
    };
    let host = e
        .url()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| endpoint.to_string());
    Some(StoreError::Network {
        endpoint: endpoint.to_string(),
        message: format!(
            "the TLS certificate of {host} was rejected: {why} (trust its CA with --ca-cert FILE or SSL_CERT_FILE, or use --disable-ssl for a plain-HTTP endpoint)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_renderings_become_words() {
        let chain = "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer";
        assert_eq!(
            reason_from_text(chain).as_deref(),
            Some("it is signed by a CA this machine does not trust")
        );
        assert_eq!(
            reason_from_text("invalid peer certificate: NotValidForNameContext { expected: .. }")
                .as_deref(),
            Some("it is not valid for this host name")
        );
        assert_eq!(reason_from_text("connection refused"), None);
    }
}
