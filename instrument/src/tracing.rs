//! The `tracing` bridge (feature `tracing`): the spans of existing `#[tracing::instrument]` code
//! become timed calls of the pipeline, and its warnings and errors become notices.
//!
//! [`InstrumentLayer`] is a [`tracing_subscriber::Layer`]. On a subscriber built from
//! `tracing_subscriber::registry()`, every span that closes is recorded like a call of an
//! `#[instrument_performance]` function, through a callsite registered at run time
//! ([`metric`](crate::metric)): into the same aggregates (counts, percentiles and error counts
//! per callsite and outcome, per window and since install), the same events and the same sinks.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use instrument::tracing::InstrumentLayer;
//! use instrument::{Batch, Interests, Notice, Outcome, Sink, SinkError, Snapshot};
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! // Code that knows only `tracing`.
//! #[tracing::instrument(err)]
//! fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
//!     if text.is_empty() {
//!         tracing::warn!("empty input");
//!     }
//!     text.trim().parse()
//! }
//!
//! // A sink keeping the latest snapshot and every notice (`instrument-sinks` ships complete ones).
//! #[derive(Clone, Default)]
//! struct Keep(Arc<Mutex<(Option<Arc<Snapshot>>, Vec<Notice>)>>);
//!
//! impl Sink for Keep {
//!     fn name(&self) -> &str { "keep" }
//!     fn interests(&self) -> Interests { Interests::ALL }
//!     fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
//!         let mut kept = self.0.lock().unwrap();
//!         if let Some(snapshot) = &batch.snapshot {
//!             kept.0 = Some(Arc::clone(snapshot));
//!         }
//!         kept.1.extend(batch.notices.iter().cloned());
//!         Ok(())
//!     }
//! }
//!
//! let keep = Keep::default();
//! let pipeline = instrument::builder().sink(keep.clone()).install()?;
//! let subscriber = tracing_subscriber::registry().with(InstrumentLayer::new());
//! tracing::subscriber::with_default(subscriber, || {
//!     assert_eq!(parse("42"), Ok(42));
//!     assert!(parse("").is_err());
//! });
//! pipeline.flush()?;
//!
//! let kept = keep.0.lock().unwrap();
//! let snapshot = kept.0.as_ref().expect("flush delivers a snapshot");
//! // Named like `#[instrument_performance]` names a function: target (module path) and name.
//! let name = concat!(module_path!(), "::parse");
//! assert_eq!(snapshot.call(name, Outcome::Ok).unwrap().total.count, 1);
//! assert_eq!(snapshot.call(name, Outcome::Error).unwrap().error_kinds[0].kind, "error");
//! let warning = &kept.1[0];
//! assert_eq!((warning.source.as_ref(), warning.message.as_str()), ("tracing", "empty input"));
//! assert!(warning.fields.contains(&("span_path".into(), "parse".to_owned())));
//! # Ok::<(), instrument::Error>(())
//! ```
//!
//! # What is recorded
//! - **Callsite**: one per span target and name, named `target::name` (for
//!   `#[tracing::instrument]`, the module path and the function name: what
//!   `#[instrument_performance]` would name the function), of kind
//!   [`Function`](crate::CallsiteKind::Function), with the target as module and the file and line
//!   of the span's metadata. It is registered when the first span of a `tracing` callsite opens
//!   and cached per `tracing` callsite, so later spans look it up in a thread-local map and take
//!   no lock. Spans of one target and name from several places (two `info_span!("step")` in a
//!   module) share the callsite, with the file and line of the first. Span fields are never
//!   labels, so a callsite's cardinality does not grow with field values: the callsites
//!   registered are at most the `tracing` callsites of the program.
//! - **Duration**: from the span's creation to its close (when its last handle is dropped), on
//!   the pipeline's clock. A span entered many times, like the span of an `async fn` across its
//!   `.await` points, is one call, and the time between polls counts, as it does for an
//!   `async fn` under `#[instrument_performance]`. A span may close on another thread than the
//!   one it was created on.
//! - **Outcome**: `error` when an event whose only field is `error` (what
//!   `#[tracing::instrument(err)]` emits when the function returns `Err`) happens inside the
//!   span; `panic` when the span is exited or closed while its thread unwinds (unless the span
//!   was created during that unwinding); `ok` otherwise.
//! - **Captured arguments**: the span's fields, as given at creation and later with
//!   `Span::record`, reach sinks in [`Event::fields`](crate::Event::fields) of the calls that
//!   become events (failed, slow or sampled ones), as typed values: integers, floats, `bool` and
//!   strings as themselves, `?x` and `%x` as the text they format to. The `err` event's error
//!   is added as field `error` (its `Display` text, or `Debug` with `err(Debug)`), and the
//!   value of a `#[tracing::instrument(ret)]` event as field `return`. Those two events are
//!   taken into the call; they are not also published as notices.
//! - **Notices**: every other event at [`WARN`](tracing_core::Level::WARN) or above (see
//!   [`InstrumentLayer::notices`]) is published with [`publish`](crate::publish) as a
//!   [`Notice`] from source `tracing`, at the matching [`Level`], with the event's `message` as
//!   its message (its name, `event file:line`, when it has none) and as fields the event's
//!   other fields, then `target`, `span_path` (the names of the spans it happened in, outermost
//!   first, separated by `:`, as `tracing-subscriber`'s `fmt` writes them; absent outside any
//!   span) and `location` (`file:line`). Notices reach sinks interested in notices, like the
//!   `SQLite` store's `notices` table. Its correlation id is the one current on the thread.
//!
//! Spans are recorded while a pipeline is installed: a span created before
//! [`install`](crate::Builder::install) is not recorded, like a call that started before it.
//!
//! # Cost
//! Each span pays `tracing-subscriber`'s registry (a slot in its slab, the span's extension
//! map) and, for this layer, a thread-local map lookup, two clock reads, one allocation for its
//! state in the span's extensions, one for its fields when it has any (and one per string or
//! formatted value), and one queue push:
//! about 260 ns a span on a 2-core VM, against about 1,150 ns for a `fmt` layer writing each
//! span's duration (`FmtSpan::CLOSE`) in the same run (`tracing_bridge` and
//! `tracing_instrument_fmt_close` in `benches/overhead.rs`; `docs/performance.md`). That is
//! about 11 times an `#[instrument_performance]` call, which has none of the registry's work to
//! do: the layer is for code that already uses `tracing`.
//!
//! # Limits
//! - **Error kinds**: `tracing` hands the error to subscribers as a formatted value, not as its
//!   type, so every failed span has error kind `error` (kinds stay few, as aggregates need);
//!   the error's text is in the call's `error` field.
//! - **Cancellation**: a span closes the same way whether its future completed or was dropped
//!   early, so an `async fn` cancelled at an `.await` records `ok` (or `error`, if it failed
//!   before), where `#[instrument_performance]` records `cancelled`.
//! - **Panics**: a panic is seen when unwinding exits or closes the span. A span entered and
//!   exited by a `Drop` impl that runs during an unrelated panic, but created before that panic,
//!   records `panic` too.
//! - **Spans that never close** (kept for ever, or leaked) are never recorded.
//! - **Events outside the `err`/`ret` forms**: an event whose only field is `error` is taken as
//!   the span's failure even when written by hand (`tracing::warn!(error = %e)` in a retry loop
//!   that later succeeds marks the span failed).
//! - **Both attributes on one function**: `#[instrument_performance]` and
//!   `#[tracing::instrument]` on the same function record to two callsites with the same name.
//! - **Registration refused**: past the process-wide limit of callsites registered at run time
//!   (49,152), spans of new `tracing` callsites are not recorded; a warning notice says which.
//!
//! # The other direction
//! The macro's calls do not appear as `tracing` spans. A span with its true start, duration
//! and parent has to be created and entered when the call starts, so the calls of every
//! instrumented function, also with the bridge off, would carry a span handle in their guard
//! and test a flag on entry and on return in code inlined into each of them; and a span
//! emitted after the call ends would show `tracing` neither its duration nor what happened
//! inside it. Sinks receive every failed, slow and sampled call as an
//! [`Event`](crate::Event), which a host can hand to its own logging.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{LazyLock, Mutex, PoisonError};

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, LevelFilter, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::clock::MODE_OFF;
use crate::dynamic::TimerHandle;
use crate::fields::capture::{DebugKind, DisplayKind, RawValue as _};
use crate::fields::{FieldNames, FieldValue, Fields};
use crate::guard::Timer;
use crate::sink::{Level, Notice};

/// The [`Notice::source`] of forwarded events.
const SOURCE: &str = "tracing";

/// The error kind of every failed span: `tracing` does not hand subscribers the error's type.
const ERROR_KIND: &str = "error";

/// Records closed `tracing` spans as timed calls and forwards `tracing` events at
/// [`WARN`](tracing_core::Level::WARN) and above as [`Notice`]s. See the [module
/// docs](self) for what is recorded and its limits.
///
/// Add it to a subscriber built on `tracing_subscriber::registry()`, next to any other layers,
/// and install a pipeline ([`builder`](crate::builder)):
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt as _;
/// use tracing_subscriber::util::SubscriberInitExt as _;
///
/// let _pipeline = instrument::builder().sink(instrument::NullSink).install()?;
/// tracing_subscriber::registry()
///     .with(instrument::tracing::InstrumentLayer::new())
///     .init();
/// # Ok::<(), instrument::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct InstrumentLayer {
    notices: LevelFilter,
}

impl Default for InstrumentLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl InstrumentLayer {
    /// A layer recording every span and forwarding events at `WARN` and above.
    #[must_use]
    pub fn new() -> Self {
        InstrumentLayer {
            notices: LevelFilter::WARN,
        }
    }

    /// The same layer, forwarding events at `level` and above as notices;
    /// [`LevelFilter::OFF`] forwards none.
    ///
    /// ```
    /// use instrument::tracing::InstrumentLayer;
    /// use tracing_core::LevelFilter;
    ///
    /// let errors_only = InstrumentLayer::new().notices(LevelFilter::ERROR);
    /// let spans_only = InstrumentLayer::new().notices(LevelFilter::OFF);
    /// # let _ = (errors_only, spans_only);
    /// ```
    #[must_use]
    pub fn notices(mut self, level: LevelFilter) -> Self {
        self.notices = level;
        self
    }
}

impl<S> Layer<S> for InstrumentLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !cfg!(feature = "enabled")
            || crate::state::STATE.load(Ordering::Relaxed) & 0xff == MODE_OFF
        {
            return;
        }
        let Some(site) = site(attrs.metadata()) else {
            return;
        };
        let Some(span) = ctx.span(id) else {
            return;
        };
        let timer = site.handle.start();
        let values = match site.names {
            Some(names) if timer.wants_fields() && !attrs.values().is_empty() => {
                Values::capture(attrs, names)
            }
            _ => Values::Captured(Fields::default()),
        };
        span.extensions_mut().insert(SpanState {
            timer,
            values,
            failed: false,
            panicked: false,
            created_unwinding: std::thread::panicking(),
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(state) = extensions.get_mut::<SpanState>()
            && state.timer.wants_fields()
        {
            values.record(&mut Capture(state.values.pairs()));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let fields = meta.fields();
        if fields.len() == 1
            && let Some(field) = fields.iter().next()
            && matches!(field.name(), "error" | "return")
            && take_into_span(event, field.name() == "error", &ctx)
        {
            return;
        }
        if *meta.level() <= self.notices && crate::source::wanted() {
            crate::source::publish(notice(event, &ctx));
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        // Unwinding out of the span: its call panicked. Seen here and not only at close, since
        // a task runtime that catches the panic drops the task, and closes its span, later.
        if std::thread::panicking()
            && let Some(span) = ctx.span(id)
            && let Some(state) = span.extensions_mut().get_mut::<SpanState>()
            && !state.created_unwinding
        {
            state.panicked = true;
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let state = span.extensions_mut().remove::<SpanState>();
        if let Some(state) = state {
            state.end();
        }
    }
}

/// What the layer keeps in a recorded span's extensions, from its creation to its close.
struct SpanState {
    /// Started at the span's creation; ended at its close.
    timer: Timer,
    /// The span's fields, and the `error`/`return` of its `err`/`ret` event.
    values: Values,
    /// An `err` event happened inside the span.
    failed: bool,
    /// Unwinding exited the span.
    panicked: bool,
    /// The thread was unwinding when the span was created: that panic is not the span's.
    created_unwinding: bool,
}

impl SpanState {
    /// Records the call.
    fn end(self) {
        let SpanState {
            mut timer,
            values,
            failed,
            panicked,
            created_unwinding,
        } = self;
        match values {
            Values::Captured(fields) => timer.set_captured(fields),
            Values::Pairs(pairs) => timer.set_fields(pairs),
        }
        if failed {
            timer.error(ERROR_KIND);
        } else if panicked || (std::thread::panicking() && !created_unwinding) {
            timer.panicked();
        } else {
            timer.finish();
        }
    }
}

/// Takes an `err` (`failed`) or `ret` event into the recorded span it happened in; false when
/// it happened in no recorded span.
fn take_into_span<S>(event: &Event<'_>, failed: bool, ctx: &Context<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.event_span(event) else {
        return false;
    };
    let mut extensions = span.extensions_mut();
    let Some(state) = extensions.get_mut::<SpanState>() else {
        return false;
    };
    state.failed |= failed;
    if state.timer.wants_fields() {
        event.record(&mut Capture(state.values.pairs()));
    }
    true
}

/// The notice for `event`.
fn notice<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> Notice
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    let mut text = NoticeFields::default();
    event.record(&mut text);
    let message = text.message.unwrap_or_else(|| meta.name().to_owned());
    let mut notice = Notice::new(SOURCE, level(*meta.level()), message);
    notice.fields = text.fields;
    notice
        .fields
        .push(("target".into(), meta.target().to_owned()));
    if let Some(scope) = ctx.event_scope(event) {
        let mut path = String::new();
        for span in scope.from_root() {
            if !path.is_empty() {
                path.push(':');
            }
            path.push_str(span.name());
        }
        notice.fields.push(("span_path".into(), path));
    }
    if let (Some(file), Some(line)) = (meta.file(), meta.line()) {
        notice
            .fields
            .push(("location".into(), format!("{file}:{line}")));
    }
    notice
}

/// The notice level of a `tracing` level; `DEBUG` and `TRACE` are both `Debug`.
fn level(level: tracing_core::Level) -> Level {
    match level {
        tracing_core::Level::ERROR => Level::Error,
        tracing_core::Level::WARN => Level::Warn,
        tracing_core::Level::INFO => Level::Info,
        _ => Level::Debug,
    }
}

/// A span's field values.
///
/// Most spans get all their values at creation, in the order of their callsite's fields: those
/// are encoded as `#[instrument_performance(capture(..))]` encodes arguments, raw and in place,
/// with no allocation for a few small values. A span whose values come later (`Empty` fields
/// recorded with `Span::record`), or that gets an `error` or `return` value, holds them as
/// pairs instead.
enum Values {
    /// All the callsite's fields in order, or none.
    Captured(Fields),
    /// Any fields, in the order first recorded.
    Pairs(Vec<(&'static str, FieldValue)>),
}

impl Values {
    /// The values given at a span's creation; `names` are its callsite's field names.
    fn capture(attrs: &Attributes<'_>, names: &'static FieldNames) -> Values {
        let mut encode = Encode {
            fields: Fields::new(names),
            next: 0,
            in_order: true,
        };
        attrs.record(&mut encode);
        if encode.in_order && encode.next == attrs.metadata().fields().len() {
            return Values::Captured(encode.fields);
        }
        let mut pairs = Vec::new();
        attrs.record(&mut Capture(&mut pairs));
        Values::Pairs(pairs)
    }

    /// The values as pairs, to add to or replace.
    fn pairs(&mut self) -> &mut Vec<(&'static str, FieldValue)> {
        if let Values::Captured(fields) = self {
            *self = Values::Pairs(fields.pairs());
        }
        match self {
            Values::Pairs(pairs) => pairs,
            Values::Captured(_) => unreachable!("converted above"),
        }
    }
}

/// Encodes values raw, as long as they come in the order of the callsite's fields.
struct Encode {
    fields: Fields,
    /// The index of the field expected next.
    next: usize,
    /// Whether every value so far came in order.
    in_order: bool,
}

impl Encode {
    /// Whether `field` is the one expected next, moving on if so.
    fn expect(&mut self, field: &Field) -> bool {
        self.in_order &= field.index() == self.next;
        self.next += 1;
        self.in_order
    }
}

impl Visit for Encode {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.expect(field) {
            value.push_raw(&mut self.fields);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.expect(field) {
            value.push_raw(&mut self.fields);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.expect(field) {
            value.push_raw(&mut self.fields);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.expect(field) {
            value.push_raw(&mut self.fields);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.expect(field) {
            value.push_raw(&mut self.fields);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.expect(field) {
            DisplayKind.push(&mut self.fields, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.expect(field) {
            DebugKind.push(&mut self.fields, value);
        }
    }
}

/// Collects field values as typed pairs; a field recorded again replaces its value.
struct Capture<'a>(&'a mut Vec<(&'static str, FieldValue)>);

impl Capture<'_> {
    fn put(&mut self, field: &Field, value: FieldValue) {
        let name = field.name();
        match self.0.iter_mut().find(|(known, _)| *known == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for Capture<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, FieldValue::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, FieldValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, FieldValue::U64(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value = i64::try_from(value).map_or_else(
            |_| FieldValue::Formatted(value.to_string().into()),
            FieldValue::I64,
        );
        self.put(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value = u64::try_from(value).map_or_else(
            |_| FieldValue::Formatted(value.to_string().into()),
            FieldValue::U64,
        );
        self.put(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, FieldValue::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, FieldValue::Str(value.into()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, FieldValue::Formatted(value.to_string().into()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, FieldValue::Formatted(format!("{value:?}").into()));
    }
}

/// Collects an event's `message` and its other fields as text, for a notice.
#[derive(Default)]
struct NoticeFields {
    message: Option<String>,
    fields: Vec<(std::borrow::Cow<'static, str>, String)>,
}

impl NoticeFields {
    fn put(&mut self, field: &Field, text: String) {
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.fields.push((field.name().into(), text));
        }
    }
}

impl Visit for NoticeFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

/// What spans of one `tracing` callsite record to.
#[derive(Clone, Copy)]
struct Site {
    handle: TimerHandle,
    /// The callsite's field names, in order; `None` when it has none.
    names: Option<&'static FieldNames>,
}

/// Sites by the address of their `tracing` metadata; `None` for a callsite whose registration
/// was refused.
type Sites = HashMap<usize, Option<Site>, BuildHasherDefault<AddressHasher>>;

/// Every `tracing` callsite seen, process-wide: the threads' maps fill from it.
static SITES: LazyLock<Mutex<Sites>> = LazyLock::new(Mutex::default);

thread_local! {
    /// The `tracing` callsites this thread has seen: a lookup without a lock.
    static LOCAL_SITES: RefCell<Sites> = RefCell::default();
}

/// The callsite recording spans of `meta`, registering it on first sight.
fn site(meta: &'static Metadata<'static>) -> Option<Site> {
    let key = std::ptr::from_ref(meta) as usize;
    LOCAL_SITES
        .try_with(|local| {
            let known = local.borrow().get(&key).copied();
            known.unwrap_or_else(|| {
                let site = shared_site(key, meta);
                local.borrow_mut().insert(key, site);
                site
            })
        })
        // The thread is tearing down its thread-locals: the shared map still answers.
        .unwrap_or_else(|_| shared_site(key, meta))
}

/// The callsite of `meta` from the process-wide map, registering it on first sight.
fn shared_site(key: usize, meta: &'static Metadata<'static>) -> Option<Site> {
    let mut sites = SITES.lock().unwrap_or_else(PoisonError::into_inner);
    *sites.entry(key).or_insert_with(|| register(meta))
}

/// Registers the callsite of spans of `meta`: `target::name`, in module `target`, at the
/// metadata's file and line. Its field names are stored once per `tracing` callsite, like
/// the callsite itself.
fn register(meta: &'static Metadata<'static>) -> Option<Site> {
    let name = format!("{}::{}", meta.target(), meta.name());
    let registered = crate::dynamic::metric(name.clone())
        .module(meta.target())
        .location(meta.file().unwrap_or(""), meta.line().unwrap_or(0))
        .function();
    match registered {
        Ok(handle) => {
            let names = (!meta.fields().is_empty()).then(|| {
                let names: Box<[&'static str]> = meta.fields().iter().map(|f| f.name()).collect();
                let names: &'static FieldNames =
                    Box::leak(Box::new(FieldNames::new(Box::leak(names))));
                names
            });
            Some(Site { handle, names })
        }
        Err(error) => {
            crate::source::publish(Notice::new(
                SOURCE,
                Level::Warn,
                format!("spans `{name}` are not recorded: {error}"),
            ));
            None
        }
    }
}

/// Hashes the addresses keying [`Sites`]: one multiplication, its high half folded into the
/// low bits the table indexes by (addresses of statics share their low bits).
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        let mixed = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = mixed ^ (mixed >> 32);
    }
}
