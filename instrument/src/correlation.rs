//! Correlation ids: tie every instrumented call, event and audit entry of one unit of work
//! together.
//!
//! The current id lives in a thread-local. Nested instrumented calls on the same thread see it;
//! [`FutureExt::with_correlation`] sets it around every poll of a future, so it follows the work
//! across `.await` points and executor threads.

use std::cell::Cell;
use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

thread_local! {
    /// The calling thread's current correlation id (0: none). Const-initialised and without a
    /// destructor, so reading it is one thread-local load.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// An id shared by all records of one unit of work (a file, a request, a batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CorrelationId(NonZeroU64);

static NEXT: AtomicU64 = AtomicU64::new(0);

impl CorrelationId {
    /// A new id, unique within this process and unlikely to repeat across processes (the
    /// sequence starts at a value derived from the start time and process id).
    #[must_use]
    pub fn new() -> Self {
        let mut n = NEXT.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let seed = (nanos ^ (u64::from(std::process::id()) << 40)) | 1;
            // First caller seeds the sequence; losers of the race keep their unseeded values,
            // which are still unique.
            let _ = NEXT.compare_exchange(
                1,
                seed.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            n = seed;
        }
        CorrelationId(NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN))
    }

    /// An id from its numeric value; `None` for 0, which means "no id".
    #[must_use]
    pub fn from_u64(value: u64) -> Option<Self> {
        NonZeroU64::new(value).map(CorrelationId)
    }

    /// The numeric value.
    #[must_use]
    pub fn get(self) -> u64 {
        self.0.get()
    }

    /// The id current on this thread, if any.
    #[must_use]
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Cell::get).ok().and_then(Self::from_u64)
    }

    /// Makes this id current on this thread until the returned scope is dropped.
    #[must_use = "the id is current only while the scope lives"]
    pub fn enter(self) -> CorrelationScope {
        CorrelationScope {
            previous: set(self.get()),
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Default for CorrelationId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The current id as a number (0: none), for the hot path.
#[inline]
pub(crate) fn current_raw() -> u64 {
    CURRENT.try_with(Cell::get).unwrap_or(0)
}

fn set(value: u64) -> u64 {
    CURRENT.try_with(|c| c.replace(value)).unwrap_or(0)
}

/// Restores the previous correlation id when dropped. See [`CorrelationId::enter`].
#[derive(Debug)]
pub struct CorrelationScope {
    previous: u64,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for CorrelationScope {
    fn drop(&mut self) {
        set(self.previous);
    }
}

/// Runs `f` with `id` as the current correlation id.
///
/// ```
/// use instrument::{CorrelationId, with_correlation};
///
/// let id = CorrelationId::new();
/// let seen = with_correlation(id, CorrelationId::current);
/// assert_eq!(seen, Some(id));
/// assert_eq!(CorrelationId::current(), None);
/// ```
pub fn with_correlation<R>(id: CorrelationId, f: impl FnOnce() -> R) -> R {
    let _scope = id.enter();
    f()
}

/// Carries a correlation id with a future. See [`FutureExt`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Correlated<F> {
    id: Option<CorrelationId>,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for Correlated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Restored on drop, so a panicking poll does not leave its id on the executor thread.
        let _restore = CorrelationScope {
            previous: set(self.id.map_or(0, CorrelationId::get)),
            _not_send: std::marker::PhantomData,
        };
        self.inner.as_mut().poll(cx)
    }
}

/// Correlation for futures: the id is current during every poll, on whichever thread polls.
pub trait FutureExt: Future + Sized {
    /// Runs this future with `id` as the current correlation id.
    fn with_correlation(self, id: CorrelationId) -> Correlated<Self> {
        Correlated {
            id: Some(id),
            inner: Box::pin(self),
        }
    }

    /// Runs this future with the correlation id current now (for `spawn`ed tasks).
    fn in_current_correlation(self) -> Correlated<Self> {
        Correlated {
            id: CorrelationId::current(),
            inner: Box::pin(self),
        }
    }
}

impl<F: Future> FutureExt for F {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        let a = CorrelationId::new();
        let b = CorrelationId::new();
        assert_ne!(a, b);
        {
            let _a = a.enter();
            assert_eq!(CorrelationId::current(), Some(a));
            with_correlation(b, || assert_eq!(CorrelationId::current(), Some(b)));
            assert_eq!(CorrelationId::current(), Some(a));
        }
        assert_eq!(CorrelationId::current(), None);
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..1000)
                        .map(|_| CorrelationId::new().get())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
