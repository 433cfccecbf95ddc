//! Procedural macros of the `instrument` SDK.
//!
//! Use them through the `instrument` crate, which re-exports them and provides the runtime their
//! expansions call: `use instrument::instrument_performance;`. This crate's version is pinned to
//! `instrument`'s, and what its expansions call (`instrument::__private`) is not a stable API.
//!
//! - [`macro@instrument_performance`] times every call of a function, or of every method of an
//!   `impl` block, and records its outcome (`ok`, `error` with a kind, `panic`, `cancelled`).
//! - [`macro@no_instrument`] exempts one method of an instrumented `impl` block.
//! - [`derive@ErrorKind`] names an error's kind after its enum variant, or as
//!   `#[error_kind(rename = "...")]` says.
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
/// ```
/// use instrument::instrument_performance;
///
/// #[instrument_performance]
/// fn parse(input: &str) -> Result<u32, std::num::ParseIntError> {
///     input.trim().parse()
/// }
///
/// struct Users;
///
/// impl Users {
///     #[instrument_performance(name = "db.load_user", slow = "5ms", capture(id))]
///     async fn load(&self, id: u64) -> Result<String, std::io::Error> {
///         Ok(format!("user {id}"))
///     }
/// }
/// # assert_eq!(parse(" 42 "), Ok(42));
/// # drop(Users.load(1));
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
/// The default callsite name is `module::function`. An attribute on a single method sees only
/// that method, not its type, so a method annotated on its own is named `module::method` too;
/// annotate the `impl` block, or set `name`, to tell apart same-named methods of different types.
///
/// On an `impl` block (inherent or trait impl) it instruments every method, each named
/// `module::Type::method`. A method marked [`#[no_instrument]`](macro@no_instrument) is left
/// alone. A method with its own `#[instrument_performance(...)]` is instrumented once, with its
/// own options taking precedence over the block's. The block's `err_kind` applies only to the
/// methods whose return type is a `Result` (see below); the others are instrumented without it.
///
/// # `err_kind` and `Result`
///
/// Whether a function returns a `Result` is decided from its signature as written: the return
/// type must be a path whose last segment is `Result`, such as `Result<T, E>`,
/// `std::io::Result<T>`, `fmt::Result` or `anyhow::Result<T>` (for an `async fn`, its declared
/// output). On a function, or a method's own attribute, `err_kind` with any other return type
/// is a compile error pointing at it. An alias of `Result` under another name
/// (`type Fallible<T> = Result<T, MyError>`) is not recognised: write the return type as
/// `Result<T, MyError>`, or name the alias `Result` in its own module, as `std::io` does.
///
/// ```
/// use instrument::instrument_performance;
///
/// fn overflow_kind(_: &Overflow) -> &'static str {
///     "overflow"
/// }
///
/// #[derive(Debug)]
/// struct Overflow;
///
/// struct Counter(u8);
///
/// #[instrument_performance(err_kind = overflow_kind)]
/// impl Counter {
///     fn new() -> Self {                              // no `err_kind`: not a `Result`
///         Counter(0)
///     }
///
///     fn bump(&mut self) -> Result<u8, Overflow> {    // errors named by `overflow_kind`
///         self.0 = self.0.checked_add(1).ok_or(Overflow)?;
///         Ok(self.0)
///     }
/// }
/// # assert_eq!(Counter::new().bump().unwrap(), 1);
/// ```
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
/// | `err_kind = path` | a `fn(&E) -> &'static str` that names the kind of a returned error; needs a `Result` return type |
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
/// ```
/// # #![deny(unused_imports)]
/// use instrument::{instrument_performance, no_instrument};
///
/// struct Cache(Vec<u32>);
///
/// #[instrument_performance]
/// impl Cache {
///     fn get(&self, index: usize) -> Option<&u32> {
///         self.0.get(index)
///     }
///
///     #[no_instrument]
///     fn len(&self) -> usize {
///         self.0.len()
///     }
/// }
/// # let cache = Cache(vec![1]);
/// # assert_eq!(cache.get(0), Some(&1));
/// # assert_eq!(cache.len(), 1);
/// ```
///
/// Anywhere else it does nothing. It takes no arguments.
///
/// The marker stays on the method, where it expands to nothing, so it resolves as written: as
/// `#[no_instrument]` through an import of it, which is then used, or as a path such as
/// `#[instrument::no_instrument]`. Inside an instrumented block `#[no_instrument]` also resolves
/// without an import: the block's expansion provides it through a glob import, which an import
/// of your own takes precedence over.
#[proc_macro_attribute]
pub fn no_instrument(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::no_instrument(args.into(), item.into()).into()
}

/// Implements `instrument::ErrorKind` for an enum (the kind is the variant's name) or a struct
/// (the kind is the type's name).
///
/// ```
/// use instrument::ErrorKind;
///
/// #[derive(Debug, ErrorKind)]
/// enum FetchError {
///     Timeout,
///     Status(u16),
///     Decode { offset: usize },
///     #[error_kind(rename = "fetch.io")]
///     Io(std::io::Error),
/// }
///
/// assert_eq!(FetchError::Status(404).error_kind(), "Status");
/// assert_eq!(FetchError::Decode { offset: 3 }.error_kind(), "Decode");
/// assert_eq!(FetchError::Io(std::io::ErrorKind::Other.into()).error_kind(), "fetch.io");
/// ```
///
/// # `#[error_kind(...)]`
///
/// | where | option | meaning |
/// | --- | --- | --- |
/// | a variant, or a struct | `rename = "..."` | the kind reported instead of the name (not empty) |
/// | the type | `crate = path` | the path of the `instrument` crate, for crates that re-export it |
///
/// Several variants may share a kind. With `crate = path` the trait implemented is
/// `path::ErrorKind`, so a crate re-exporting `instrument` can derive it for users who do not
/// depend on `instrument` themselves:
///
/// ```
/// # mod my_sdk { pub use instrument; }
/// #[derive(Debug, my_sdk::instrument::ErrorKind)]
/// #[error_kind(crate = my_sdk::instrument)]
/// struct QueueFull;
/// # use instrument::ErrorKind as _;
/// # assert_eq!(QueueFull.error_kind(), "QueueFull");
/// ```
#[proc_macro_derive(ErrorKind, attributes(error_kind))]
pub fn derive_error_kind(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    derive::error_kind(&input)
        .unwrap_or_else(|err| err.to_compile_error())
        .into()
}
