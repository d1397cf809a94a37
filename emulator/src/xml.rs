//! Small helpers for the XML and text formats OSS uses: an XML writer that escapes every
//! text node, ISO 8601 / RFC 1123 times, and the `encoding-type=url` key encoding.
//!
//! Pitfall: keys may hold characters XML 1.0 cannot carry (control characters). Real
//! OSS answers such listings only with `encoding-type=url`; the writer escapes them as
//! numeric references so the document stays well-formed for lenient parsers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Builds an XML document with escaped text nodes.
pub struct XmlWriter {
    buf: String,
}

impl XmlWriter {
    pub fn new(root: &str) -> Self {
        let mut buf = String::with_capacity(512);
        buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        buf.push('<');
        buf.push_str(root);
        buf.push('>');
        XmlWriter { buf }
    }

    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// `<tag>text</tag>` with `text` escaped.
    pub fn elem(&mut self, tag: &str, text: impl AsRef<str>) -> &mut Self {
        self.open(tag);
        escape_into(&mut self.buf, text.as_ref());
        self.close(tag)
    }

    /// Escaped text directly inside the current element.
    pub fn elem_text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.buf, text);
        self
    }

    pub fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.buf
    }
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => {
                out.push_str(&format!("&#{};", c as u32));
            }
            c => out.push(c),
        }
    }
}

/// Characters kept as-is by `encoding-type=url` (unreserved set plus `/`). Space becomes
/// `%20`, `+` becomes `%2B`, so both form decoders and percent decoders read it back.
const URL_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Encodes a key/prefix for `encoding-type=url` responses.
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_ENCODE_SET).to_string()
}

/// Unix milliseconds → `SystemTime`.
pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2026-11-22T03:51:07.000Z`, as in OSS XML bodies.
pub fn iso8601_millis(ms: u64) -> String {
    let dt = chrono::DateTime::<chrono::Utc>::from(from_millis(ms));
    dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `2006-01-02T15:04:05Z`, as in ECS metadata and STS answers.
pub fn iso8601_seconds(t: SystemTime) -> String {
    let dt = chrono::DateTime::<chrono::Utc>::from(t);
    dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 1123 (`Sun, 22 Nov 2026 03:51:07 GMT`), for `Last-Modified` and `Date`.
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_control_characters() {
        let mut w = XmlWriter::new("R");
        w.elem("Key", "a<b>&\"c'\u{1}");
        assert_eq!(
            w.finish("R"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<R><Key>a&lt;b&gt;&amp;&quot;c&apos;&#1;</Key></R>"
        );
    }

    #[test]
    fn url_encoding_keeps_slash_and_encodes_space_and_plus() {
        assert_eq!(url_encode("a b+c/d~é"), "a%20b%2Bc/d~%C3%A9");
    }

    #[test]
    fn time_formats() {
        assert_eq!(iso8601_millis(1_000_123), "1970-01-01T00:16:40.123Z");
        assert_eq!(
            iso8601_seconds(from_millis(86_400_000)),
            "1970-01-02T00:00:00Z"
        );
        assert_eq!(http_date(from_millis(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
