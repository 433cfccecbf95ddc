//! Audit entries: who did what to which data, with its lineage. Recorded with
//! [`audit`](crate::audit) or the `audit` option; they travel on the queue of `audit_queue.rs`.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use crate::correlation::CorrelationId;
use crate::metadata::Metadata;
use crate::record::Outcome;

/// One audit entry: an operation with its data lineage.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AuditEntry {
    /// A number unique over the process's life, assigned when the entry is accepted; entries
    /// accepted later have larger numbers. 0 until then.
    pub sequence: u64,
    /// What was done, e.g. `parse_file` or the instrumented function's name.
    pub operation: Cow<'static, str>,
    /// When the entry was made.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::time"))]
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
    #[cfg_attr(
        feature = "serde",
        serde(rename = "duration_ns", serialize_with = "crate::ser::opt_nanos")
    )]
    pub duration: Option<Duration>,
    /// Free-form key/value fields. For instrumented calls, one per captured argument: its name
    /// and its value as [`FieldValue`](crate::FieldValue)'s `Display` writes it.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::pairs"))]
    pub fields: Vec<(Cow<'static, str>, String)>,
    /// The callsite that made the entry, for entries made by instrumented calls.
    pub callsite: Option<&'static Metadata>,
}

impl AuditEntry {
    /// A new entry for `operation`, stamped now, with the current correlation id.
    #[must_use]
    pub fn new(operation: impl Into<Cow<'static, str>>) -> Self {
        AuditEntry {
            sequence: 0,
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
