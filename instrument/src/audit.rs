//! Audit entries: who did what to which data, never dropped.
//!
//! Entries travel on their own bounded channel. When it is full the producer waits for room
//! (waking the drain), so under overload audit entries slow the host down rather than vanish.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use crate::callsite::{Callsite, Metadata};
use crate::correlation::CorrelationId;
use crate::fields::Fields;
use crate::record::Outcome;

/// One audit entry: an operation with its data lineage.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// What was done, e.g. `parse_file` or the instrumented function's name.
    pub operation: Cow<'static, str>,
    /// When the entry was made.
    pub timestamp: SystemTime,
    /// Ids of the data the operation read.
    pub inputs: Vec<String>,
    /// Ids of the data the operation produced.
    pub outputs: Vec<String>,
    /// Who or what performed it.
    pub actor: Option<String>,
    /// The unit of work it belongs to; defaults to the current id on the recording thread.
    pub correlation: Option<CorrelationId>,
    /// How the operation ended, for entries made by `#[instrument_performance(audit)]`.
    pub outcome: Option<Outcome>,
    /// The error kind, when `outcome` is `error`.
    pub error_kind: Option<&'static str>,
    /// How long the operation took, when known.
    pub duration: Option<Duration>,
    /// Free-form key/value fields. For instrumented calls, one per captured argument: its name
    /// and its value as [`FieldValue`](crate::FieldValue)'s `Display` writes it.
    pub fields: Vec<(Cow<'static, str>, String)>,
    /// The callsite that made the entry, for entries made by instrumented calls.
    pub callsite: Option<&'static Metadata>,
}

impl AuditEntry {
    /// A new entry for `operation`, stamped now, with the current correlation id.
    #[must_use]
    pub fn new(operation: impl Into<Cow<'static, str>>) -> Self {
        AuditEntry {
            operation: operation.into(),
            timestamp: SystemTime::now(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            actor: None,
            correlation: CorrelationId::current(),
            outcome: None,
            error_kind: None,
            duration: None,
            fields: Vec::new(),
            callsite: None,
        }
    }

    /// Adds an input id.
    #[must_use]
    pub fn input(mut self, id: impl Into<String>) -> Self {
        self.inputs.push(id.into());
        self
    }

    /// Adds input ids.
    #[must_use]
    pub fn inputs<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.inputs.extend(ids.into_iter().map(Into::into));
        self
    }

    /// Adds an output id.
    #[must_use]
    pub fn output(mut self, id: impl Into<String>) -> Self {
        self.outputs.push(id.into());
        self
    }

    /// Adds output ids.
    #[must_use]
    pub fn outputs<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.outputs.extend(ids.into_iter().map(Into::into));
        self
    }

    /// Sets the actor.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn correlation(mut self, id: CorrelationId) -> Self {
        self.correlation = Some(id);
        self
    }

    /// Adds a free-form field.
    #[must_use]
    pub fn field(mut self, key: impl Into<Cow<'static, str>>, value: &impl ToString) -> Self {
        self.fields.push((key.into(), value.to_string()));
        self
    }
}

/// Records an audit entry. Waits while the audit queue is full; never drops the entry.
///
/// # Errors
/// [`Error::NotInstalled`](crate::Error::NotInstalled) when no pipeline is installed, or when
/// the pipeline shut down while the entry waited for room: the entry was not recorded, and the
/// caller decides what to do with the operation.
///
/// ```
/// use instrument::{AuditEntry, audit};
///
/// let _pipeline = instrument::builder().install()?;
/// audit(AuditEntry::new("parse_file").input("src/lib.rs").output("ast:42").actor("etl"))?;
/// # Ok::<(), instrument::Error>(())
/// ```
pub fn audit(entry: AuditEntry) -> Result<(), crate::Error> {
    crate::pipeline::send_audit(entry)
}

/// The audit entry of an instrumented call with the `audit` option.
pub(crate) fn from_call(
    callsite: &'static Callsite,
    state: u32,
    duration_ticks: u64,
    outcome: Outcome,
    error_kind: Option<&'static str>,
    fields: &Fields,
    correlation: u64,
) {
    let meta = callsite.metadata();
    let mut entry = AuditEntry::new(meta.name());
    if correlation != 0 {
        entry.correlation = CorrelationId::from_u64(correlation);
    }
    entry.outcome = Some(outcome);
    entry.error_kind = error_kind;
    entry.duration = crate::pipeline::ticks_to_duration(state, duration_ticks);
    entry.callsite = Some(meta);
    entry.fields = fields
        .pairs()
        .into_iter()
        .map(|(name, value)| (Cow::Borrowed(name), value.to_string()))
        .collect();
    // Only the pipeline that timed the call takes its entry; a call that outlived its
    // pipeline has nowhere to go.
    let _ = crate::pipeline::send_audit_for(state, entry);
}
