//! One memory budget (a semaphore of bytes) for the block cache and prefetch buffers.
//!
//! Every byte the read path holds on behalf of the application is backed by a
//! [`BudgetPermit`]: cached blocks keep theirs inside the cache entry, prefetched chunks keep
//! theirs until the reader drops the chunk. Dropping the permit returns the bytes.
//!
//! Requests larger than the whole budget are clamped to it (otherwise they would wait
//! forever); callers size their requests well below the limit anyway.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A byte-counting semaphore shared by the cache and every reader.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    semaphore: Arc<Semaphore>,
}

/// Bytes reserved from a [`MemoryBudget`]; released on drop.
#[derive(Debug)]
pub struct BudgetPermit {
    bytes: u64,
    _permit: Option<OwnedSemaphorePermit>,
}

impl BudgetPermit {
    /// A permit for nothing (used when a reader must proceed without memory accounting).
    pub fn unaccounted() -> Self {
        BudgetPermit {
            bytes: 0,
            _permit: None,
        }
    }

    /// Bytes this permit accounts for.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Largest single reservation: tokio counts `acquire_many` in `u32`.
const MAX_SINGLE: u64 = u32::MAX as u64;

impl MemoryBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        // Semaphore::MAX_PERMITS is usize::MAX >> 3, far above any sane memory size.
        let limit = limit.min(Semaphore::MAX_PERMITS as u64);
        Arc::new(MemoryBudget {
            limit,
            semaphore: Arc::new(Semaphore::new(limit as usize)),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes currently reserved.
    pub fn used(&self) -> u64 {
        self.limit - self.semaphore.available_permits() as u64
    }

    fn clamp(&self, bytes: u64) -> u32 {
        bytes.min(self.limit).min(MAX_SINGLE) as u32
    }

    /// Reserves `bytes` now, or returns `None` when the budget is exhausted.
    pub fn try_reserve(&self, bytes: u64) -> Option<BudgetPermit> {
        let n = self.clamp(bytes);
        if n == 0 {
            return Some(BudgetPermit {
                bytes: 0,
                _permit: None,
            });
        }
        let permit = self.semaphore.clone().try_acquire_many_owned(n).ok()?;
        Some(BudgetPermit {
            bytes: u64::from(n),
            _permit: Some(permit),
        })
    }

    /// Reserves `bytes`, waiting for other holders to release memory.
    pub async fn reserve(&self, bytes: u64) -> BudgetPermit {
        let n = self.clamp(bytes);
        if n == 0 {
            return BudgetPermit {
                bytes: 0,
                _permit: None,
            };
        }
        match self.semaphore.clone().acquire_many_owned(n).await {
            Ok(permit) => BudgetPermit {
                bytes: u64::from(n),
                _permit: Some(permit),
            },
            // The semaphore is never closed; if it were, not accounting is the only option
            // that keeps the read path working.
            Err(_) => BudgetPermit {
                bytes: 0,
                _permit: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_are_counted_and_released() {
        let budget = MemoryBudget::new(100);
        let a = budget.try_reserve(60).unwrap();
        assert_eq!(budget.used(), 60);
        assert!(budget.try_reserve(50).is_none());
        let b = budget.try_reserve(40).unwrap();
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn oversized_requests_are_clamped_and_waiters_wake() {
        let budget = MemoryBudget::new(100);
        let big = budget.reserve(1000).await;
        assert_eq!(big.bytes(), 100);
        let b2 = budget.clone();
        let waiter = tokio::spawn(async move { b2.reserve(10).await.bytes() });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(big);
        assert_eq!(waiter.await.unwrap(), 10);
    }
}
