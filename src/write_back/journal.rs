//! The write-back journal: what the store must replay after a crash, as an append-only file
//! of checksummed records.
//!
//! # Format (version 1)
//! ```text
//! header (32 bytes):  magic "ossmwbj\0" | u32 version | u32 header_len (32)
//!                     | u64 seq_floor | u64 crc64(the 24 bytes before it)
//! frame (24 + n):     u32 payload_len | u32 json_len | u64 seq
//!                     | u64 crc64(the 16 bytes before it ‖ payload) | payload
//! payload:            json_len bytes of JSON (a [`JournalRecord`])
//!                     ‖ payload_len - json_len bytes of inline file data (Put only)
//! ```
//! All integers are little-endian; CRC-64/XZ ([`crate::crc64`]). Sequence numbers increase
//! strictly from frame to frame and never go below `seq_floor`, so they stay unique across
//! compactions (which drop settled frames but keep the numbers of the live ones).
//!
//! The record itself is JSON (serde, externally tagged): records are small next to the
//! fdatasync that follows them, JSON is readable in a hex dump when something goes wrong,
//! and new optional fields can be added without a format change (a change old binaries
//! would misread bumps `version`; a journal of a newer version is refused, never replayed
//! or rewritten).
//!
//! # Replay
//! The writer keeps the file longer than its frames, filled with zeros (preallocation, see
//! [`super::store`]): where only zeros are left, the journal ends cleanly.
//! `read_journal` reads frames until the first one that is incomplete or fails its
//! checksum, its sequence check or its decoding. Everything before it is trusted; it and
//! everything after it are dropped. Two cases are told apart for the log: a *torn tail*
//! (no valid frame follows the bad one: a write the crash interrupted, never acknowledged,
//! so nothing is lost) and *corruption in the middle* (a valid frame follows: acknowledged
//! records may be lost; the caller keeps a copy of the file). "Follows" is checked where
//! the bad frame's length says it ends; when the length itself is impossible, a large
//! remainder counts as corruption, a small one as torn.
//!
//! # Pitfalls
//! - The frame length is covered by the checksum, so garbage cannot make replay skip valid
//!   records or read past a frame; lengths above `MAX_PAYLOAD` are rejected before any
//!   allocation.
//! - A crash after a non-synced append can leave a tail of zeros (the size was written, the
//!   data not): zeros fail the checksum like any other garbage.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

use crate::crc64::{Crc64Hasher, crc64};

/// First bytes of every journal file.
pub(crate) const MAGIC: &[u8; 8] = b"ossmwbj\0";
/// The format this code writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Size of the file header.
pub(crate) const HEADER_LEN: u64 = 32;
/// Size of a frame header.
pub(crate) const FRAME_HEADER_LEN: u64 = 24;
/// Largest payload accepted (record JSON plus inline data).
pub(crate) const MAX_PAYLOAD: u64 = 16 * 1024 * 1024;

/// Metadata a pending object is uploaded with: `x-oss-meta-*` (and similar) header pairs
/// produced by the fs layer, opaque here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMeta {
    pub headers: Vec<(String, String)>,
}

/// What the object was when the file was opened or created, for the conflict check before
/// the upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// The key did not exist (upload with `x-oss-forbid-overwrite: true`).
    Absent,
    /// The object had this ETag.
    ETag(String),
    /// No check (the caller does not care what is there).
    Any,
}

/// One journaled operation.
///
/// Every record but `Settled` is *live* (returned by [`super::WriteBackStore::open`],
/// kept by compaction) until a `Settled` names it: the queue settles each record once
/// what it asks for is done on the server (an `Unlink` or `Rename` may still have to
/// delete keys after the uploads before it finished), so an unsettled record keeps
/// [`super::WriteBackStore::settled_seq`] from passing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalRecord {
    /// Upload the content of data file `data_id` (`size` bytes) as `key`.
    Put {
        key: String,
        data_id: u64,
        size: u64,
        meta: PendingMeta,
        expect: Expect,
    },
    /// The pending file `key` was unlinked.
    Unlink { key: String },
    /// `from` was renamed to `to`: a key, or a `"dir/"` prefix (a directory rename moves
    /// every pending key under it).
    Rename { from: String, to: String },
    /// The pending file's metadata changed (chmod/chown/utime).
    SetMeta { key: String, meta: PendingMeta },
    /// The record `seq` is done (uploaded, kept as a conflict, or moot).
    Settled { seq: u64 },
}

impl JournalRecord {
    /// The data file a `Put` uploads.
    pub fn data_id(&self) -> Option<u64> {
        match self {
            JournalRecord::Put { data_id, .. } => Some(*data_id),
            _ => None,
        }
    }
}

/// Encodes the file header.
pub(crate) fn encode_header(seq_floor: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&seq_floor.to_le_bytes());
    let crc = crc64(&h[0..24]);
    h[24..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Encodes one frame: the record as JSON followed by `inline` data.
pub(crate) fn encode_frame(seq: u64, rec: &JournalRecord, inline: &[u8]) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(rec).map_err(io::Error::other)?;
    let payload_len = json.len() as u64 + inline.len() as u64;
    if payload_len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("journal record of {payload_len} bytes exceeds the limit of {MAX_PAYLOAD}"),
        ));
    }
    let mut frame = Vec::with_capacity((FRAME_HEADER_LEN + payload_len) as usize);
    frame.extend_from_slice(&(payload_len as u32).to_le_bytes());
    frame.extend_from_slice(&(json.len() as u32).to_le_bytes());
    frame.extend_from_slice(&seq.to_le_bytes());
    let mut hasher = Crc64Hasher::new();
    hasher.update(&frame[0..16]);
    hasher.update(&json);
    hasher.update(inline);
    frame.extend_from_slice(&hasher.finish().to_le_bytes());
    frame.extend_from_slice(&json);
    frame.extend_from_slice(inline);
    Ok(frame)
}

/// A frame read back from the journal (inline data stays in the file: see
/// [`ReplayedFrame::inline_offset`]).
#[derive(Debug, Clone)]
pub(crate) struct ReplayedFrame {
    pub(crate) seq: u64,
    pub(crate) record: JournalRecord,
    /// Offset of the frame in the file, and its total length (header included).
    pub(crate) offset: u64,
    pub(crate) len: u64,
    /// Inline data, if any: `inline_len` bytes at `inline_offset`.
    pub(crate) inline_offset: u64,
    pub(crate) inline_len: u64,
}

/// Why replay stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The last frame is incomplete or damaged and nothing follows it (a write the crash
    /// interrupted).
    TornTail { offset: u64, dropped_bytes: u64 },
    /// A damaged frame with more bytes after it.
    Corrupt {
        offset: u64,
        dropped_bytes: u64,
        reason: String,
    },
}

/// The result of reading a journal file.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub(crate) seq_floor: u64,
    pub(crate) frames: Vec<ReplayedFrame>,
    /// Where trusted content ends.
    pub(crate) valid_len: u64,
    pub(crate) stop: Option<StopReason>,
}

/// A journal that must not be replayed or rewritten (wrong magic, newer version, bad header).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadHeader(pub(crate) String);

/// Reads the journal `file` (of length `file_len`). An empty file is an empty journal.
pub(crate) fn read_journal(file: &File, file_len: u64) -> io::Result<Result<Replay, BadHeader>> {
    if file_len == 0 {
        return Ok(Ok(Replay {
            valid_len: 0,
            ..Replay::default()
        }));
    }
    if file_len < HEADER_LEN {
        return Ok(Err(BadHeader(format!(
            "the journal is {file_len} bytes, shorter than its {HEADER_LEN}-byte header"
        ))));
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)?;
    if &header[0..8] != MAGIC {
        return Ok(Err(BadHeader(
            "not an ossmount write-back journal (bad magic)".into(),
        )));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().unwrap());
    let crc = u64::from_le_bytes(header[24..32].try_into().unwrap());
    if crc != crc64(&header[0..24]) {
        return Ok(Err(BadHeader(
            "the journal header fails its checksum".into(),
        )));
    }
    if version != VERSION {
        return Ok(Err(BadHeader(format!(
            "journal format version {version} (this ossmount reads version {VERSION}); \
             use the ossmount that wrote it to drain the store"
        ))));
    }
    let header_len = u32::from_le_bytes(header[12..16].try_into().unwrap()) as u64;
    if header_len != HEADER_LEN {
        return Ok(Err(BadHeader(format!(
            "unexpected journal header length {header_len}"
        ))));
    }
    let seq_floor = u64::from_le_bytes(header[16..24].try_into().unwrap());

    let mut replay = Replay {
        seq_floor,
        valid_len: HEADER_LEN,
        ..Replay::default()
    };
    let mut reader = io::BufReader::with_capacity(256 * 1024, file);
    // BufReader over &File reads from the current position: start after the header.
    {
        use std::io::Seek;
        reader.seek(io::SeekFrom::Start(HEADER_LEN))?;
    }
    let mut offset = HEADER_LEN;
    let mut last_seq: Option<u64> = None;
    let mut payload = Vec::new();
    while offset < file_len {
        // The committer writes zeros ahead of its records: where they start, the records
        // end. (A frame never starts with zeros all the way to the end of the file: its
        // checksum and JSON are never all zeros.)
        if starts_zero_tail(&mut reader, offset, file_len)? {
            break;
        }
        // Corruption in the middle when a valid frame follows the bad one; otherwise the
        // rest is the remains of an interrupted write (garbage, zeros).
        let stop = |reason: String, frame_end: u64| {
            if !valid_frame_at(file, frame_end, file_len) {
                StopReason::TornTail {
                    offset,
                    dropped_bytes: file_len - offset,
                }
            } else {
                StopReason::Corrupt {
                    offset,
                    dropped_bytes: file_len - offset,
                    reason,
                }
            }
        };
        let remaining = file_len - offset;
        if remaining < FRAME_HEADER_LEN {
            replay.stop = Some(stop("incomplete frame header".into(), file_len));
            break;
        }
        let mut fh = [0u8; FRAME_HEADER_LEN as usize];
        reader.read_exact(&mut fh)?;
        let payload_len = u32::from_le_bytes(fh[0..4].try_into().unwrap()) as u64;
        let json_len = u32::from_le_bytes(fh[4..8].try_into().unwrap()) as u64;
        let seq = u64::from_le_bytes(fh[8..16].try_into().unwrap());
        let crc = u64::from_le_bytes(fh[16..24].try_into().unwrap());
        let frame_end = offset.saturating_add(FRAME_HEADER_LEN + payload_len);
        if payload_len > MAX_PAYLOAD || json_len > payload_len {
            // The length itself is garbage: where this frame would end is unknown, so
            // whether a valid frame follows is too. A torn write never produces such a
            // length, so call it corruption unless it is in the last 64 KiB.
            replay.stop = Some(if remaining <= 64 * 1024 {
                StopReason::TornTail {
                    offset,
                    dropped_bytes: remaining,
                }
            } else {
                StopReason::Corrupt {
                    offset,
                    dropped_bytes: remaining,
                    reason: format!("impossible frame length {payload_len}"),
                }
            });
            break;
        }
        if frame_end > file_len {
            replay.stop = Some(stop("incomplete frame".into(), file_len));
            break;
        }
        payload.resize(payload_len as usize, 0);
        reader.read_exact(&mut payload)?;
        let mut hasher = Crc64Hasher::new();
        hasher.update(&fh[0..16]);
        hasher.update(&payload);
        if hasher.finish() != crc {
            replay.stop = Some(stop("checksum mismatch".into(), frame_end));
            break;
        }
        if let Some(last) = last_seq
            && seq <= last
        {
            replay.stop = Some(stop(
                format!("sequence number {seq} after {last}"),
                frame_end,
            ));
            break;
        }
        if seq < seq_floor {
            replay.stop = Some(stop(
                format!("sequence number {seq} below the header's floor {seq_floor}"),
                frame_end,
            ));
            break;
        }
        let record: JournalRecord = match serde_json::from_slice(&payload[..json_len as usize]) {
            Ok(r) => r,
            Err(e) => {
                replay.stop = Some(stop(format!("undecodable record: {e}"), frame_end));
                break;
            }
        };
        let inline_len = payload_len - json_len;
        if inline_len > 0 && !matches!(record, JournalRecord::Put { .. }) {
            replay.stop = Some(stop(
                "inline data on a record that is not a Put".into(),
                frame_end,
            ));
            break;
        }
        replay.frames.push(ReplayedFrame {
            seq,
            record,
            offset,
            len: FRAME_HEADER_LEN + payload_len,
            inline_offset: offset + FRAME_HEADER_LEN + json_len,
            inline_len,
        });
        last_seq = Some(seq);
        offset = frame_end;
        replay.valid_len = offset;
    }
    Ok(Ok(replay))
}

/// Whether the bytes from `offset` (the reader's position) to the end of the file are all
/// zeros. Peeks at the first bytes before reading further, so a frame costs one look.
fn starts_zero_tail(
    reader: &mut io::BufReader<&File>,
    offset: u64,
    file_len: u64,
) -> io::Result<bool> {
    use std::io::BufRead;
    let peek = reader.fill_buf()?;
    let n = peek
        .len()
        .min((file_len - offset) as usize)
        .min(FRAME_HEADER_LEN as usize);
    if peek[..n].iter().any(|&b| b != 0) {
        return Ok(false);
    }
    let file = *reader.get_ref();
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = offset;
    while off < file_len {
        let n = (file_len - off).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], off)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        off += n as u64;
    }
    Ok(true)
}

/// Whether a complete frame with a correct checksum starts at `offset`.
fn valid_frame_at(file: &File, offset: u64, file_len: u64) -> bool {
    if offset.saturating_add(FRAME_HEADER_LEN) > file_len {
        return false;
    }
    let mut fh = [0u8; FRAME_HEADER_LEN as usize];
    if file.read_exact_at(&mut fh, offset).is_err() {
        return false;
    }
    let payload_len = u32::from_le_bytes(fh[0..4].try_into().unwrap()) as u64;
    if payload_len > MAX_PAYLOAD || offset + FRAME_HEADER_LEN + payload_len > file_len {
        return false;
    }
    let mut payload = vec![0u8; payload_len as usize];
    if file
        .read_exact_at(&mut payload, offset + FRAME_HEADER_LEN)
        .is_err()
    {
        return false;
    }
    let mut hasher = Crc64Hasher::new();
    hasher.update(&fh[0..16]);
    hasher.update(&payload);
    hasher.finish() == u64::from_le_bytes(fh[16..24].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn put(key: &str, data_id: u64) -> JournalRecord {
        JournalRecord::Put {
            key: key.into(),
            data_id,
            size: 3,
            meta: PendingMeta {
                headers: vec![("x-oss-meta-mode".into(), "33188".into())],
            },
            expect: Expect::ETag("\"abc\"".into()),
        }
    }

    fn journal_with(frames: &[Vec<u8>]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&encode_header(7)).unwrap();
        for fr in frames {
            f.write_all(fr).unwrap();
        }
        let len = f.as_file().metadata().unwrap().len();
        (f, len)
    }

    #[test]
    fn frames_round_trip_with_inline_data() {
        let a = encode_frame(7, &put("a", 1), b"abc").unwrap();
        let b = encode_frame(9, &JournalRecord::Settled { seq: 7 }, b"").unwrap();
        let (f, len) = journal_with(&[a.clone(), b.clone()]);
        let r = read_journal(f.as_file(), len).unwrap().unwrap();
        assert_eq!(r.seq_floor, 7);
        assert_eq!(r.stop, None);
        assert_eq!(r.valid_len, len);
        assert_eq!(r.frames.len(), 2);
        assert_eq!(r.frames[0].record, put("a", 1));
        assert_eq!(r.frames[0].inline_len, 3);
        let mut inline = [0u8; 3];
        f.as_file()
            .read_exact_at(&mut inline, r.frames[0].inline_offset)
            .unwrap();
        assert_eq!(&inline, b"abc");
        assert_eq!(r.frames[1].seq, 9);
        assert_eq!(r.frames[1].offset, HEADER_LEN + a.len() as u64);
    }

    #[test]
    fn garbage_tail_and_middle_corruption_are_told_apart() {
        let a = encode_frame(7, &put("a", 1), b"").unwrap();
        let mut b = encode_frame(8, &put("b", 2), b"").unwrap();
        let c = encode_frame(9, &put("c", 3), b"").unwrap();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let (f, len) = journal_with(&[a.clone(), b.clone(), c]);
        let r = read_journal(f.as_file(), len).unwrap().unwrap();
        assert_eq!(r.frames.len(), 1);
        assert!(
            matches!(r.stop, Some(StopReason::Corrupt { .. })),
            "{:?}",
            r.stop
        );
        let (f, len) = journal_with(&[a, b]);
        let r = read_journal(f.as_file(), len).unwrap().unwrap();
        assert_eq!(r.frames.len(), 1);
        assert!(
            matches!(r.stop, Some(StopReason::TornTail { .. })),
            "{:?}",
            r.stop
        );
    }

    #[test]
    fn zero_tail_is_the_end_and_a_partial_frame_before_it_a_torn_tail() {
        let a = encode_frame(7, &put("a", 1), b"").unwrap();
        let b = encode_frame(8, &put("b", 2), b"").unwrap();
        // Preallocated zeros after the records: a clean end.
        let (f, len) = journal_with(&[a.clone(), vec![0u8; 100_000]]);
        let r = read_journal(f.as_file(), len).unwrap().unwrap();
        assert_eq!(r.frames.len(), 1);
        assert_eq!(r.stop, None);
        assert_eq!(r.valid_len, HEADER_LEN + a.len() as u64);
        // A record cut short inside the zeros (its header made it, part of its payload
        // did not): a torn tail, whatever follows is zeros.
        let mut partial = b.clone();
        for byte in &mut partial[40..] {
            *byte = 0;
        }
        let (f, len) = journal_with(&[a, partial, vec![0u8; 1000]]);
        let r = read_journal(f.as_file(), len).unwrap().unwrap();
        assert_eq!(r.frames.len(), 1);
        assert!(
            matches!(r.stop, Some(StopReason::TornTail { .. })),
            "{:?}",
            r.stop
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut h = encode_header(1);
        h[8] = 2; // version 2
        let crc = crc64(&h[0..24]);
        h[24..32].copy_from_slice(&crc.to_le_bytes());
        f.write_all(&h).unwrap();
        let e = read_journal(f.as_file(), HEADER_LEN).unwrap().unwrap_err();
        assert!(e.0.contains("version 2"), "{e}");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[b'x'; 40]).unwrap();
        assert!(read_journal(f.as_file(), 40).unwrap().is_err());
    }

    #[test]
    fn sequence_numbers_must_increase() {
        let a = encode_frame(8, &put("a", 1), b"").unwrap();
        let b = encode_frame(8, &put("b", 2), b"").unwrap();
        let (f, len) = journal_with(&[a, b]);
        let r = read_journal(f.as_file(), len).unwrap().unwrap();
        assert_eq!(r.frames.len(), 1);
        assert!(r.stop.is_some());
    }
}
