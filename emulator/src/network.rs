//! What a connection looks like on the wire: optional TLS and a per-connection send-rate
//! cap, so tests and benchmarks can see OSS's network (HTTPS, per-connection throughput
//! well below the NIC) on loopback.
//!
//! Layering: TCP socket → [`Paced`] (the rate cap) → TLS (if configured) → hyper. Pacing
//! sits under TLS so the cap counts bytes on the wire, like a real link.
//!
//! Pacing is a token bucket per connection: tokens refill at the current rate (read from
//! a shared atomic on every write, so `POST /-/faults` changes open connections too) and
//! hold at most 10 ms of traffic (at least 64 KiB), which keeps bursts short without
//! turning every write into a timer wake-up. Only writes (server → client) are paced;
//! uploads are not capped.
//!
//! Pitfall: hyper picks vectored or flattened writes once per connection from
//! `is_write_vectored`; [`Paced`] reports the inner stream's answer and, when a cap is
//! active, writes only the first non-empty buffer (a legal partial write).

use std::io::{self, IoSlice};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::EmulatorError;

/// Any stream hyper can serve.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How connections of one listener are wrapped.
#[derive(Clone, Default)]
pub struct ConnSetup {
    pub tls: Option<TlsAcceptor>,
    /// Bytes per second per connection, 0 = unlimited (None: never paced).
    pub rate: Option<Arc<AtomicU64>>,
}

impl ConnSetup {
    /// Wraps an accepted socket: pacing, then the TLS handshake.
    pub async fn wrap(&self, stream: tokio::net::TcpStream) -> io::Result<Box<dyn Io>> {
        let stream: Box<dyn Io> = match &self.rate {
            Some(rate) => Box::new(Paced::new(stream, rate.clone())),
            None => Box::new(stream),
        };
        match &self.tls {
            Some(acceptor) => Ok(Box::new(acceptor.accept(stream).await?)),
            None => Ok(stream),
        }
    }
}

/// Builds a TLS acceptor from PEM files (certificate chain, private key).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, EmulatorError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        EmulatorError::InvalidConfig(format!("{what} {}: {e}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("cannot read the TLS certificate", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("cannot parse the TLS certificate", cert, &e))?;
    if certs.is_empty() {
        return Err(bad(
            "no certificate in",
            cert,
            &"expected PEM CERTIFICATE blocks",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad("cannot read the TLS private key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EmulatorError::InvalidConfig(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| EmulatorError::InvalidConfig(format!("TLS certificate/key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Smallest bucket, so a low rate still writes reasonably large segments.
const MIN_BURST: f64 = 64.0 * 1024.0;
/// Bucket depth in seconds of traffic.
const BURST_SECS: f64 = 0.010;

/// A stream whose writes are paced to a (live) byte rate.
pub struct Paced<S> {
    inner: S,
    rate: Arc<AtomicU64>,
    tokens: f64,
    last: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> Paced<S> {
    pub fn new(inner: S, rate: Arc<AtomicU64>) -> Self {
        Paced {
            inner,
            rate,
            tokens: 0.0,
            last: Instant::now(),
            sleep: None,
        }
    }

    /// How many bytes may be written now (≥ 1), or `Pending` with a timer armed.
    fn poll_allowance(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<usize> {
        loop {
            let rate = self.rate.load(Ordering::Relaxed);
            if rate == 0 {
                self.sleep = None;
                return Poll::Ready(want);
            }
            if let Some(s) = self.sleep.as_mut() {
                ready!(s.as_mut().poll(cx));
                self.sleep = None;
            }
            let rate = rate as f64;
            let burst = (rate * BURST_SECS).max(MIN_BURST);
            let now = Instant::now();
            self.tokens =
                (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(burst);
            self.last = now;
            // Wait for a worthwhile segment, not a trickle of tiny writes.
            let need = (want as f64).min(burst / 2.0).max(1.0);
            if self.tokens >= need {
                return Poll::Ready((self.tokens as usize).min(want).max(1));
            }
            let wait = (need - self.tokens) / rate;
            self.sleep = Some(Box::pin(tokio::time::sleep(
                std::time::Duration::from_secs_f64(wait),
            )));
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Paced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Paced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        let n = ready!(self.poll_allowance(cx, buf.len()));
        let r = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..n]));
        if let Ok(written) = &r
            && self.rate.load(Ordering::Relaxed) > 0
        {
            self.tokens -= *written as f64;
        }
        Poll::Ready(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.rate.load(Ordering::Relaxed) == 0 {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(first) => self.poll_write(cx, first),
            None => Poll::Ready(Ok(0)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn paced_writes_follow_the_rate() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let rate = Arc::new(AtomicU64::new(20_000_000)); // 20 MB/s
        let mut w = Paced::new(a, rate.clone());
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0usize;
            while total < 4_000_000 {
                total += b.read(&mut buf).await.unwrap();
            }
            total
        });
        let start = Instant::now();
        let data = vec![7u8; 4_000_000];
        w.write_all(&data).await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(reader.await.unwrap(), 4_000_000);
        let secs = start.elapsed().as_secs_f64();
        // 4 MB at 20 MB/s: 0.2 s (minus one initial burst at most).
        assert!(secs > 0.15, "too fast: {secs}");
        assert!(secs < 2.0, "too slow: {secs}");

        // Rate 0 lifts the cap at once.
        rate.store(0, Ordering::Relaxed);
        let (a, mut b) = tokio::io::duplex(8 << 20);
        let mut w = Paced::new(a, rate);
        let start = Instant::now();
        w.write_all(&vec![1u8; 4_000_000]).await.unwrap();
        assert!(start.elapsed().as_secs_f64() < 0.15);
        let mut got = vec![0u8; 10];
        b.read_exact(&mut got).await.unwrap();
    }
}
