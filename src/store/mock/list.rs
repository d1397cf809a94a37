//! ListObjectsV2 over the mock's sorted map: prefix, delimiter, start-after,
//! continuation token and max-keys, with objects and common prefixes sharing the
//! max-keys budget as on OSS.
//!
//! The continuation token is `K<last key>` or `P<last common prefix>` (opaque to
//! callers); after a prefix every key under it is skipped, so a page never repeats a
//! common prefix.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::MockObject;
use crate::store::{ListEntry, ListPage, ListRequest, StoreError, StoreResult};

fn invalid(msg: &str) -> StoreError {
    StoreError::from_service(400, "InvalidArgument", msg)
}

/// One page of the listing `req` over `objects`.
pub(super) fn list_page(
    objects: &BTreeMap<String, MockObject>,
    req: &ListRequest,
) -> StoreResult<ListPage> {
    let max_keys = match req.max_keys {
        0 => 100,
        n if n > 1000 => return Err(invalid("max-keys > 1000")),
        n => n as usize,
    };
    let (after, skip_prefix) = match req.continuation_token.as_deref() {
        Some(t) => match (t.get(..1), t.get(1..)) {
            (Some("P"), Some(rest)) => (rest.to_string(), Some(rest.to_string())),
            (Some("K"), Some(rest)) => (rest.to_string(), None),
            _ => return Err(invalid("bad continuation token")),
        },
        None => (req.start_after.clone().unwrap_or_default(), None),
    };
    let prefix = req.prefix.as_str();
    // Start at whichever comes later: the prefix itself or the resume point.
    let start = if after.as_str() < prefix {
        Bound::Included(prefix)
    } else {
        Bound::Excluded(after.as_str())
    };
    let mut iter = objects
        .range::<str, _>((start, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter(|(k, _)| skip_prefix.as_deref().is_none_or(|p| !k.starts_with(p)))
        .peekable();
    let delim = req.delimiter.as_deref().filter(|d| !d.is_empty());
    let mut page = ListPage::default();
    let mut count = 0usize;
    let mut last_returned: Option<String> = None;
    while let Some((key, obj)) = iter.next() {
        if count == max_keys {
            page.next_continuation_token = last_returned;
            return Ok(page);
        }
        let rest = &key[prefix.len()..];
        if let Some(pos) = delim.and_then(|d| rest.find(d).map(|p| p + d.len())) {
            let cp = format!("{prefix}{}", &rest[..pos]);
            // Skip every key under this common prefix.
            while iter.peek().is_some_and(|(k, _)| k.starts_with(cp.as_str())) {
                iter.next();
            }
            last_returned = Some(format!("P{cp}"));
            page.common_prefixes.push(cp);
        } else {
            page.objects.push(ListEntry {
                key: key.clone(),
                size: obj.data.len() as u64,
                etag: obj.etag.clone(),
                last_modified: Some(obj.last_modified),
                object_type: obj.object_type,
            });
            last_returned = Some(format!("K{key}"));
        }
        count += 1;
    }
    Ok(page)
}
