//! Walk-ahead: directory listings fetched ahead of a program walking a tree.
//!
//! `find`, `du`, `ls -R`, `rsync`, `cp -r` and data-set indexers read a directory, then
//! descend into each sub-directory in listing order. Done one directory at a time that
//! is one LIST round trip per directory, serially. This module notices such a walk and
//! lists the sub-directories it has revealed *before* the program gets to them, up to
//! [`WALK_CONCURRENCY`] at once; the readdir that follows starts from the fetched page
//! (or waits for the request already in flight) instead of sending its own.
//!
//! When is it a walk: a directory's listing starts while its parent's listing is
//! recent (within [`WALK_IDLE`]), or the listing starts from a page fetched here. A
//! plain `ls dir` is neither, so it costs no extra request. From then on, every listing
//! page's sub-directories are queued (the siblings of the directory that revealed the
//! walk too), until no listing has used a fetched page for [`WALK_IDLE`]: then the
//! queue is dropped, and the walk has stopped.
//!
//! Order: `find` (fts), `du`, `rsync` and friends walk depth first in listing order,
//! which is (nearly) the byte order of the keys. The queue is sorted by key, the walk's
//! position is the key of the directory it listed last, and the next directories
//! fetched are the first queued keys after it. A page fetched ahead queues its own
//! sub-directories too, so the queue holds the walk's next directories in the order it
//! will want them, and pages are fetched just ahead of it (they would expire unused if
//! fetched much earlier; see Freshness).
//!
//! Bounds: at most [`WALK_CONCURRENCY`] LISTs in flight, at most [`LOOKAHEAD`] pages
//! fetched or in flight that no listing has used yet (so a walk that slows down does not
//! make this run away, and at most that many requests are wasted when it stops), at most
//! [`QUEUE_CAP`] queued directories (a number and a key each). Only first pages are
//! fetched ahead; a directory of more than 1000 entries lists the rest as readdir asks.
//!
//! Freshness: a fetched page is used under the rules of `lookup_page` (younger than the
//! metadata TTL and [`super::lookup_page::MAX_AGE`], no local change since it was queued) and
//! once; a page that expires unused is dropped. A fetched non-empty page also proves its
//! directory still exists, so the lookup the kernel sends when its entry expired is
//! answered without a LIST of its own ([`Filesystem::walk_proves_dir`]). Everything is
//! keyed by the directory's key: a rename changes keys, and moves the change count, so
//! nothing fetched before it is used.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::store::{ListPage, ListRequest, ObjectStore};

use super::{Filesystem, lock};

/// Most LISTs a walk sends at once.
pub(crate) const WALK_CONCURRENCY: usize = 16;
/// Most pages fetched ahead (in flight or waiting) that no listing has used yet.
pub(crate) const LOOKAHEAD: usize = 64;
/// Most directories queued.
const QUEUE_CAP: usize = 50_000;
/// A walk stops when no listing used a fetched page (or revealed it) for this long.
pub(crate) const WALK_IDLE: Duration = Duration::from_secs(2);
/// Recent listings remembered to recognise a walk into one of their sub-directories.
const RECENT: usize = 16;
/// Sub-directories remembered per recent listing.
const RECENT_SUBDIRS: usize = 10_000;

/// A page fetched ahead, with when its request was sent and the inode table's change
/// count when its directory was queued.
#[derive(Debug)]
struct Fetched {
    at: Instant,
    changes: u64,
    page: Option<ListPage>,
}

type Slot = watch::Receiver<Option<Arc<Fetched>>>;

#[derive(Debug, Default)]
struct State {
    /// Directory keys to fetch → the change count when queued.
    queue: BTreeMap<String, u64>,
    /// Key of the directory the walk listed last.
    position: String,
    fetching: HashMap<String, Slot>,
    ready: HashMap<String, Arc<Fetched>>,
    recent: VecDeque<Listing>,
    active_until: Option<Instant>,
}

/// The sub-directories a listing revealed (in listing order).
#[derive(Debug)]
struct Listing {
    dir_key: String,
    at: Instant,
    subdirs: Vec<String>,
    /// Its sub-directories were queued already.
    expanded: bool,
}

impl State {
    fn active(&self, now: Instant) -> bool {
        self.active_until.is_some_and(|t| t > now)
    }

    /// Queues directory keys the walk has not passed yet.
    fn push_all<'a>(&mut self, keys: impl Iterator<Item = &'a String>, changes: u64) {
        for key in keys {
            if key.as_str() <= self.position.as_str()
                || self.fetching.contains_key(key)
                || self.ready.contains_key(key)
            {
                continue;
            }
            self.queue.insert(key.clone(), changes);
            if self.queue.len() > QUEUE_CAP {
                self.queue.pop_last();
            }
        }
    }

    /// The next queued key after the walk's position (dropping the ones it passed).
    fn next(&mut self) -> Option<(String, u64)> {
        if self
            .queue
            .first_key_value()
            .is_some_and(|(k, _)| k.as_str() <= self.position.as_str())
        {
            let mut rest = self.queue.split_off(&self.position);
            rest.remove(&self.position);
            self.queue = rest;
        }
        self.queue.pop_first()
    }
}

/// The walk-ahead state of one mount.
#[derive(Debug)]
pub(crate) struct WalkAhead {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    store: Arc<dyn ObjectStore>,
    rt: Handle,
    max_age: Duration,
}

impl WalkAhead {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, rt: Handle, ttl: Duration) -> Self {
        WalkAhead {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                store,
                rt,
                max_age: ttl.min(super::lookup_page::MAX_AGE),
            }),
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// `a/b/` → `a/`; `a/` → `` (keys of directories end with `/`).
fn parent_key(dir_key: &str) -> &str {
    let trimmed = dir_key.strip_suffix('/').unwrap_or(dir_key);
    match trimmed.rfind('/') {
        Some(i) => &dir_key[..=i],
        None => "",
    }
}

impl Shared {
    /// Starts queued fetches while the bounds allow.
    fn pump(self: &Arc<Self>) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        let max_age = self.max_age;
        st.ready.retain(|_, f| now.duration_since(f.at) < max_age);
        if !st.active(now) {
            st.queue.clear();
            return;
        }
        while st.fetching.len() < WALK_CONCURRENCY && st.fetching.len() + st.ready.len() < LOOKAHEAD
        {
            let Some((key, changes)) = st.next() else {
                break;
            };
            let (tx, rx) = watch::channel(None);
            st.fetching.insert(key.clone(), rx);
            let me = Arc::clone(self);
            self.rt
                .spawn(async move { me.fetch(key, changes, tx).await });
        }
    }

    async fn fetch(
        self: Arc<Self>,
        key: String,
        changes: u64,
        tx: watch::Sender<Option<Arc<Fetched>>>,
    ) {
        let req = ListRequest {
            prefix: key.clone(),
            delimiter: Some("/".into()),
            max_keys: super::limits::LIST_PAGE,
            ..Default::default()
        };
        let at = Instant::now();
        let page = match self.store.list_objects(&req).await {
            Ok(p) => Some(p),
            Err(e) => {
                // The listing that wants it sends its own request and reports errors.
                tracing::debug!(key = %key, error = %e, "walk-ahead LIST failed");
                None
            }
        };
        let fetched = Arc::new(Fetched { at, changes, page });
        {
            let mut st = lock(&self.state);
            if st.fetching.remove(&key).is_some() && fetched.page.is_some() {
                st.ready.insert(key.clone(), Arc::clone(&fetched));
            }
            // What it reveals is where the walk goes next: queue it in key order.
            if let Some(page) = &fetched.page
                && st.active(Instant::now())
            {
                st.push_all(page.common_prefixes.iter(), changes);
            }
        }
        let _ = tx.send(Some(fetched));
        self.pump();
    }
}

impl Filesystem {
    /// The first page of the listing of `dir_key` (ends with `/`) if it was fetched
    /// ahead (waiting for it when its request is in flight), with when that request was
    /// sent. Also decides whether a walk is going on (see the module docs).
    pub(crate) async fn walk_first_page(&self, dir_key: &str) -> Option<(Instant, ListPage)> {
        let shared = &self.walk.shared;
        let now = Instant::now();
        let changes = self.inodes.changes();
        let pending = {
            let mut st = lock(&shared.state);
            st.queue.remove(dir_key);
            let fetched = st.ready.remove(dir_key);
            let slot = st.fetching.remove(dir_key);
            let ahead = fetched.is_some() || slot.is_some();
            // Walking into a sub-directory of a recent listing?
            let parent = parent_key(dir_key);
            let parent_listing = st
                .recent
                .iter()
                .rposition(|l| now.duration_since(l.at) < WALK_IDLE && l.dir_key == parent);
            if ahead || parent_listing.is_some() {
                st.active_until = now.checked_add(WALK_IDLE);
                st.position = dir_key.to_string();
            }
            if let Some(i) = parent_listing
                && !st.recent[i].expanded
            {
                st.recent[i].expanded = true;
                let siblings = std::mem::take(&mut st.recent[i].subdirs);
                st.push_all(siblings.iter(), changes);
                st.recent[i].subdirs = siblings;
            }
            match (fetched, slot) {
                (Some(f), _) => Ok(f),
                (None, Some(rx)) => Err(Some(rx)),
                (None, None) => Err(None),
            }
        };
        shared.pump();
        let fetched = match pending {
            Ok(f) => f,
            Err(Some(mut rx)) => {
                let r = rx.wait_for(|v| v.is_some()).await.ok()?;
                r.as_ref().map(Arc::clone)?
            }
            Err(None) => return None,
        };
        let fresh = fetched.at.elapsed() < shared.max_age
            && fetched.changes == self.inodes.changes()
            && fetched.page.is_some();
        if !fresh {
            return None;
        }
        Some((fetched.at, fetched.page.clone()?))
    }

    /// Records the sub-directories a page of the listing of `dir_key` (ends with `/`)
    /// revealed, and queues them when a walk is going on.
    pub(crate) fn walk_after_page(&self, dir_key: &str, page: &ListPage) {
        if page.common_prefixes.is_empty() {
            return;
        }
        let changes = self.inodes.changes();
        let shared = &self.walk.shared;
        let now = Instant::now();
        {
            let mut st = lock(&shared.state);
            let active = st.active(now);
            if active {
                st.push_all(page.common_prefixes.iter(), changes);
            }
            let subdirs = page.common_prefixes.iter().take(RECENT_SUBDIRS).cloned();
            match st.recent.iter_mut().rev().find(|l| l.dir_key == dir_key) {
                Some(l) => {
                    l.at = now;
                    let room = RECENT_SUBDIRS.saturating_sub(l.subdirs.len());
                    l.subdirs.extend(subdirs.take(room));
                    l.expanded |= active;
                }
                None => {
                    if st.recent.len() >= RECENT {
                        st.recent.pop_front();
                    }
                    st.recent.push_back(Listing {
                        dir_key: dir_key.to_string(),
                        at: now,
                        subdirs: subdirs.collect(),
                        expanded: active,
                    });
                }
            }
        }
        shared.pump();
    }

    /// Whether a page fetched ahead (or in flight) shows that the directory `dir_key`
    /// (ends with `/`) still exists, so its expired lookup needs no LIST of its own.
    pub(crate) async fn walk_proves_dir(&self, dir_key: &str) -> bool {
        let shared = &self.walk.shared;
        let slot = {
            let st = lock(&shared.state);
            if let Some(f) = st.ready.get(dir_key) {
                return f.at.elapsed() < shared.max_age
                    && f.changes == self.inodes.changes()
                    && f.page.as_ref().is_some_and(|p| !p.is_empty());
            }
            st.fetching.get(dir_key).cloned()
        };
        let Some(mut rx) = slot else { return false };
        let Ok(r) = rx.wait_for(|v| v.is_some()).await else {
            return false;
        };
        r.as_ref().is_some_and(|f| {
            f.changes == self.inodes.changes() && f.page.as_ref().is_some_and(|p| !p.is_empty())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_keys() {
        assert_eq!(parent_key("a/b/"), "a/");
        assert_eq!(parent_key("a/"), "");
        assert_eq!(parent_key("p/a/b/c/"), "p/a/b/");
    }

    #[test]
    fn queue_serves_keys_after_the_position_in_order() {
        let mut st = State {
            position: "d1/".into(),
            ..State::default()
        };
        let keys: Vec<String> = ["d0/", "d3/", "d1/b/", "d2/", "d1/a/"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        st.push_all(keys.iter(), 0);
        let order: Vec<String> = std::iter::from_fn(|| st.next().map(|x| x.0)).collect();
        assert_eq!(order, ["d1/a/", "d1/b/", "d2/", "d3/"]);
        // Keys the walk passed are dropped.
        st.push_all(keys.iter(), 0);
        st.position = "d2/".into();
        assert_eq!(st.next().map(|x| x.0).as_deref(), Some("d3/"));
        assert!(st.next().is_none());
    }
}
