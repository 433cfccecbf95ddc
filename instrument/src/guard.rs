//! The hot path: what an instrumented call does.
//!
//! `Guard::enter` loads the global state word once (relaxed). With no pipeline installed that is
//! the whole cost. Otherwise it reads the clock; `ok`/`err` read it again and push one fixed-size
//! record into the thread's queue. A guard dropped without `ok`/`err` records what ended the
//! call, which is not always what the thread is doing when it is dropped (see [`Phase`]):
//! - a function: `panic`, since only unwinding out of its body drops it;
//! - an `async fn`: `panic` when a panic unwound out of the future's own poll, `cancelled` when
//!   the future was dropped between polls, even by unrelated code that is unwinding;
//! - a block timer, which ends by going out of scope: `ok`, or `panic` when the thread started
//!   unwinding after the timer started.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use crate::callsite::Callsite;
use crate::clock::{self, MODE_OFF};
use crate::fields::{FieldValue, Fields};
use crate::metadata::CallsiteKind;
use crate::record::{Outcome, Record};

/// An in-flight timed call. Created by `#[instrument_performance]` and [`timer!`](crate::timer).
#[doc(hidden)]
#[derive(Debug)]
#[must_use = "a guard measures until it is finished or dropped"]
pub struct Guard {
    callsite: &'static Callsite,
    start: u64,
    state: u32,
    /// For `async fn`: the correlation id current when the call started (0: read at the end).
    correlation: u64,
    fields: Fields,
    phase: Phase,
}

/// Where a guard is in its call, which decides the outcome recorded if it is dropped unfinished.
///
/// `std::thread::panicking()` at drop time cannot tell a call's own panic from unrelated
/// unwinding that happens to drop it: an `async fn` future owned by a struct whose owner panics,
/// or a timer living in a `Drop` impl that runs during a panic. So a guard remembers where it
/// was instead. Sync functions never leave `Running` before `ok`/`err`, so their hot path pays
/// nothing beyond initialising this byte (which replaced a `finished` flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Inside the call: the body runs (or, for an `async fn`, the future is being polled, or has
    /// completed and is being classified). Dropped now, the drop is unwinding from the call.
    Running,
    /// An `async fn` future between polls: dropped now, it was cancelled, whatever the thread
    /// is doing.
    Suspended,
    /// A block timer started while its thread was already unwinding: dropped now, the block
    /// ended normally, inside that unwinding.
    StartedUnwinding,
    /// `ok`/`err` recorded the call.
    Finished,
}

/// `Guard::start` of a call that is not timed: no pipeline, or its thread was shedding.
const UNTIMED: u64 = u64::MAX;

impl Guard {
    /// Starts timing a call of `callsite`.
    #[inline(always)]
    pub fn enter(callsite: &'static Callsite) -> Guard {
        Self::enter_with(callsite, crate::state::STATE.load(Ordering::Relaxed))
    }

    /// Starts timing a call of `callsite` under a state word the caller already loaded.
    #[inline(always)]
    pub fn enter_with(callsite: &'static Callsite, state: u32) -> Guard {
        let mode = state & 0xff;
        // A thread whose ring was just found full counts its next calls without queueing them:
        // their durations are dropped anyway, so they skip the clock (and argument formatting),
        // which makes recording cheapest exactly when the drain cannot keep up. Audited calls
        // always carry their duration.
        let timed =
            mode != MODE_OFF && (callsite.metadata().is_audited() || !crate::buffer::shedding());
        let start = if timed { clock::now(mode) } else { UNTIMED };
        // An async call may end outside its task's correlation scope (dropped by a timeout, or
        // resumed on another thread), so it keeps the id it started under.
        let correlation = if mode != MODE_OFF && callsite.metadata().kind() == CallsiteKind::Async {
            crate::correlation::current_raw()
        } else {
            0
        };
        Guard {
            callsite,
            start,
            state,
            correlation,
            fields: Fields::default(),
            phase: Phase::Running,
        }
    }

    /// Whether argument values formatted now would be recorded.
    #[inline(always)]
    #[must_use]
    pub fn wants_fields(&self) -> bool {
        self.start != UNTIMED
    }

    /// Attaches formatted argument values to this call's event.
    pub fn set_fields(&mut self, fields: Fields) {
        self.fields = fields;
    }

    /// Polls the body of the `async fn` this guard times: `poll_fn(|cx| guard.poll_body(body,
    /// cx))`. Between polls the guard is `Suspended`, so dropping the future then records
    /// `cancelled`; a panic unwinding out of `body.poll` leaves it `Running`, and the drop that
    /// follows records `panic`.
    #[inline(always)]
    pub fn poll_body<F: Future + ?Sized>(
        &mut self,
        body: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        self.phase = Phase::Running;
        let poll = body.poll(cx);
        if poll.is_pending() {
            self.phase = Phase::Suspended;
        }
        poll
    }

    /// The call returned normally.
    #[inline(always)]
    pub fn ok(self) {
        // Finished explicitly: skip `Drop` (whose out-of-line glue would cost the not-installed
        // path a call and a stack spill of the guard).
        ManuallyDrop::new(self).finish(Outcome::Ok, None);
    }

    /// The call returned an error of kind `kind`.
    #[inline(always)]
    pub fn err(self, kind: &'static str) {
        ManuallyDrop::new(self).finish(Outcome::Error, Some(kind));
    }

    /// Records the call. Consumes `fields`; the caller must not drop the guard afterwards.
    #[inline(always)]
    fn finish(&mut self, outcome: Outcome, error_kind: Option<&'static str>) {
        self.phase = Phase::Finished;
        let mode = self.state & 0xff;
        if mode == MODE_OFF {
            // `wants_fields` is false when off, so there is nothing to free.
            debug_assert!(self.fields.is_empty());
            return;
        }
        if self.start == UNTIMED {
            self.shed(outcome, error_kind);
            return;
        }
        let end = clock::now(mode);
        self.record(end, outcome, error_kind);
    }

    /// Counts a call that started while its thread was shedding. Out of line, like `record`.
    #[inline(never)]
    fn shed(&mut self, outcome: Outcome, error_kind: Option<&'static str>) {
        // Arguments formatted just before the thread started shedding (by a `Display` impl that
        // itself recorded) are not kept: `ok`/`err` skip the guard's drop glue.
        drop(std::mem::take(&mut self.fields));
        let kind = error_kind.map_or(0, |kind| self.callsite.kind_slot(kind));
        crate::buffer::count_untimed(self.callsite, outcome, kind);
    }

    /// Out of line on purpose: inlined, it bloats every instrumented function's prologue, which
    /// the not-installed path would pay for too.
    #[inline(never)]
    fn record(&mut self, end: u64, outcome: Outcome, error_kind: Option<&'static str>) {
        let duration = end.saturating_sub(self.start);
        if self.callsite.metadata().is_audited() {
            crate::audit_queue::from_call(
                self.callsite,
                self.state,
                duration,
                outcome,
                error_kind,
                &self.fields,
                self.correlation,
            );
        }
        // A callsite's first few error kinds travel as a position in the record; others, and
        // captured arguments, as a detail.
        let kind = error_kind.map_or(0, |kind| self.callsite.kind_slot(kind));
        let detail_kind = if kind == 0 { error_kind } else { None };
        crate::buffer::push(
            self.callsite,
            Record {
                start: self.start,
                duration,
                correlation: self.correlation,
                callsite: 0,
                outcome,
                generation: (self.state >> 8) as u8,
                detailed: false,
                kind,
            },
            detail_kind,
            &mut self.fields,
        );
        // Not queued (the ring was full): free them here, since `ok`/`err` skip the drop glue.
        // Read the tag before moving the whole value: the guard was written a byte at a time
        // moments ago, and a wide load of those bytes would wait for the stores to retire.
        if !self.fields.is_empty() {
            drop(std::mem::take(&mut self.fields));
        }
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        let outcome = match self.phase {
            Phase::Finished => return,
            Phase::StartedUnwinding => Outcome::Ok,
            // A timer's scope ends normally too; it panicked only if the thread is unwinding
            // now and was not when the timer started.
            Phase::Running if self.callsite.metadata().kind() == CallsiteKind::Timer => {
                if std::thread::panicking() {
                    Outcome::Panic
                } else {
                    Outcome::Ok
                }
            }
            // A function or an `async fn` being polled is dropped by its own unwinding; a
            // guard dropped otherwise (a run-time `function()` handle's timer left unfinished)
            // never returned: cancelled.
            // A future dropped between polls (`Suspended`) is cancelled too.
            Phase::Running if std::thread::panicking() => Outcome::Panic,
            Phase::Running | Phase::Suspended => Outcome::Cancelled,
        };
        self.finish(outcome, None);
    }
}

/// A block timer from [`timer!`](crate::timer): measures until dropped (outcome `ok`, or
/// `panic` when dropped by a panic raised after it started) or until [`Timer::error`] is called.
///
/// A timer started while its thread is already unwinding (in a `Drop` impl that runs during a
/// panic) records `ok` when its scope ends: that panic is not the block's. A second panic raised
/// inside such a block and caught there is not told apart from it either.
#[derive(Debug)]
#[must_use = "a timer measures until it is dropped; bind it with `let _timer = ...`"]
pub struct Timer(Guard);

impl Timer {
    #[doc(hidden)]
    #[inline(always)]
    pub fn start(callsite: &'static Callsite) -> Timer {
        let mut guard = Guard::enter(callsite);
        // One relaxed load of the process's panic count; only timers pay it, at start.
        if guard.state & 0xff != MODE_OFF && std::thread::panicking() {
            guard.phase = Phase::StartedUnwinding;
        }
        Timer(guard)
    }

    #[doc(hidden)]
    #[inline(always)]
    pub fn inert(callsite: &'static Callsite) -> Timer {
        Timer(Guard {
            callsite,
            start: UNTIMED,
            state: 0,
            correlation: 0,
            fields: Fields::default(),
            phase: Phase::Running,
        })
    }

    /// Ends the timed block now, with outcome `ok`.
    #[inline]
    pub fn finish(self) {
        self.0.ok();
    }

    /// Ends the timed block now, with outcome `error` of kind `kind`.
    #[inline]
    pub fn error(self, kind: &'static str) {
        self.0.err(kind);
    }

    /// Ends the timed block now, with outcome `panic`: for bridges that learn of a panic only
    /// after the unwinding is over, such as a task runtime that caught it and dropped the task
    /// later. A timer dropped during the unwinding records `panic` by itself.
    #[inline]
    pub fn panicked(self) {
        ManuallyDrop::new(self.0).finish(Outcome::Panic, None);
    }

    /// Whether values attached now with [`set_fields`](Self::set_fields) would be recorded: a
    /// pipeline was installed when the timer started and its thread was not shedding load.
    /// Check it before building values that cost something.
    #[inline]
    #[must_use]
    pub fn wants_fields(&self) -> bool {
        self.0.wants_fields()
    }

    /// Attaches values to the timed call, as `capture(..)` does for an instrumented function:
    /// sinks receive them in [`Event::fields`](crate::Event::fields) if the call becomes an
    /// event (and audit sinks in the entry of an audited call). For bridges whose field names
    /// and values are known only at run time, such as the fields of a `tracing` span. Replaces
    /// values attached before; ignored when [`wants_fields`](Self::wants_fields) is false.
    ///
    /// ```
    /// use instrument::FieldValue;
    ///
    /// let _pipeline = instrument::builder().install()?;
    /// let query = instrument::metric("query").function()?;
    /// let mut call = query.start();
    /// if call.wants_fields() {
    ///     call.set_fields(vec![
    ///         ("table", FieldValue::Str("files".into())),
    ///         ("rows", FieldValue::U64(3)),
    ///     ]);
    /// }
    /// call.error("Timeout"); // an event with both fields
    /// # Ok::<(), instrument::Error>(())
    /// ```
    pub fn set_fields(&mut self, fields: Vec<(&'static str, FieldValue)>) {
        if self.0.wants_fields() {
            self.0.set_fields(Fields::from_pairs(fields));
        }
    }

    /// Attaches values captured in the macro's encoding (see `fields.rs`): no allocation for
    /// the few small values most calls have.
    #[cfg(feature = "tracing")]
    pub(crate) fn set_captured(&mut self, fields: Fields) {
        if self.0.wants_fields() {
            self.0.set_fields(fields);
        }
    }
}

/// Classifies an error value into a short kind name, such as an enum's variant name.
///
/// Implement it (or `#[derive(ErrorKind)]`) on an error type and `#[instrument_performance]`
/// records the variant name as `error_kind` instead of the type name.
///
/// ```
/// use instrument::ErrorKind;
///
/// enum ParseError { Syntax(usize), Io(std::io::Error) }
///
/// impl ErrorKind for ParseError {
///     fn error_kind(&self) -> &'static str {
///         match self {
///             ParseError::Syntax(_) => "Syntax",
///             ParseError::Io(_) => "Io",
///         }
///     }
/// }
/// assert_eq!(ParseError::Syntax(3).error_kind(), "Syntax");
/// ```
pub trait ErrorKind {
    /// The kind of this error, used as the `error_kind` label value.
    fn error_kind(&self) -> &'static str;
}

/// Autoref-specialisation helpers the macro expands to; see `docs/macro-contract.md`.
pub(crate) mod classify {
    use super::ErrorKind;

    /// Stand-in error type of functions that do not return `Result`.
    #[derive(Debug)]
    pub enum NoError {}

    impl ErrorKind for NoError {
        fn error_kind(&self) -> &'static str {
            match *self {}
        }
    }

    /// Picked for `Result<T, E>` return values.
    pub trait ViaResult {
        /// The error type.
        type Error;
        /// The error, if the value is `Err`.
        fn __instrument_error(&self) -> Option<&Self::Error>;
    }

    impl<T, E> ViaResult for Result<T, E> {
        type Error = E;
        #[inline(always)]
        fn __instrument_error(&self) -> Option<&E> {
            self.as_ref().err()
        }
    }

    /// Picked for every other return value: never an error.
    pub trait ViaAny {
        /// Always `None`.
        fn __instrument_error(&self) -> Option<&NoError>;
    }

    impl<T: ?Sized> ViaAny for &T {
        #[inline(always)]
        fn __instrument_error(&self) -> Option<&NoError> {
            None
        }
    }

    /// Picked for error types implementing [`ErrorKind`].
    pub trait KindViaTrait {
        /// The kind named by the error itself.
        fn __instrument_kind(&self) -> &'static str;
    }

    impl<E: ErrorKind + ?Sized> KindViaTrait for E {
        #[inline(always)]
        fn __instrument_kind(&self) -> &'static str {
            self.error_kind()
        }
    }

    /// Picked for every other error type: its type name.
    pub trait KindViaTypeName {
        /// The error's type name.
        fn __instrument_kind(&self) -> &'static str;
    }

    impl<E: ?Sized> KindViaTypeName for &E {
        #[inline(always)]
        fn __instrument_kind(&self) -> &'static str {
            core::any::type_name::<E>()
        }
    }
}
