//! One parsed request ([`Ctx`]: method, headers, bucket, key, decoded [`Query`]), as the
//! front ([`crate::server`]) builds it and authentication and the operations read it.
//! A module of its own so that neither depends on the other (nor on the state, which
//! holds the authenticator).

use http::{HeaderMap, Method};
use percent_encoding::percent_decode_str;

use super::body::ConnSocket;
use super::error::OssError;

/// Decoded query parameters, in the order sent. A bare `name` has no value (`None`),
/// which the signature code treats like an empty one.
#[derive(Debug, Clone, Default)]
pub struct Query(pub Vec<(String, Option<String>)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, OssError> {
        let mut items = Vec::new();
        for item in raw.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            let dec = |s: &str| {
                percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| OssError::invalid_argument("query parameter is not valid UTF-8"))
            };
            match item.split_once('=') {
                Some((n, v)) => items.push((dec(n)?, Some(dec(v)?))),
                None => items.push((dec(item)?, None)),
            }
        }
        Ok(Query(items))
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

/// One parsed request, minus its body. No Debug: the headers hold the security token.
pub struct Ctx {
    pub method: Method,
    pub headers: HeaderMap,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub query: Query,
    pub request_id: String,
    /// Whether the bucket came from the Host header.
    pub virtual_hosted: bool,
    /// The connection's socket (for injected resets).
    pub socket: Option<ConnSocket>,
}

impl Ctx {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
