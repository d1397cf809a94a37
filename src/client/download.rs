//! Streaming download bodies: length and CRC checks at the end of the stream, and
//! resumption after a connection break.
//!
//! The stream holds back one chunk, so that when the body turns out short or corrupt the
//! consumer gets an error *instead of* the last chunk and never sees a clean end of a bad
//! body. When the connection breaks mid-body (reset, read timeout, short body), it asks
//! for the rest with a ranged GET pinned by `If-Match` to the ETag of the first reply, at
//! most `max_attempts − 1` times with the usual backoff; a changed object then fails with
//! 412 instead of mixing two versions. The CRC keeps running over the resumed bytes.

use bytes::Bytes;
use futures::StreamExt;

use super::OssClient;
use super::error::header_str;
use super::retry::RetryReason;
use crate::crc64::Crc64Hasher;
use crate::store::{StoreError, StoreResult};

/// How a broken streaming GET continues: a new ranged GET from where it stopped, pinned
/// to the same ETag with `If-Match`.
pub(crate) struct Resume {
    pub(crate) client: OssClient,
    pub(crate) etag: String,
    /// Absolute offset of the first byte of the original body.
    pub(crate) start: u64,
    pub(crate) attempts_left: u32,
    /// Resumptions so far (for the backoff).
    pub(crate) retry: u32,
}

/// A streaming GET body that checks length and CRC at the end, and resumes after a
/// connection break (see the module docs).
pub(crate) struct BodyStream {
    pub(crate) inner: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    /// Held back so the last chunk can be replaced by an error.
    pub(crate) pending: Option<Bytes>,
    pub(crate) hasher: Option<Crc64Hasher>,
    pub(crate) expected_crc: Option<u64>,
    pub(crate) received: u64,
    pub(crate) expected_len: u64,
    pub(crate) timeout: std::time::Duration,
    pub(crate) key: String,
    pub(crate) endpoint: String,
    pub(crate) done: bool,
    pub(crate) resume: Option<Resume>,
}

impl BodyStream {
    /// Replaces the broken body with the rest of the object. `Err(None)` = give up with
    /// the original error; `Err(Some(e))` = the server answered the resume with an error
    /// that says more (412: the object changed), which replaces the original one.
    async fn try_resume(&mut self, reason: RetryReason) -> Result<(), Option<StoreError>> {
        let Some(r) = self.resume.as_mut() else {
            return Err(None);
        };
        if r.attempts_left == 0 {
            return Err(None);
        }
        r.attempts_left -= 1;
        r.retry += 1;
        ::metrics::counter!(crate::metrics::OSS_RETRIES, "op" => "GetObject", "reason" => reason.as_str())
            .increment(1);
        tokio::time::sleep(r.client.inner.backoff.delay(r.retry)).await;
        let from = r.start + self.received;
        let end = r.start + self.expected_len;
        tracing::debug!(key = %self.key, from, end, "resuming GetObject body");
        let req = r
            .client
            .ranged_get(&self.key, Some(&(from..end)), Some(&r.etag));
        let sent = r.client.execute(&req).await.map_err(|e| {
            tracing::debug!(key = %self.key, error = %e, "resuming GetObject failed");
            e.service().is_some().then_some(e)
        })?;
        let h = sent.resp.headers();
        let ok = sent.resp.status().as_u16() == 206
            && header_str(h, "content-range")
                .and_then(parse_content_range)
                .is_some_and(|(a, b, _)| a == from && b + 1 == end);
        if !ok {
            return Err(None);
        }
        self.inner = sent.resp.bytes_stream().boxed();
        Ok(())
    }

    pub(crate) fn into_stream(self) -> futures::stream::BoxStream<'static, StoreResult<Bytes>> {
        futures::stream::unfold(self, |mut st| async move {
            if st.done {
                return None;
            }
            loop {
                let next = tokio::time::timeout(st.timeout, st.inner.next()).await;
                match next {
                    Err(_) => {
                        match st.try_resume(RetryReason::Timeout).await {
                            Ok(()) => continue,
                            Err(Some(e)) => {
                                st.done = true;
                                return Some((Err(e), st));
                            }
                            Err(None) => {}
                        }
                        st.done = true;
                        let e = StoreError::Timeout {
                            what: format!("reading {} from {}", st.key, st.endpoint),
                            secs: st.timeout.as_secs().max(1),
                        };
                        return Some((Err(e), st));
                    }
                    Ok(Some(Err(e))) => {
                        match st.try_resume(RetryReason::Network).await {
                            Ok(()) => continue,
                            Err(Some(e)) => {
                                st.done = true;
                                return Some((Err(e), st));
                            }
                            Err(None) => {}
                        }
                        st.done = true;
                        let e = StoreError::Network {
                            endpoint: st.endpoint.clone(),
                            message: format!(
                                "reading {} after {} of {} bytes: {}",
                                st.key,
                                st.received,
                                st.expected_len,
                                crate::credentials::ecs_ram_role::error_chain(&e)
                            ),
                        };
                        return Some((Err(e), st));
                    }
                    Ok(Some(Ok(chunk))) => {
                        if chunk.is_empty() {
                            continue;
                        }
                        ::metrics::counter!(crate::metrics::OSS_BYTES_READ)
                            .increment(chunk.len() as u64);
                        st.received += chunk.len() as u64;
                        if st.received > st.expected_len {
                            st.done = true;
                            let e = StoreError::InvalidResponse {
                                operation: "GetObject".into(),
                                message: format!(
                                    "body longer than the {} bytes promised",
                                    st.expected_len
                                ),
                            };
                            return Some((Err(e), st));
                        }
                        if let Some(h) = st.hasher.as_mut() {
                            h.update(&chunk);
                        }
                        if let Some(prev) = st.pending.replace(chunk) {
                            return Some((Ok(prev), st));
                        }
                    }
                    Ok(None) => {
                        if st.received < st.expected_len {
                            match st.try_resume(RetryReason::ShortBody).await {
                                Ok(()) => continue,
                                Err(Some(e)) => {
                                    st.done = true;
                                    return Some((Err(e), st));
                                }
                                Err(None) => {}
                            }
                            st.done = true;
                            let e = StoreError::Network {
                                endpoint: st.endpoint.clone(),
                                message: format!(
                                    "short body for {}: received {} of {} bytes",
                                    st.key, st.received, st.expected_len
                                ),
                            };
                            return Some((Err(e), st));
                        }
                        st.done = true;
                        if let (Some(h), Some(server)) = (&st.hasher, st.expected_crc) {
                            let client = h.finish();
                            if client != server {
                                let e = StoreError::CrcMismatch {
                                    key: st.key.clone(),
                                    client,
                                    server,
                                };
                                return Some((Err(e), st));
                            }
                        }
                        return st.pending.take().map(|p| (Ok(p), st));
                    }
                }
            }
        })
        .boxed()
    }
}

/// `bytes a-b/total` → (a, b, total).
pub(crate) fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    Some((
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crc64::crc64;

    #[tokio::test]
    async fn body_stream_replaces_last_chunk_on_crc_mismatch() {
        let chunks: Vec<reqwest::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ];
        let make = |crc: u64| BodyStream {
            inner: futures::stream::iter(chunks.clone_ok()).boxed(),
            pending: None,
            hasher: Some(Crc64Hasher::new()),
            expected_crc: Some(crc),
            received: 0,
            expected_len: 11,
            timeout: std::time::Duration::from_secs(5),
            key: "k".into(),
            endpoint: "e".into(),
            done: false,
            resume: None,
        };
        let good: Vec<_> = make(crc64(b"hello world")).into_stream().collect().await;
        assert_eq!(good.len(), 2);
        assert!(good.iter().all(|r| r.is_ok()));
        let bad: Vec<_> = make(1).into_stream().collect().await;
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].as_ref().unwrap(), &Bytes::from_static(b"hello "));
        assert!(matches!(bad[1], Err(StoreError::CrcMismatch { .. })));
    }

    #[tokio::test]
    async fn body_stream_reports_short_body() {
        let st = BodyStream {
            inner: futures::stream::iter(vec![Ok(Bytes::from_static(b"abc"))]).boxed(),
            pending: None,
            hasher: None,
            expected_crc: None,
            received: 0,
            expected_len: 10,
            timeout: std::time::Duration::from_secs(5),
            key: "k".into(),
            endpoint: "e".into(),
            done: false,
            resume: None,
        };
        let items: Vec<_> = st.into_stream().collect().await;
        assert_eq!(items.len(), 1);
        let msg = items[0].as_ref().unwrap_err().to_string();
        assert!(msg.contains("received 3 of 10"), "{msg}");
    }

    trait CloneOk {
        fn clone_ok(&self) -> Vec<reqwest::Result<Bytes>>;
    }
    impl CloneOk for Vec<reqwest::Result<Bytes>> {
        fn clone_ok(&self) -> Vec<reqwest::Result<Bytes>> {
            self.iter()
                .filter_map(|r| r.as_ref().ok().cloned())
                .map(Ok)
                .collect()
        }
    }
}
