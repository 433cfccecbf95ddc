//! Procedural macros of the `instrument` SDK.
//!
//! Use them through the `instrument` crate, which re-exports them and provides the runtime their
//! expansions call: `use instrument::instrument_performance;`. This crate's version is pinned to
//! `instrument`'s, and what its expansions call (`instrument::__private`) is not a stable API.
//!
//! - [`macro@instrument_performance`] times every call of a function, or of every method of an
//!   `impl` block, and records its outcome (`ok`, `error` with a kind, `panic`, `cancelled`).
//! - [`macro@no_instrument`] exempts one method of an instrumented `impl` block.
//! - [`derive@ErrorKind`] names an error's kind after its enum variant.
//!
//! # Crate features
//!
//! - `enabled` (default; `instrument`'s `enabled` feature turns it on): expand
//!   `#[instrument_performance]`. Off, the attribute still checks its arguments, and reports the
//!   same errors, but returns the item unchanged.

mod args;
mod derive;
mod expand;
mod validate;

use proc_macro::TokenStream;

/// Times every call of a function and records its outcome.
///
/// ```text
/// #[instrument_performance]
/// fn parse(input: &str) -> Result<Ast, ParseError> { .. }
///
/// #[instrument_performance(name = "db.query", slow = "5ms", capture(id), labels(table = "users"))]
/// async fn load(&self, id: u64) -> anyhow::Result<User> { .. }
/// ```
///
/// Only the body changes: signature, visibility, attributes and doc comments stay as written.
/// A call returning `Err(e)` is recorded as an error whose kind is `e`'s
/// [`ErrorKind`](derive@ErrorKind) when its type implements it, else its type name; any other
/// return value is `ok`. A panic is recorded as `panic`, and an `async fn` future dropped before
/// it completes as `cancelled`.
///
/// # Where it applies
///
/// Free functions, methods and associated functions, trait default methods, generic, `unsafe`
/// and `async` functions. It does not apply to a `const fn` or to a method without a body.
///
/// On an `impl` block (inherent or trait impl) it instruments every method, each named
/// `module::Type::method`. A method marked [`#[no_instrument]`](macro@no_instrument) is left
/// alone. A method with its own `#[instrument_performance(...)]` is instrumented once, with its
/// own options taking precedence over the block's.
///
/// # Options
///
/// | option | meaning |
/// | --- | --- |
/// | `name = "..."` | callsite name; default `module::function` (not allowed on an `impl` block) |
/// | `labels(key = "value", ..)` | static labels; keys follow Prometheus rules and must not be `le`, `quantile`, `function`, `module`, `outcome`, `error_kind` or start with `__` |
/// | `slow = "5ms"` | calls at least this long are sent to event sinks (checked at compile time) |
/// | `sample = 0.01` | fraction of calls (0 < p ≤ 1) sent to event sinks regardless of outcome |
/// | `capture(a, %b)` | attach these parameters to per-call events: `Debug`, or `Display` with `%` |
/// | `skip(a, ..)` | capture every named parameter (`Debug`) except these; not with `capture` |
/// | `audit` | every call produces an audit entry |
/// | `err_kind = path` | a `fn(&E) -> &'static str` that names the kind of a returned error |
/// | `crate = path` | the path of the `instrument` crate, for crates that re-export it |
///
/// Each option may be given once. Unknown options, invalid values and names of parameters the
/// function does not have are compile errors pointing at the offending argument.
#[proc_macro_attribute]
pub fn instrument_performance(args: TokenStream, item: TokenStream) -> TokenStream {
    // Both inputs are parsed by `expand::instrument`: on an argument error it must still print
    // the item back next to the error.
    expand::instrument(args.into(), item.into()).into()
}

/// Leaves a method of an `#[instrument_performance]` `impl` block uninstrumented.
///
/// ```text
/// #[instrument_performance]
/// impl Cache {
///     fn get(&self, key: &str) -> Option<&Entry> { .. }
///     #[no_instrument]
///     fn len(&self) -> usize { .. }
/// }
/// ```
///
/// Anywhere else it does nothing. It takes no arguments.
#[proc_macro_attribute]
pub fn no_instrument(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::no_instrument(args.into(), item.into()).into()
}

/// Implements `instrument::ErrorKind` for an enum (the kind is the variant's name) or a struct
/// (the kind is the type's name).
///
/// ```text
/// #[derive(Debug, ErrorKind)]
/// enum FetchError { Timeout, Status(u16), Decode { offset: usize } }
/// // FetchError::Status(404).error_kind() == "Status"
/// ```
#[proc_macro_derive(ErrorKind)]
pub fn derive_error_kind(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    derive::error_kind(&input)
        .unwrap_or_else(|err| err.to_compile_error())
        .into()
}
