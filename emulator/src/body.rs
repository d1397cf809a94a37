//! Request and response bodies.
//!
//! Request bodies are streamed into a temp file (never held in memory), hashing as they
//! go. Response bodies of objects are streamed from the data file in 2 MiB chunks, each
//! a memory map made on the blocking pool ([`super::mmap`]; `pread` if mapping fails),
//! two chunks in flight, so one connection keeps the page cache and the socket busy at
//! the same time and each byte is copied once (into the socket). Injected body faults wrap that
//! stream: `reset` yields an error part-way and sets SO_LINGER 0, so hyper's close of the
//! connection is a TCP RST; `truncate` ends it early (hyper sees the body end before
//! `Content-Length` and closes normally).

use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt, TryStreamExt};
use http::header;
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};

use super::error::OssError;
use super::faults::FaultDecision;
use super::mmap::MappedRange;
use super::stats::Stats;
use super::storage::{Bucket, Content, StagedFile};

/// The raw socket of the connection a request arrived on, so an injected reset can make
/// the close a real TCP RST (SO_LINGER 0) instead of a FIN.
#[derive(Debug, Clone, Copy)]
pub struct ConnSocket(pub RawFd);

impl ConnSocket {
    /// Makes the coming close of this connection send RST.
    pub fn reset_on_close(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the fd belongs to the connection whose response body is being polled,
        // so it is open; SO_LINGER only changes how the kernel closes it.
        unsafe {
            libc::setsockopt(
                self.0,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast::<libc::c_void>(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

/// The body type of every emulator response.
pub type RespBody = UnsyncBoxBody<Bytes, io::Error>;

const CHUNK: u64 = 2 << 20;

pub fn full(data: impl Into<Bytes>) -> RespBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> RespBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A response builder with `status` (an invalid code becomes 200).
pub fn response(status: u16) -> http::response::Builder {
    Response::builder().status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
}

/// An XML reply with its content type and length.
pub fn xml_response(status: u16, body: String) -> Result<Response<RespBody>, OssError> {
    response(status)
        .header(header::CONTENT_TYPE, "application/xml")
        .header(header::CONTENT_LENGTH, body.len())
        .body(full(body))
        .map_err(|e| OssError::internal(e.to_string()))
}

/// Streams `len` bytes of `content` from `offset`, applying a body fault if any.
pub fn file_body(
    content: Arc<Content>,
    offset: u64,
    len: u64,
    stats: Arc<Stats>,
    fault: FaultDecision,
    socket: Option<ConnSocket>,
) -> RespBody {
    // Chunks never cross a file of a multi-file (completed multipart) object.
    let chunks = content.spans(offset, len, CHUNK);
    let reads = futures::stream::iter(chunks)
        .map(move |span| {
            let content = content.clone();
            async move {
                tokio::task::spawn_blocking(move || -> io::Result<Bytes> {
                    let (file, off, n) = (content.file(span.segment), span.file_offset, span.len);
                    match MappedRange::new(file, off, n) {
                        Ok(map) => Ok(Bytes::from_owner(map)),
                        Err(e) => {
                            tracing::debug!(error = %e, "mmap failed, reading instead");
                            let mut buf = vec![0u8; n];
                            file.read_exact_at(&mut buf, off)?;
                            Ok(Bytes::from(buf))
                        }
                    }
                })
                .await
                .map_err(io::Error::other)?
            }
        })
        .buffered(2)
        .boxed();
    let (mode, permille) = match fault {
        FaultDecision::Reset { permille } => (CutMode::Reset, permille),
        FaultDecision::Truncate { permille } => (CutMode::Truncate, permille),
        _ => (CutMode::None, 1000),
    };
    let stream = CutStream {
        inner: reads,
        // At least one byte, so hyper flushes the headers before the cut.
        allowed: (len.saturating_mul(permille as u64) / 1000).max(1),
        mode,
        yield_once: false,
        error_next: false,
        done: false,
        stats,
        socket,
    };
    StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CutMode {
    None,
    Reset,
    Truncate,
}

/// Passes chunks through, counting bytes out; cuts the stream for injected faults.
struct CutStream {
    inner: BoxStream<'static, io::Result<Bytes>>,
    /// Bytes still allowed before the cut (ignored when mode is None).
    allowed: u64,
    mode: CutMode,
    /// Return Pending once before cutting, so hyper flushes what it has buffered (it
    /// drops unflushed bytes, headers included, when a body ends early).
    yield_once: bool,
    error_next: bool,
    done: bool,
    stats: Arc<Stats>,
    socket: Option<ConnSocket>,
}

impl Stream for CutStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.yield_once {
            this.yield_once = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.error_next {
            this.error_next = false;
            this.done = true;
            if let Some(socket) = this.socket {
                socket.reset_on_close();
            }
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "injected connection reset",
            ))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(mut chunk))) => {
                if this.mode != CutMode::None && chunk.len() as u64 >= this.allowed {
                    chunk.truncate(this.allowed as usize);
                    this.yield_once = true;
                    this.error_next = this.mode == CutMode::Reset;
                    this.done = this.mode == CutMode::Truncate;
                    if chunk.is_empty() {
                        return self.poll_next(cx);
                    }
                }
                this.allowed = this.allowed.saturating_sub(chunk.len() as u64);
                this.stats.bytes_out(chunk.len() as u64);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "reading object data failed mid-body");
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Streams a request body into a staged temp file of `bucket`, refusing more than `limit`
/// bytes (`EntityTooLarge`).
pub async fn stage_body(
    bucket: &Bucket,
    mut body: Incoming,
    stats: &Stats,
    limit: u64,
) -> Result<StagedFile, OssError> {
    let mut stager = bucket.stager().await?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            OssError::new(
                400,
                "IncompleteBody",
                format!("reading the request body failed: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            stats.bytes_in(data.len() as u64);
            if stager.size() + data.len() as u64 > limit {
                return Err(OssError::new(
                    400,
                    "EntityTooLarge",
                    "Your proposed upload exceeds the maximum allowed object size.",
                ));
            }
            stager.write(data).await?;
        }
    }
    Ok(stager.finish().await?)
}

/// Reads a small request body (XML documents) into memory, at most `limit` bytes.
pub async fn read_small_body(
    mut body: Incoming,
    stats: &Stats,
    limit: usize,
) -> Result<Vec<u8>, OssError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            OssError::new(
                400,
                "IncompleteBody",
                format!("reading the request body failed: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            stats.bytes_in(data.len() as u64);
            if out.len() + data.len() > limit {
                return Err(OssError::new(
                    400,
                    "EntityTooLarge",
                    "The request body is too large.",
                ));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}
