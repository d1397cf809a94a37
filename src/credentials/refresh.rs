//! Temporary credentials kept fresh in the background.
//!
//! [`RefreshingProvider`] wraps a [`CredentialsFetcher`] (ECS metadata, STS OIDC) and
//! implements [`CredentialsProvider`]:
//!
//! - **When to refresh.** After each successful fetch, the next refresh is due when one
//!   third of the remaining lifetime is left, i.e. at `fetched + 2/3 × (expiration −
//!   fetched)`, but never sooner than [`RefreshPolicy::min_interval`] (ECS hands out the same
//!   set until it rotates, so remaining lifetimes shrink and refreshes would otherwise
//!   bunch up near expiry). A 6 h ECS credential is thus refreshed ~2 h before it expires;
//!   a 20 s test credential ~7 s before.
//! - **Who refreshes.** A tokio task sleeps until the refresh is due and fetches. Callers of
//!   [`CredentialsProvider::credentials`] never wait while the cached set is valid.
//! - **Failures.** A failed background refresh keeps the current set and retries with
//!   exponential backoff (1 s, 2 s, 4 s … capped at [`RefreshPolicy::max_backoff`]).
//! - **Expiry.** A set counts as expired [`RefreshPolicy::expiry_margin`] before its
//!   `Expiration` (a request signed just before expiry may arrive after it). Only then does
//!   a caller block: it fetches synchronously (one fetch at a time; concurrent callers wait
//!   for it) and gets an error if that fails.
//!
//! - **Refused as expired.** When OSS answers `SecurityTokenExpired` anyway (clocks differ,
//!   or a request waited past the margin on a loaded machine), the client calls
//!   [`CredentialsProvider::invalidate`]: the refused set stops being served and the retry
//!   fetches synchronously.
//!
//! Pitfall: the task holds only a `Weak` reference, so dropping the provider stops it; the
//! task handle is also aborted on drop.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::task::JoinHandle;

use super::{Credentials, CredentialsError, CredentialsProvider};

/// A source of temporary credentials (one network round trip per call).
#[async_trait]
pub trait CredentialsFetcher: Send + Sync + 'static {
    async fn fetch(&self) -> Result<Credentials, CredentialsError>;
    /// Where the credentials come from (never the secret).
    fn describe(&self) -> String;
}

/// Timing knobs; see the module docs.
#[derive(Debug, Clone)]
pub struct RefreshPolicy {
    pub min_interval: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Upper bound of the safety margin before `Expiration`; the margin is also at most a
    /// tenth of the lifetime so that very short test credentials stay usable.
    pub expiry_margin: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            min_interval: Duration::from_secs(1),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            expiry_margin: Duration::from_secs(10),
        }
    }
}

struct CachedCredentials {
    creds: Credentials,
    /// When the set stops being served without a synchronous fetch.
    usable_until: Option<SystemTime>,
    refresh_at: Option<SystemTime>,
    failures: u32,
}

struct Inner {
    fetcher: Box<dyn CredentialsFetcher>,
    policy: RefreshPolicy,
    cached: Mutex<CachedCredentials>,
    /// Serialises fetches so that an expired set triggers one fetch, not one per caller.
    fetch_lock: tokio::sync::Mutex<()>,
}

/// See the module docs.
pub struct RefreshingProvider {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for RefreshingProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshingProvider")
            .field("source", &self.inner.fetcher.describe())
            .finish_non_exhaustive()
    }
}

impl Drop for RefreshingProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RefreshingProvider {
    /// Fetches once (errors are returned, so a chain can report the source as broken) and
    /// starts the background refresh task. Must be called inside a tokio runtime.
    pub async fn new(
        fetcher: Box<dyn CredentialsFetcher>,
        policy: RefreshPolicy,
    ) -> Result<Self, CredentialsError> {
        let creds = fetcher.fetch().await?;
        let now = SystemTime::now();
        let inner = Arc::new(Inner {
            cached: Mutex::new(CachedCredentials {
                usable_until: None,
                refresh_at: None,
                failures: 0,
                creds: creds.clone(),
            }),
            fetcher,
            policy,
            fetch_lock: tokio::sync::Mutex::new(()),
        });
        inner.store(creds, now);
        let task = tokio::spawn(refresh_loop(Arc::downgrade(&inner)));
        Ok(RefreshingProvider { inner, task })
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, CachedCredentials> {
        // A poisoned lock only means a panic elsewhere while holding it; the data (a
        // credentials set and timestamps) is still consistent.
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self, creds: Credentials, now: SystemTime) {
        let (usable_until, refresh_at) = match creds.expiration {
            None => (None, None),
            Some(exp) => {
                let life = exp.duration_since(now).unwrap_or(Duration::ZERO);
                let margin = self.policy.expiry_margin.min(life / 10);
                let refresh_in = (life * 2 / 3).max(self.policy.min_interval);
                (Some(exp - margin), Some(now + refresh_in))
            }
        };
        let mut c = self.lock();
        c.creds = creds;
        c.usable_until = usable_until;
        c.refresh_at = refresh_at;
        c.failures = 0;
    }

    fn valid_now(&self) -> Option<Credentials> {
        let c = self.lock();
        match c.usable_until {
            Some(t) if SystemTime::now() >= t => None,
            _ => Some(c.creds.clone()),
        }
    }

    async fn fetch_and_store(&self) -> Result<Credentials, CredentialsError> {
        match self.fetcher.fetch().await {
            Ok(creds) => {
                ::metrics::counter!(crate::metrics::CREDENTIAL_REFRESHES, "result" => "ok")
                    .increment(1);
                self.store(creds.clone(), SystemTime::now());
                tracing::debug!(source = %self.fetcher.describe(), "credentials refreshed");
                Ok(creds)
            }
            Err(e) => {
                ::metrics::counter!(crate::metrics::CREDENTIAL_REFRESHES, "result" => "error")
                    .increment(1);
                Err(e)
            }
        }
    }

    /// Next background wake-up, or None when the credentials never expire.
    fn next_refresh(&self) -> Option<SystemTime> {
        self.lock().refresh_at
    }

    fn note_failure(&self) -> Duration {
        let mut c = self.lock();
        c.failures = c.failures.saturating_add(1);
        let exp = c.failures.saturating_sub(1).min(16);
        let backoff = self
            .policy
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.policy.max_backoff);
        c.refresh_at = Some(SystemTime::now() + backoff);
        backoff
    }
}

async fn refresh_loop(weak: Weak<Inner>) {
    loop {
        let due = match weak.upgrade() {
            Some(inner) => inner.next_refresh(),
            None => return,
        };
        let Some(due) = due else { return };
        let wait = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::time::sleep(wait).await;
        let Some(inner) = weak.upgrade() else { return };
        let _guard = inner.fetch_lock.lock().await;
        // A synchronous fetch may have happened while we slept.
        if inner.next_refresh().is_some_and(|t| t > SystemTime::now()) {
            continue;
        }
        if let Err(e) = inner.fetch_and_store().await {
            let backoff = inner.note_failure();
            tracing::warn!(
                source = %inner.fetcher.describe(),
                error = %e,
                retry_in_ms = backoff.as_millis() as u64,
                "credentials refresh failed; still using the current credentials"
            );
        }
    }
}

#[async_trait]
impl CredentialsProvider for RefreshingProvider {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        if let Some(c) = self.inner.valid_now() {
            return Ok(c);
        }
        let _guard = self.inner.fetch_lock.lock().await;
        if let Some(c) = self.inner.valid_now() {
            return Ok(c);
        }
        self.inner.fetch_and_store().await.map_err(|e| {
            CredentialsError(format!(
                "credentials from {} expired and could not be refreshed: {e}",
                self.inner.fetcher.describe()
            ))
        })
    }

    fn describe(&self) -> String {
        self.inner.fetcher.describe()
    }

    fn invalidate(&self, access_key_id: &str) -> bool {
        let mut c = self.inner.lock();
        // Only the refused set: a newer one fetched meanwhile stays.
        if c.creds.access_key_id == access_key_id {
            c.usable_until = Some(SystemTime::now());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    /// Hands out sets named `AK<n>` valid for `life`; fails while `failing` is set.
    struct CountingFetcher {
        calls: Arc<AtomicU32>,
        failing: Arc<AtomicBool>,
        life: Duration,
    }

    #[async_trait]
    impl CredentialsFetcher for CountingFetcher {
        async fn fetch(&self) -> Result<Credentials, CredentialsError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(CredentialsError("metadata service down".into()));
            }
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let mut c = Credentials::new(format!("AK{n}"), "secret");
            c.expiration = Some(SystemTime::now() + self.life);
            Ok(c)
        }
        fn describe(&self) -> String {
            "test fetcher".into()
        }
    }

    fn fast_policy() -> RefreshPolicy {
        RefreshPolicy {
            min_interval: Duration::from_millis(50),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            expiry_margin: Duration::from_millis(100),
        }
    }

    fn fetcher(life: Duration) -> (CountingFetcher, Arc<AtomicU32>, Arc<AtomicBool>) {
        let calls = Arc::new(AtomicU32::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        (
            CountingFetcher {
                calls: calls.clone(),
                failing: failing.clone(),
                life,
            },
            calls,
            failing,
        )
    }

    #[tokio::test]
    async fn refreshes_in_background_before_expiry() {
        let (f, calls, _) = fetcher(Duration::from_millis(3000));
        let p = RefreshingProvider::new(Box::new(f), fast_policy())
            .await
            .unwrap();
        assert_eq!(p.credentials().await.unwrap().access_key_id, "AK0");
        // Refresh is due at 2/3 of 3 s = 2 s, well before expiry.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(calls.load(Ordering::SeqCst) >= 2);
        let c = p.credentials().await.unwrap();
        assert_ne!(c.access_key_id, "AK0");
        assert!(c.expiration.unwrap() > SystemTime::now());
    }

    #[tokio::test]
    async fn serves_current_set_while_refresh_fails_then_errors_after_expiry() {
        let (f, _calls, failing) = fetcher(Duration::from_millis(3000));
        let p = RefreshingProvider::new(Box::new(f), fast_policy())
            .await
            .unwrap();
        failing.store(true, Ordering::SeqCst);
        // Past the refresh point (2 s) but before expiry (usable until 2.9 s): the old
        // set is served.
        tokio::time::sleep(Duration::from_millis(2300)).await;
        assert_eq!(p.credentials().await.unwrap().access_key_id, "AK0");
        // After expiry the caller blocks on a synchronous fetch, which fails.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let err = p.credentials().await.unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
        // Recovery: the next call fetches synchronously.
        failing.store(false, Ordering::SeqCst);
        let c = p.credentials().await.unwrap();
        assert!(c.expiration.unwrap() > SystemTime::now());
    }

    #[tokio::test]
    async fn invalidated_set_is_replaced_but_a_newer_one_stays() {
        let (f, calls, _) = fetcher(Duration::from_secs(600));
        let p = RefreshingProvider::new(Box::new(f), fast_policy())
            .await
            .unwrap();
        assert_eq!(p.credentials().await.unwrap().access_key_id, "AK0");
        assert!(p.invalidate("AK0"));
        assert_eq!(p.credentials().await.unwrap().access_key_id, "AK1");
        // A late refusal of the old set must not throw away the new one.
        assert!(p.invalidate("AK0"));
        assert_eq!(p.credentials().await.unwrap().access_key_id, "AK1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let fixed = crate::credentials::StaticProvider {
            creds: Credentials::new("AK0", "secret"),
            source: "test".into(),
        };
        assert!(!fixed.invalidate("AK0"));
    }

    #[tokio::test]
    async fn long_term_credentials_never_refresh() {
        struct Fixed(Arc<AtomicU32>);
        #[async_trait]
        impl CredentialsFetcher for Fixed {
            async fn fetch(&self) -> Result<Credentials, CredentialsError> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(Credentials::new("AK", "S"))
            }
            fn describe(&self) -> String {
                "fixed".into()
            }
        }
        let calls = Arc::new(AtomicU32::new(0));
        let p = RefreshingProvider::new(Box::new(Fixed(calls.clone())), fast_policy())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        p.credentials().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(p.describe(), "fixed");
    }

    #[tokio::test]
    async fn initial_failure_is_returned() {
        let (f, _, failing) = fetcher(Duration::from_secs(5));
        failing.store(true, Ordering::SeqCst);
        let err = RefreshingProvider::new(Box::new(f), fast_policy())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("metadata service down"));
    }
}
