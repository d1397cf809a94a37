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
//! Order: the queue is a stack, and a page's sub-directories are pushed last-first, so
//! the next directory fetched is the first child of the one listed last: the
//! depth-first order of `find` (fts) and friends.
//!
//! Bounds: at most [`WALK_CONCURRENCY`] LISTs in flight, at most [`LOOKAHEAD`] pages
//! fetched or in flight that no listing has used yet (so a walk that slows down does not
//! make this run away, and at most that many requests are wasted when it stops), at most
//! [`QUEUE_CAP`] queued directories (a number and a key each). Only first pages are
//! fetched ahead; a directory of more than 1000 entries lists the rest as readdir asks.
//!
//! Freshness: a fetched page is used under the rules of `probe` (younger than the
//! metadata TTL and [`super::probe::MAX_AGE`], no local change since it was queued) and
//! once; a page that expires unused is dropped. A fetched non-empty page also proves its
//! directory still exists, so the lookup the kernel sends when its entry expired is
//! answered without a LIST of its own ([`Filesystem::walk_proves_dir`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::store::{ListPage, ListRequest, ObjectStore};

use super::attr::Ino;
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

/// A directory to list ahead: its number, its key (ends with `/`), and the inode
/// table's change count when it was queued.
#[derive(Debug, Clone)]
struct Queued {
    ino: Ino,
    key: String,
    changes: u64,
}

/// A page fetched ahead, with when its request was sent.
#[derive(Debug)]
struct Fetched {
    at: Instant,
    changes: u64,
    page: Option<ListPage>,
}

type Slot = watch::Receiver<Option<Arc<Fetched>>>;

#[derive(Debug, Default)]
struct State {
    stack: Vec<Queued>,
    queued: HashSet<Ino>,
    fetching: HashMap<Ino, Slot>,
    ready: HashMap<Ino, Arc<Fetched>>,
    recent: VecDeque<Listing>,
    active_until: Option<Instant>,
}

/// The sub-directories a listing revealed (in listing order).
#[derive(Debug)]
struct Listing {
    dir: Ino,
    at: Instant,
    subdirs: Vec<Queued>,
    /// Its sub-directories were queued already.
    expanded: bool,
}

impl State {
    fn active(&self, now: Instant) -> bool {
        self.active_until.is_some_and(|t| t > now)
    }

    fn push_all(&mut self, subdirs: impl DoubleEndedIterator<Item = Queued>) {
        for q in subdirs.rev() {
            if self.stack.len() >= QUEUE_CAP {
                break;
            }
            if self.fetching.contains_key(&q.ino) || self.ready.contains_key(&q.ino) {
                continue;
            }
            if self.queued.insert(q.ino) {
                self.stack.push(q);
            } else {
                // Queued before: move it to the top (the walk is here now).
                if let Some(pos) = self.stack.iter().rposition(|x| x.ino == q.ino) {
                    let item = self.stack.remove(pos);
                    self.stack.push(item);
                }
            }
        }
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
                max_age: ttl.min(super::probe::MAX_AGE),
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

impl Shared {
    /// Starts queued fetches while the bounds allow.
    fn pump(self: &Arc<Self>) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        let max_age = self.max_age;
        st.ready.retain(|_, f| now.duration_since(f.at) < max_age);
        if !st.active(now) {
            st.stack.clear();
            st.queued.clear();
            return;
        }
        while st.fetching.len() < WALK_CONCURRENCY && st.fetching.len() + st.ready.len() < LOOKAHEAD
        {
            let Some(q) = st.stack.pop() else { break };
            if !st.queued.remove(&q.ino) {
                continue; // taken by a listing meanwhile
            }
            let (tx, rx) = watch::channel(None);
            st.fetching.insert(q.ino, rx);
            let me = Arc::clone(self);
            self.rt.spawn(async move { me.fetch(q, tx).await });
        }
    }

    async fn fetch(self: Arc<Self>, q: Queued, tx: watch::Sender<Option<Arc<Fetched>>>) {
        let req = ListRequest {
            prefix: q.key.clone(),
            delimiter: Some("/".into()),
            max_keys: super::dir::PAGE,
            ..Default::default()
        };
        let at = Instant::now();
        let page = match self.store.list_objects(&req).await {
            Ok(p) => Some(p),
            Err(e) => {
                // The listing that wants it sends its own request and reports errors.
                tracing::debug!(key = %q.key, error = %e, "walk-ahead LIST failed");
                None
            }
        };
        let fetched = Arc::new(Fetched {
            at,
            changes: q.changes,
            page,
        });
        {
            let mut st = lock(&self.state);
            if st.fetching.remove(&q.ino).is_some() && fetched.page.is_some() {
                st.ready.insert(q.ino, Arc::clone(&fetched));
            }
        }
        let _ = tx.send(Some(fetched));
        self.pump();
    }
}

impl Filesystem {
    /// The first page of `dir`'s listing if it was fetched ahead (waiting for it when
    /// its request is in flight), with when that request was sent. Also decides whether
    /// a walk is going on (see the module docs).
    pub(crate) async fn walk_first_page(&self, dir: Ino) -> Option<(Instant, ListPage)> {
        let shared = &self.walk.shared;
        let now = Instant::now();
        let pending = {
            let mut st = lock(&shared.state);
            st.queued.remove(&dir);
            let fetched = st.ready.remove(&dir);
            let slot = st.fetching.remove(&dir);
            let ahead = fetched.is_some() || slot.is_some();
            // Walking into a sub-directory of a recent listing?
            let parent_listing = st
                .recent
                .iter()
                .rposition(|l| now.duration_since(l.at) < WALK_IDLE && l.has_subdir(dir));
            if ahead || parent_listing.is_some() {
                st.active_until = now.checked_add(WALK_IDLE);
            }
            if let Some(i) = parent_listing {
                if !st.recent[i].expanded {
                    st.recent[i].expanded = true;
                    let l = &st.recent[i];
                    let after: Vec<Queued> = l
                        .subdirs
                        .iter()
                        .skip_while(|q| q.ino != dir)
                        .skip(1)
                        .cloned()
                        .collect();
                    st.push_all(after.into_iter());
                }
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

    /// Records the sub-directories a page of `dir`'s listing revealed (`dir_key` ends
    /// with `/`), and queues them when a walk is going on.
    pub(crate) fn walk_after_page(&self, dir: Ino, dir_key: &str, page: &ListPage) {
        let changes = self.inodes.changes();
        let subdirs: Vec<Queued> = page
            .common_prefixes
            .iter()
            .filter_map(|cp| {
                let name = cp.strip_prefix(dir_key)?.strip_suffix('/')?;
                let ino = self.inodes.child(dir, name)?;
                Some(Queued {
                    ino,
                    key: cp.clone(),
                    changes,
                })
            })
            .take(RECENT_SUBDIRS)
            .collect();
        if subdirs.is_empty() {
            return;
        }
        let shared = &self.walk.shared;
        let now = Instant::now();
        {
            let mut st = lock(&shared.state);
            let active = st.active(now);
            if active {
                st.push_all(subdirs.iter().cloned());
            }
            match st.recent.iter_mut().rev().find(|l| l.dir == dir) {
                Some(l) => {
                    l.at = now;
                    let room = RECENT_SUBDIRS.saturating_sub(l.subdirs.len());
                    l.subdirs.extend(subdirs.into_iter().take(room));
                    l.expanded |= active;
                }
                None => {
                    if st.recent.len() >= RECENT {
                        st.recent.pop_front();
                    }
                    st.recent.push_back(Listing {
                        dir,
                        at: now,
                        subdirs,
                        expanded: active,
                    });
                }
            }
        }
        shared.pump();
    }

    /// Whether a page fetched ahead (or in flight) shows that directory `ino` still
    /// exists, so its expired lookup needs no LIST of its own.
    pub(crate) async fn walk_proves_dir(&self, ino: Ino) -> bool {
        let shared = &self.walk.shared;
        let slot = {
            let st = lock(&shared.state);
            if let Some(f) = st.ready.get(&ino) {
                return f.at.elapsed() < shared.max_age
                    && f.page.as_ref().is_some_and(|p| !p.is_empty());
            }
            st.fetching.get(&ino).cloned()
        };
        let Some(mut rx) = slot else { return false };
        let Ok(r) = rx.wait_for(|v| v.is_some()).await else {
            return false;
        };
        r.as_ref()
            .and_then(|f| f.page.as_ref())
            .is_some_and(|p| !p.is_empty())
    }
}

impl Listing {
    fn has_subdir(&self, ino: Ino) -> bool {
        self.subdirs.iter().any(|q| q.ino == ino)
    }
}
