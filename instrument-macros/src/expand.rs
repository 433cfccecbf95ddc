//! Rewriting of instrumented functions and `impl` blocks.
//!
//! Only a function's body changes: its attributes, visibility and signature are printed back
//! exactly as written. The new body declares a per-callsite `static`, enters a guard, runs the
//! original body in a closure (or an `async` block) so that `return` and `?` stay inside it,
//! classifies the returned value as `ok` or `err(kind)` and returns it. See
//! `docs/macro-contract.md` for the runtime side.

use std::hash::{Hash as _, Hasher as _};

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::visit_mut::VisitMut;
use syn::{
    Attribute, Block, Error, Expr, ExprAsync, Ident, ImplItem, ImplItemFn, Item, ItemFn, ItemImpl,
    Result, ReturnType, Signature, Stmt, Type, TypeInfer,
};

use crate::args::{self, Args};
use crate::validate::{self, ATTRIBUTE, Field, MARKER};

/// Whether expansions instrument anything. Off, arguments are still checked.
const ENABLED: bool = cfg!(feature = "enabled");

/// `#[instrument_performance(args)]` on `item`: the rewritten item, or the error followed by the
/// item as written, so the user sees exactly one error and no follow-on ones.
pub(crate) fn instrument(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = syn::parse2::<Args>(args);
    let parsed = match syn::parse2::<Item>(item.clone()) {
        Ok(parsed) => parsed,
        Err(err) => return with_item(&err, item),
    };
    match parsed {
        // An `impl` block is printed back without the methods' own attributes even on error:
        // left in place, they would expand on their own and report follow-on errors.
        Item::Impl(item_impl) => impl_block(args, item_impl),
        Item::Fn(item_fn) => match args.and_then(|args| function(&args, item_fn)) {
            Ok(Some(expanded)) => expanded.into_token_stream(),
            Ok(None) => item,
            Err(err) => with_item(&err, item),
        },
        other => {
            let err = match args {
                Err(err) => err,
                Ok(_) => validate::unsupported_item(&other),
            };
            with_item(&err, item)
        }
    }
}

/// `#[no_instrument]` outside an instrumented `impl` block: a marker that changes nothing.
pub(crate) fn no_instrument(args: TokenStream, item: TokenStream) -> TokenStream {
    if args.is_empty() {
        return item;
    }
    let err = Error::new_spanned(args, "`#[no_instrument]` takes no arguments");
    with_item(&err, item)
}

fn with_item(err: &Error, item: TokenStream) -> TokenStream {
    let mut tokens = err.to_compile_error();
    tokens.extend(item);
    tokens
}

// Input:  #[instrument_performance(args)] fn f(..) -> R { body }
// Output: fn f(..) -> R { <instrumented body> }, or `None` (the item as written) when the
//         `enabled` feature is off.
fn function(args: &Args, mut item: ItemFn) -> Result<Option<ItemFn>> {
    validate::other_attributes(&item.attrs)?;
    let fields = validate::function(args, &item.sig)?;
    if !ENABLED {
        return Ok(None);
    }
    let name = item.sig.ident.unraw().to_string();
    *item.block = instrumented_body(args, &fields, &item.sig, &item.block, &name);
    Ok(Some(item))
}

// Input:  #[instrument_performance(args)] impl Type { fn a(..) {..} #[no_instrument] fn b(..) {..} }
// Output: impl Type { fn a(..) { <instrumented body named "Type::a"> } #[no_instrument] fn b(..) {..} }
//         + the `no_instrument` fallback (see `marker_fallback`) when a marker is a bare name.
//         Methods marked `#[no_instrument]` keep their body and the marker, which expands to
//         nothing. A method's own `#[instrument_performance(..)]` is removed and its options
//         override the block's.
fn impl_block(args: Result<Args>, mut item: ItemImpl) -> TokenStream {
    let mut errors = Vec::new();
    let args = args
        .and_then(|args| {
            validate::other_attributes(&item.attrs)?;
            if let Some(name) = &args.name {
                return Err(Error::new_spanned(
                    args::name_option_span(name),
                    "`name` cannot be set on an `impl` block: each method is named \
                     `module::Type::method`; set `name` in a method's own \
                     `#[instrument_performance(...)]`",
                ));
            }
            Ok(args)
        })
        .map_err(|err| errors.push(err))
        .ok();
    let type_name = self_type_name(&item.self_ty);
    let mut bare_marker = false;
    for impl_item in &mut item.items {
        if let ImplItem::Fn(method) = impl_item {
            match method_in_impl(args.as_ref(), &type_name, method) {
                Ok(marker) => bare_marker |= marker == Some(MarkerForm::Bare),
                Err(err) => errors.push(err),
            }
        }
    }
    let mut tokens = TokenStream::new();
    for err in &errors {
        tokens.extend(err.to_compile_error());
    }
    if bare_marker {
        let krate = args.as_ref().and_then(|args| args.krate.as_ref());
        tokens.extend(marker_fallback(krate.map(|krate| &krate.path), &item));
    }
    item.to_tokens(&mut tokens);
    tokens
}

/// How a method's `#[no_instrument]` marker is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MarkerForm {
    /// `#[no_instrument]`: resolves through the user's import, or else the fallback.
    Bare,
    /// `#[instrument::no_instrument]` or any other path: resolves through the path.
    Path,
}

/// Instruments one method of an instrumented `impl` block, or leaves its body alone when
/// `args` is `None` (the block's own arguments were invalid), when it is marked
/// `#[no_instrument]`, or on error.
///
/// The method's own `#[instrument_performance]` is always removed. A valid `#[no_instrument]`
/// marker is kept where it was written, so that it resolves as written (through the user's
/// `use`, which is then used) and expands to nothing; its form is returned. A marker is removed
/// when it is in error, so that it reports nothing a second time, and when `args` is `None`.
fn method_in_impl(
    args: Option<&Args>,
    type_name: &str,
    method: &mut ImplItemFn,
) -> Result<Option<MarkerForm>> {
    let mut own: Option<Attribute> = None;
    let mut marker: Option<usize> = None;
    let mut first_error: Option<Error> = None;
    let mut attrs = Vec::with_capacity(method.attrs.len());
    for attr in method.attrs.drain(..) {
        if validate::is_attribute(&attr, ATTRIBUTE) {
            if own.is_some() && first_error.is_none() {
                first_error = Some(Error::new_spanned(
                    &attr,
                    "`#[instrument_performance]` is applied more than once to this method",
                ));
            }
            own.get_or_insert(attr);
        } else if validate::is_attribute(&attr, MARKER) {
            // A repeated marker says nothing more: only the first is kept.
            if marker.is_none() {
                marker = Some(attrs.len());
                attrs.push(attr);
            }
        } else {
            attrs.push(attr);
        }
    }
    let marker = marker.map(|index| (index, attrs[index].clone()));
    method.attrs = attrs;
    let strip_marker = |method: &mut ImplItemFn| {
        if let Some((index, _)) = marker {
            method.attrs.remove(index);
        }
    };
    if let Some(err) = first_error {
        strip_marker(method);
        return Err(err);
    }
    if let Some((_, marker)) = &marker {
        let arguments = match &marker.meta {
            syn::Meta::Path(_) => None,
            syn::Meta::List(list) if !list.tokens.is_empty() => Some(list.tokens.to_token_stream()),
            meta => Some(meta.to_token_stream()),
        };
        let err = if let Some(arguments) = arguments {
            Error::new_spanned(arguments, "`#[no_instrument]` takes no arguments")
        } else if own.is_some() {
            Error::new_spanned(
                marker,
                "`#[no_instrument]` contradicts `#[instrument_performance]` on the same method",
            )
        } else if args.is_some() {
            let path = marker.path();
            let bare = path.leading_colon.is_none() && path.segments.len() == 1;
            return Ok(Some(if bare {
                MarkerForm::Bare
            } else {
                MarkerForm::Path
            }));
        } else {
            // The block's arguments are in error, its `crate` path with them: the marker could
            // not be given a fallback that is sure to resolve, and is not needed.
            strip_marker(method);
            return Ok(None);
        };
        strip_marker(method);
        return Err(err);
    }
    let own = own.as_ref().map(method_args).transpose()?;
    let Some(base) = args else { return Ok(None) };
    let mut args = own.unwrap_or_default().merged_over(base);
    // The block's `err_kind` names the errors of its methods that return a `Result`; the others
    // are instrumented without it. A method's own `err_kind` is checked like a function's.
    if args
        .err_kind
        .as_ref()
        .is_some_and(|err_kind| err_kind.from_impl)
        && !validate::returns_result(&method.sig.output)
    {
        args.err_kind = None;
    }
    let fields = validate::function(&args, &method.sig).map_err(|err| {
        if method.sig.constness.is_some() {
            Error::new(
                err.span(),
                format!("{err}; mark the method `#[no_instrument]`"),
            )
        } else {
            err
        }
    })?;
    if ENABLED {
        let name = format!("{type_name}::{}", method.sig.ident.unraw());
        method.block = instrumented_body(&args, &fields, &method.sig, &method.block, &name);
    }
    Ok(None)
}

// Input:  the block's `crate` path (`::instrument` by default) and the `impl` block
// Output: #[doc(hidden)]
//         mod __instrument_no_instrument_<hash> {
//             use super::*;                                // only for a relative `crate` path
//             pub(super) use <crate path>::no_instrument;
//         }
//         use __instrument_no_instrument_<hash>::*;
//
//         A bare `#[no_instrument]` kept on a method resolves through the user's own import of
//         it when there is one: an explicit import shadows a glob. Without one, it resolves
//         through this glob, as it did when the marker was removed. Globs of the same macro
//         from several blocks in one module do not conflict; the module names do, so each is
//         named after a hash of its block's tokens and position.
fn marker_fallback(krate: Option<&syn::Path>, item: &ItemImpl) -> TokenStream {
    let tokens = item.to_token_stream();
    let start = item.impl_token.span.start();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (tokens.to_string(), start.line, start.column).hash(&mut hasher);
    let module = Ident::new(
        &format!("__instrument_no_instrument_{:016x}", hasher.finish()),
        Span::call_site(),
    );
    // The path is resolved inside the new module, one level below where it was written: `self`
    // becomes `super`, `super` gains one, and a name the path starts with is found through a
    // glob of the parent (an item or `use` there) or, for a crate's name, in the extern prelude.
    let (parent_glob, krate) = match krate {
        None => (None, quote!(::instrument)),
        Some(path) if path.leading_colon.is_some() => (None, path.to_token_stream()),
        Some(path) => {
            let first = path
                .segments
                .first()
                .map(|segment| segment.ident.to_string());
            match first.as_deref() {
                Some("crate" | "$crate") => (None, path.to_token_stream()),
                Some("self") => {
                    let rest = path.segments.iter().skip(1);
                    (None, quote!(super #(:: #rest)*))
                }
                Some("super") => (None, quote!(super :: #path)),
                _ => (
                    Some(quote! {
                        #[allow(unused_imports, clippy::wildcard_imports)]
                        use super::*;
                    }),
                    path.to_token_stream(),
                ),
            }
        }
    };
    quote! {
        #[doc(hidden)]
        mod #module {
            #parent_glob
            #[allow(unused_imports)]
            pub(super) use #krate::no_instrument;
        }
        #[allow(unused_imports, clippy::wildcard_imports)]
        use #module::*;
    }
}

/// The arguments of a method's own `#[instrument_performance]` or `#[instrument_performance(..)]`.
fn method_args(attr: &Attribute) -> Result<Args> {
    match &attr.meta {
        syn::Meta::Path(_) => Ok(Args::default()),
        syn::Meta::List(list) => list.parse_args(),
        syn::Meta::NameValue(meta) => Err(Error::new_spanned(
            meta,
            "expected `#[instrument_performance]` or `#[instrument_performance(...)]`",
        )),
    }
}

/// The name a method of an `impl` block for `ty` is recorded under: the last path segment of the
/// type, without generic arguments.
fn self_type_name(ty: &Type) -> String {
    match validate::strip_parens(ty) {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .map_or_else(String::new, |segment| segment.ident.unraw().to_string()),
        Type::Reference(reference) => self_type_name(&reference.elem),
        Type::TraitObject(object) => object
            .bounds
            .iter()
            .find_map(|bound| match bound {
                syn::TypeParamBound::Trait(bound) => bound.path.segments.last(),
                _ => None,
            })
            .map_or_else(String::new, |segment| {
                format!("dyn {}", segment.ident.unraw())
            }),
        other => other.to_token_stream().to_string().replace(' ', ""),
    }
}

/// A local the expansion introduces. Mixed-site hygiene keeps it invisible to the user's body.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

// Input:  { body } of `fn f(..) -> R`, or of `async fn f(..) -> R`
// Output: {
//             static __INSTRUMENT_CALLSITE: Callsite = Callsite::new(Metadata::new(..)..);
//             // sync fns (see below):
//             fn __instrument_once<R, F: FnOnce() -> R>(f: F) -> F { f }
//             let __instrument_body = __instrument_once(move || { <fake return> body });
//             let __instrument_state = state();
//             if !is_installed(__instrument_state) { return __instrument_body(); }
//             let mut __instrument_guard = Guard::enter_with(&__INSTRUMENT_CALLSITE, __instrument_state);
//             // async fns: let mut __instrument_guard = Guard::enter(&__INSTRUMENT_CALLSITE);
//             if __instrument_guard.wants_fields() { __instrument_guard.set_fields(format!(..)); }
//             let __instrument_result = __instrument_body();
//             //  async fn: { let mut p = pin!(async move { <fake return> body });
//             //              poll_fn(|cx| __instrument_guard.poll_body(Pin::as_mut(&mut p), cx)).await }
//             { use ViaResult as _, ..; match (&__instrument_result).__instrument_error() { .. } }
//             __instrument_result
//         }
//         For `-> !` the body runs after the guard is entered, unchanged: it never returns, and
//         the guard records `panic` if it unwinds.
fn instrumented_body(
    args: &Args,
    fields: &[Field],
    sig: &Signature,
    block: &Block,
    default_name: &str,
) -> Block {
    let krate = args.crate_path();
    let boxed = boxed_async_block(sig, block);
    let is_async = sig.asyncness.is_some() || boxed.is_some();
    let callsite = callsite_static(args, sig, default_name, !fields.is_empty(), is_async);
    let guard = local("__instrument_guard");
    let result = local("__instrument_result");
    let mutability = (!fields.is_empty()).then(|| quote!(mut));
    let set_fields = set_fields(&krate, &guard, fields);
    let classify = classify(args, &krate, &guard, &result);
    let stmts = &block.stmts;
    // The statements of a future timed across its awaits: `body` runs in an inner `async` block
    // so that `return` and `?` end the body, not the future. The guard polls it, so that it
    // knows whether a drop comes from a panic in the body's own poll (`panic`) or happens
    // between polls (`cancelled`, even when unrelated code is unwinding).
    let timed_future = |body: TokenStream| {
        let pinned = local("__instrument_pinned");
        let cx = local("__instrument_cx");
        quote! {
            let mut #guard = #krate::__private::Guard::enter(&__INSTRUMENT_CALLSITE);
            #set_fields
            let #result = {
                let mut #pinned = ::core::pin::pin!(async move { #body });
                ::core::future::poll_fn(|#cx| {
                    #guard.poll_body(::core::pin::Pin::as_mut(&mut #pinned), #cx)
                })
                .await
            };
            #classify
            #result
        }
    };

    let tokens = if let Some((box_pin, inner)) = boxed {
        // `#[async_trait]` has already turned `async fn` into a function returning
        // `Box::pin(async move { .. })`: time the future, as for an `async fn`. The inner block
        // pins its own output type, so no fake return is needed.
        let inner_stmts = &inner.block.stmts;
        let timed = timed_future(quote!(#(#inner_stmts)*));
        quote! {
            #callsite
            #box_pin(async move { #timed })
        }
    } else if returns_never(&sig.output) {
        // The guard is mutable when arguments are captured into it, as in the other shapes.
        quote! {
            #callsite
            let #mutability #guard = #krate::__private::Guard::enter(&__INSTRUMENT_CALLSITE);
            #set_fields
            #(#stmts)*
        }
    } else {
        let fake_return = fake_return(&sig.output);
        if sig.asyncness.is_some() {
            let timed = timed_future(quote!(#fake_return #(#stmts)*));
            quote! {
                #callsite
                #timed
            }
        } else {
            // The closure goes through a function taking `FnOnce` rather than being bound or
            // called in place: a closure's kind is taken from such a bound, while one called in
            // place is inferred as `FnMut` whenever the body reborrows a capture, and an `FnMut`
            // closure cannot return a reference into its captures (`fn get(&mut self) -> &mut T`).
            // With no pipeline installed the body runs before any guard exists, so that path is
            // one load, one branch and the body.
            let once = local("__instrument_once");
            let body = local("__instrument_body");
            let state = local("__instrument_state");
            // Captured arguments are formatted before the closure takes them.
            let captured = local("__instrument_fields");
            let (format_before, set_after) = match format_fields(&krate, fields) {
                Some(format) => (
                    Some(quote! {
                        let #captured = if #krate::__private::wants_fields(#state) {
                            ::core::option::Option::Some(#format)
                        } else {
                            ::core::option::Option::None
                        };
                    }),
                    Some(quote! {
                        if let ::core::option::Option::Some(#captured) = #captured {
                            #guard.set_fields(#captured);
                        }
                    }),
                ),
                None => (None, None),
            };
            quote! {
                #callsite
                #[inline(always)]
                fn #once<__InstrumentR, __InstrumentF: ::core::ops::FnOnce() -> __InstrumentR>(
                    #body: __InstrumentF,
                ) -> __InstrumentF {
                    #body
                }
                let #state = #krate::__private::state();
                #format_before
                let #body = #once(move || { #fake_return #(#stmts)* });
                if !#krate::__private::is_installed(#state) {
                    return #body();
                }
                let #mutability #guard = #krate::__private::Guard::enter_with(&__INSTRUMENT_CALLSITE, #state);
                #set_after
                let #result = #body();
                #classify
                #result
            }
        }
    };
    Block {
        brace_token: block.brace_token,
        stmts: vec![Stmt::Item(Item::Verbatim(tokens))],
    }
}

/// For a function that is not `async` but returns `Pin<Box<dyn Future<..>>>` with a body that
/// is only `Box::pin(async move { .. })` (what `#[async_trait]` makes of an `async fn`): the
/// called path and the `async move` block.
fn boxed_async_block<'a>(sig: &Signature, block: &'a Block) -> Option<(&'a Expr, &'a ExprAsync)> {
    if sig.asyncness.is_some() {
        return None;
    }
    let ReturnType::Type(_, output) = &sig.output else {
        return None;
    };
    validate::boxed_future_output(output)?;
    let [Stmt::Expr(Expr::Call(call), None)] = block.stmts.as_slice() else {
        return None;
    };
    let Expr::Path(path) = &*call.func else {
        return None;
    };
    let mut segments = path.path.segments.iter().rev();
    let (Some(pin), Some(boxed)) = (segments.next(), segments.next()) else {
        return None;
    };
    if pin.ident != "pin" || boxed.ident != "Box" || call.args.len() != 1 {
        return None;
    }
    match call.args.first() {
        Some(Expr::Async(inner)) if inner.capture.is_some() => Some((&call.func, inner)),
        _ => None,
    }
}

/// The per-callsite `static`, built at compile time by `const fn`s.
fn callsite_static(
    args: &Args,
    sig: &Signature,
    default_name: &str,
    captures: bool,
    is_async: bool,
) -> TokenStream {
    let krate = args.crate_path();
    let name = args.name.as_ref().map_or_else(
        || quote!(::core::concat!(::core::module_path!(), "::", #default_name)),
        |name| name.value.to_token_stream(),
    );
    // The line of the function's name: for methods of an `impl` block `line!()` would give the
    // line of the block's attribute.
    let line = Literal::u32_unsuffixed(u32::try_from(sig.ident.span().start().line).unwrap_or(0));
    let kind = if is_async {
        quote!(Async)
    } else {
        quote!(Function)
    };
    let labels = args.labels.as_ref().map(|labels| {
        let pairs = labels.labels.iter().map(|label| {
            let (key, value) = (&label.key, &label.value);
            quote!((#key, #value))
        });
        quote!(.labels(&[#(#pairs),*]))
    });
    let slow = args.slow.as_ref().map(|slow| {
        let nanos = Literal::u64_unsuffixed(slow.nanos);
        quote!(.slow_ns(#nanos))
    });
    let sample = args.sample.as_ref().map(|sample| {
        let fraction = Literal::f64_suffixed(sample.fraction);
        quote!(.sample(#fraction))
    });
    let audit = args.audit.map(|_| quote!(.audit()));
    let captures = captures.then(|| quote!(.captures()));
    quote! {
        static __INSTRUMENT_CALLSITE: #krate::__private::Callsite =
            #krate::__private::Callsite::new(
                #krate::__private::Metadata::new(
                    #name,
                    ::core::module_path!(),
                    ::core::file!(),
                    #line,
                    #krate::__private::CallsiteKind::#kind,
                )
                #labels #slow #sample #audit #captures
            );
    }
}

/// Formats captured parameters before the body runs, since the body may move them.
fn set_fields(krate: &TokenStream, guard: &Ident, fields: &[Field]) -> Option<TokenStream> {
    let format = format_fields(krate, fields)?;
    Some(quote! {
        if #guard.wants_fields() {
            #guard.set_fields(#format);
        }
    })
}

// Input:  capture(a, %b)
// Output: {
//             static __INSTRUMENT_FIELDS: FieldNames = FieldNames::new(&["a", "b"]);
//             use ViaRaw as _, ViaDebug as _, ViaDisplay as _;
//             let mut __instrument_captured = Fields::new(&__INSTRUMENT_FIELDS);
//             (&Capture(&a)).__instrument_debug_kind().push(&mut __instrument_captured, &a);
//             (&Capture(&b)).__instrument_display_kind().push(&mut __instrument_captured, &b);
//             __instrument_captured
//         }
//         An expression building the captured arguments' `Fields`; `None` when nothing is
//         captured. Autoref specialisation copies values of common types raw and formats the
//         others in place (`Debug`, or `Display` for `%b`); the second `&a` is spanned at the
//         argument, so a type that is neither raw nor `Debug` is reported there.
fn format_fields(krate: &TokenStream, fields: &[Field]) -> Option<TokenStream> {
    if fields.is_empty() {
        return None;
    }
    let captured = local("__instrument_captured");
    let names = fields.iter().map(|field| field.ident.unraw().to_string());
    let pushes = fields.iter().map(|field| {
        let ident = &field.ident;
        let kind = if field.display {
            quote!(__instrument_display_kind)
        } else {
            quote!(__instrument_debug_kind)
        };
        let value = quote_spanned!(ident.span()=> &#ident);
        quote! {
            (&#krate::__private::Capture(&#ident)).#kind().push(&mut #captured, #value);
        }
    });
    Some(quote! {
        {
            static __INSTRUMENT_FIELDS: #krate::__private::FieldNames =
                #krate::__private::FieldNames::new(&[#(#names),*]);
            #[allow(unused_imports)]
            use #krate::__private::{ViaDebug as _, ViaDisplay as _, ViaRaw as _};
            let mut #captured = #krate::__private::Fields::new(&__INSTRUMENT_FIELDS);
            #(#pushes)*
            #captured
        }
    })
}

// Input:  -> R
// Output: if false { let __instrument_fake_return: R = loop {}; return __instrument_fake_return; }
//         It pins the closure's (or async block's) output to R so that `?` and `return` in the
//         body infer their types as they would in the function itself. `impl Trait` inside R
//         becomes `_` (not allowed in a `let`); nothing is emitted for a bare `impl Trait`, which
//         pins nothing. `()` is pinned too: a body that always diverges (`panic!()`) would
//         otherwise leave the output type to inference, and the classification that follows
//         cannot call a method on a type that is not known yet.
fn fake_return(output: &ReturnType) -> Option<TokenStream> {
    let ty = match output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => {
            if matches!(validate::strip_parens(ty), Type::ImplTrait(_)) {
                return None;
            }
            let mut ty = (**ty).clone();
            ImplTraitToInfer.visit_type_mut(&mut ty);
            ty.into_token_stream()
        }
    };
    let fake = local("__instrument_fake_return");
    Some(quote! {
        #[allow(
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::needless_return
        )]
        if false {
            let #fake: #ty = loop {};
            return #fake;
        }
    })
}

/// Replaces every `impl Trait` in a type with `_`.
struct ImplTraitToInfer;

impl VisitMut for ImplTraitToInfer {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(impl_trait) = ty {
            let underscore_token = syn::Token![_](impl_trait.impl_token.span);
            *ty = Type::Infer(TypeInfer {
                attrs: Vec::new(),
                underscore_token,
            });
        } else {
            syn::visit_mut::visit_type_mut(self, ty);
        }
    }
}

fn returns_never(output: &ReturnType) -> bool {
    matches!(output, ReturnType::Type(_, ty) if matches!(validate::strip_parens(ty), Type::Never(_)))
}

/// Finishes the guard with `ok()` or `err(kind)` by autoref specialisation on the result's type.
fn classify(args: &Args, krate: &TokenStream, guard: &Ident, result: &Ident) -> TokenStream {
    let error = local("__instrument_e");
    let kind = args.err_kind.as_ref().map_or_else(
        || quote!(#error.__instrument_kind()),
        |err_kind| {
            let path = &err_kind.path;
            quote!(#path(#error))
        },
    );
    quote! {
        {
            #[allow(unused_imports)]
            use #krate::__private::{
                KindViaTrait as _, KindViaTypeName as _, ViaAny as _, ViaResult as _,
            };
            match (&#result).__instrument_error() {
                ::core::option::Option::None => #guard.ok(),
                ::core::option::Option::Some(#error) => #guard.err(#kind),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expands and re-parses the output so that tests compare normalised token text.
    fn expand(args: TokenStream, item: TokenStream) -> String {
        let out = instrument(args, item);
        let file: syn::File = syn::parse2(out.clone()).unwrap_or_else(|err| panic!("{err}: {out}"));
        file.to_token_stream().to_string()
    }

    #[cfg(feature = "enabled")]
    fn contains(haystack: &str, needle: &TokenStream) -> bool {
        haystack.contains(&needle.to_string())
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn sync_function_runs_its_body_through_a_once_closure() {
        let out = expand(
            quote!(),
            quote!(
                pub fn add(a: u32, b: u32) -> u32 {
                    a + b
                }
            ),
        );
        assert!(
            out.starts_with("pub fn add (a : u32 , b : u32) -> u32 {"),
            "{out}"
        );
        assert!(contains(
            &out,
            &quote!(static __INSTRUMENT_CALLSITE : :: instrument :: __private :: Callsite)
        ));
        assert!(contains(
            &out,
            &quote!(::core::concat!(::core::module_path!(), "::", "add"))
        ));
        assert!(contains(
            &out,
            &quote!(::instrument::__private::CallsiteKind::Function)
        ));
        assert!(contains(
            &out,
            &quote!(let __instrument_state = ::instrument::__private::state();)
        ));
        // Not installed: the body runs before any guard exists.
        assert!(contains(
            &out,
            &quote!(
                if !::instrument::__private::is_installed(__instrument_state) {
                    return __instrument_body();
                }
            )
        ));
        assert!(contains(
            &out,
            &quote!(let __instrument_guard = :: instrument :: __private :: Guard :: enter_with (& __INSTRUMENT_CALLSITE, __instrument_state))
        ));
        assert!(
            out.contains("let __instrument_body = __instrument_once (move | | {"),
            "{out}"
        );
        assert!(contains(
            &out,
            &quote!(let __instrument_result = __instrument_body();)
        ));
        assert!(contains(
            &out,
            &quote!(let __instrument_fake_return : u32 = loop { } ;)
        ));
        assert!(out.contains("a + b }) ;"), "{out}");
        assert!(contains(
            &out,
            &quote!(:: core :: option :: Option :: None => __instrument_guard . ok ())
        ));
        assert!(contains(
            &out,
            &quote!(__instrument_guard.err(__instrument_e.__instrument_kind()))
        ));
        assert!(out.ends_with("__instrument_result }"), "{out}");
        assert!(!out.contains("wants_fields"));
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn boxed_async_block_is_timed_inside_the_box() {
        // What `#[async_trait]` makes of `async fn get(&self) -> io::Result<u8>`.
        let out = expand(
            quote!(err_kind = kind),
            quote!(
                fn get<'life0, 'async_trait>(
                    &'life0 self,
                ) -> ::core::pin::Pin<
                    Box<dyn ::core::future::Future<Output = io::Result<u8>> + Send + 'async_trait>,
                > {
                    Box::pin(async move {
                        let __self = self;
                        Ok(1)
                    })
                }
            ),
        );
        assert!(contains(&out, &quote!(CallsiteKind::Async)), "{out}");
        assert!(
            out.contains("Box :: pin (async move { let mut __instrument_guard"),
            "{out}"
        );
        assert!(
            out.contains(
                "let mut __instrument_pinned = :: core :: pin :: pin ! (async move { let __self \
                 = self ; Ok (1) }) ;"
            ),
            "{out}"
        );
        assert!(contains(&out, &polled_by_the_guard()), "{out}");
        assert!(contains(
            &out,
            &quote!(__instrument_guard.err(kind(__instrument_e)))
        ));
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn other_boxed_bodies_are_plain_functions() {
        for item in [
            // Not a boxed future type.
            quote!(
                fn f() -> Box<u8> {
                    Box::pin(async move { 1 })
                }
            ),
            // More than the boxed block.
            quote!(
                fn f() -> Pin<Box<dyn Future<Output = u8>>> {
                    let x = 1;
                    Box::pin(async move { x })
                }
            ),
            // Not `move`.
            quote!(
                fn f() -> Pin<Box<dyn Future<Output = u8>>> {
                    Box::pin(async { 1 })
                }
            ),
        ] {
            let out = expand(quote!(), item);
            assert!(contains(&out, &quote!(CallsiteKind::Function)), "{out}");
            assert!(out.contains("__instrument_once"), "{out}");
        }
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn async_function_awaits_an_async_block() {
        let out = expand(
            quote!(),
            quote!(
                async fn load(id: u64) -> Result<u64, E> {
                    Ok(id)
                }
            ),
        );
        assert!(contains(&out, &quote!(CallsiteKind::Async)));
        assert!(
            out.contains(
                "let __instrument_result = { let mut __instrument_pinned = :: core :: pin :: pin \
                 ! (async move {"
            ),
            "{out}"
        );
        assert!(contains(
            &out,
            &quote!(let __instrument_fake_return : Result < u64 , E > = loop { } ;)
        ));
        assert!(out.contains("Ok (id) }) ;"), "{out}");
        // The guard polls the body, so it can tell a panic in its poll from a drop between polls.
        assert!(contains(&out, &polled_by_the_guard()), "{out}");
        assert!(!out.contains("__instrument_once"));
    }

    #[cfg(feature = "enabled")]
    fn polled_by_the_guard() -> TokenStream {
        quote! {
            ::core::future::poll_fn(|__instrument_cx| {
                __instrument_guard.poll_body(::core::pin::Pin::as_mut(&mut __instrument_pinned), __instrument_cx)
            })
            .await
        }
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn options_become_metadata_calls() {
        let out = expand(
            quote!(name = "db.query", labels(region = "eu"), slow = "5ms", sample = 0.5, audit, capture(a, %b)),
            quote!(
                fn f(a: u8, b: u8) {}
            ),
        );
        assert!(out.contains("Metadata :: new (\"db.query\" ,"), "{out}");
        assert!(contains(
            &out,
            &quote!(. labels (& [("region" , "eu")]) . slow_ns (5000000) . sample (0.5f64) . audit () . captures ())
        ));
        assert!(contains(&out, &quote!(let mut __instrument_guard)));
        // Arguments are captured before the body's closure takes them, only when installed:
        // raw or formatted, as their types decide.
        assert!(
            contains(
                &out,
                &quote!(
                    let __instrument_fields = if ::instrument::__private::wants_fields(__instrument_state) {
                        ::core::option::Option::Some({
                            static __INSTRUMENT_FIELDS: ::instrument::__private::FieldNames =
                                ::instrument::__private::FieldNames::new(&["a", "b"]);
                            #[allow(unused_imports)]
                            use ::instrument::__private::{ViaDebug as _, ViaDisplay as _, ViaRaw as _};
                            let mut __instrument_captured =
                                ::instrument::__private::Fields::new(&__INSTRUMENT_FIELDS);
                            (&::instrument::__private::Capture(&a))
                                .__instrument_debug_kind()
                                .push(&mut __instrument_captured, &a);
                            (&::instrument::__private::Capture(&b))
                                .__instrument_display_kind()
                                .push(&mut __instrument_captured, &b);
                            __instrument_captured
                        })
                    } else {
                        ::core::option::Option::None
                    };
                )
            ),
            "{out}"
        );
        let formatted = out.find("let __instrument_fields").unwrap();
        let closure = out.find("let __instrument_body").unwrap();
        assert!(formatted < closure, "{out}");
        assert!(contains(
            &out,
            &quote!(__instrument_guard.set_fields(__instrument_fields);)
        ));
        // `()` is pinned as well, for bodies that always diverge.
        assert!(contains(
            &out,
            &quote!(let __instrument_fake_return : () = loop { } ;)
        ));
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn err_kind_and_crate_paths_are_used() {
        let out = expand(
            quote!(err_kind = kinds::of, crate = ::reexport::instrument),
            quote!(
                fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(contains(
            &out,
            &quote!(__instrument_guard.err(kinds::of(__instrument_e)))
        ));
        assert!(contains(
            &out,
            &quote!(::reexport::instrument::__private::Guard::enter)
        ));
        assert_eq!(
            out.matches(":: instrument ::").count(),
            out.matches(":: reexport :: instrument ::").count()
        );
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn fake_return_replaces_nested_impl_trait() {
        let out = expand(
            quote!(),
            quote!(
                fn f() -> Result<impl Display, E> {
                    Ok(1)
                }
            ),
        );
        assert!(contains(
            &out,
            &quote!(let __instrument_fake_return : Result < _ , E > = loop { } ;)
        ));
        let out = expand(
            quote!(),
            quote!(
                fn f() -> impl Display {
                    1
                }
            ),
        );
        assert!(!out.contains("__instrument_fake_return"));
        let out = expand(
            quote!(),
            quote!(
                fn f() -> ! {
                    loop {}
                }
            ),
        );
        assert!(!out.contains("__instrument_fake_return") && !out.contains("__instrument_result"));
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn never_returning_function_captures_into_a_mutable_guard() {
        let out = expand(
            quote!(capture(x)),
            quote!(
                fn run(x: u32) -> ! {
                    loop {}
                }
            ),
        );
        assert!(
            contains(
                &out,
                &quote!(let mut __instrument_guard = ::instrument::__private::Guard::enter(&__INSTRUMENT_CALLSITE);)
            ),
            "{out}"
        );
        let set = out.find("__instrument_guard . set_fields").unwrap();
        let body = out.find("loop { }").unwrap();
        assert!(set < body, "{out}");
        // Without captures the guard is only dropped: no `mut`, which would warn.
        let out = expand(
            quote!(),
            quote!(
                fn run(x: u32) -> ! {
                    loop {}
                }
            ),
        );
        assert!(contains(&out, &quote!(let __instrument_guard =)), "{out}");
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn signature_and_attributes_are_kept() {
        let out = expand(
            quote!(),
            quote!(
                /// Docs.
                #[must_use]
                #[inline]
                pub(crate) unsafe fn f<'a, T: Clone, const N: usize>(x: &'a [T; N]) -> &'a T
                where
                    T: Send,
                {
                    #![allow(unused)]
                    &x[0]
                }
            ),
        );
        let head = quote!(
            #[doc = r" Docs."]
            #[must_use]
            #[inline]
            pub(crate) unsafe fn f<'a, T: Clone, const N: usize>(x: &'a [T; N]) -> &'a T
            where
                T: Send,
        );
        let head = format!("{head} {{ # ! [allow (unused)] static __INSTRUMENT_CALLSITE");
        assert!(out.starts_with(&head), "{out}");
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn impl_block_names_methods_after_the_type() {
        let out = expand(
            quote!(slow = "1ms"),
            quote!(
                impl<T> Store<T> {
                    fn get(&self) -> u8 {
                        1
                    }
                    #[no_instrument]
                    fn raw(&self) -> u8 {
                        2
                    }
                    #[instrument_performance(slow = "2ms", name = "custom")]
                    fn put(&mut self) {}
                    const C: u8 = 1;
                }
            ),
        );
        assert!(contains(&out, &quote!("::", "Store::get")));
        assert!(contains(
            &out,
            &quote!(
                #[no_instrument]
                fn raw(&self) -> u8 {
                    2
                }
            )
        ));
        assert!(!out.contains("instrument_performance"));
        assert!(out.contains("Metadata :: new (\"custom\" ,"), "{out}");
        assert!(contains(&out, &quote!(. slow_ns (2000000))));
        assert!(contains(&out, &quote!(. slow_ns (1000000))));
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn trait_impl_uses_the_self_type() {
        let out = expand(
            quote!(),
            quote!(impl fmt::Display for my::Wrapper<u8> { fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { Ok(()) } }),
        );
        assert!(contains(&out, &quote!("::", "Wrapper::fmt")));
    }

    #[test]
    fn self_type_names() {
        for (ty, name) in [
            (quote!(Foo), "Foo"),
            (quote!(a::b::Foo<T>), "Foo"),
            (quote!(&'a mut Foo), "Foo"),
            (quote!(dyn Trait + Send), "dyn Trait"),
            (quote!([u8]), "[u8]"),
            (quote!(r#type), "type"),
        ] {
            let ty: Type = syn::parse2(ty).unwrap();
            assert_eq!(self_type_name(&ty), name);
        }
    }

    #[test]
    fn errors_come_with_the_unchanged_item() {
        let item = quote!(
            fn f() {}
        );
        let out = instrument(quote!(bogus), item.clone()).to_string();
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        assert!(out.ends_with(&item.to_string()), "{out}");
        assert!(out.contains("expected one of"));

        let out = instrument(
            quote!(),
            quote!(
                const fn f() {}
            ),
        )
        .to_string();
        assert!(
            out.contains("`const fn`") && out.ends_with("const fn f () { }"),
            "{out}"
        );

        let out = instrument(
            quote!(),
            quote!(
                #[instrument_performance]
                fn f() {}
            ),
        )
        .to_string();
        assert!(out.contains("applied more than once"), "{out}");

        let out = instrument(
            quote!(),
            quote!(
                struct S;
            ),
        )
        .to_string();
        assert!(out.contains("only be applied to functions"), "{out}");
    }

    /// The `impl` block of an expansion, without the `no_instrument` fallback before it.
    fn impl_of(out: &str) -> &str {
        &out[out
            .find("impl ")
            .unwrap_or_else(|| panic!("no impl: {out}"))..]
    }

    #[test]
    fn impl_block_errors_strip_markers_in_error_only() {
        let out = instrument(
            quote!(capture(x)),
            quote!(impl S { fn a(&self, x: u8) {} fn b(&self) {} #[no_instrument] fn c(&self) {} }),
        )
        .to_string();
        assert!(out.contains("`b` has no parameter named `x`"), "{out}");
        assert!(
            impl_of(&out).contains("# [no_instrument] fn c (& self) { }"),
            "{out}"
        );

        let out = instrument(
            quote!(),
            quote!(impl S { #[no_instrument(hot)] fn a(&self) {} #[no_instrument] fn b(&self) {} }),
        )
        .to_string();
        assert!(out.contains("takes no arguments"), "{out}");
        assert!(
            impl_of(&out).contains("fn a (& self) { } # [no_instrument] fn b"),
            "{out}"
        );

        // Without the block's arguments there is no `crate` path for the fallback.
        let out = instrument(
            quote!(crate = ::sdk::instrument, bogus),
            quote!(impl S { #[no_instrument] fn a(&self) {} }),
        )
        .to_string();
        assert!(out.contains("expected one of"), "{out}");
        assert!(
            impl_of(&out).contains("impl S { fn a (& self) { } }"),
            "{out}"
        );
        assert!(!out.contains("mod __instrument_no_instrument"), "{out}");

        let out = instrument(quote!(name = "x"), quote!(impl S { fn a(&self) {} })).to_string();
        assert!(
            out.contains("`name` cannot be set on an `impl` block"),
            "{out}"
        );

        let out = instrument(
            quote!(),
            quote!(impl S { #[no_instrument] #[instrument_performance] fn a(&self) {} }),
        )
        .to_string();
        assert!(out.contains("contradicts"), "{out}");
        assert!(
            impl_of(&out).contains("impl S { fn a (& self) { } }"),
            "{out}"
        );
        assert!(!out.contains("mod __instrument_no_instrument"), "{out}");

        let out = instrument(quote!(), quote!(impl S { const fn a() {} })).to_string();
        assert!(out.contains("mark the method `#[no_instrument]`"), "{out}");
    }

    #[test]
    fn markers_are_kept_as_written() {
        let out = instrument(
            quote!(),
            quote!(impl S {
                #[inline]
                #[no_instrument]
                #[no_instrument]
                #[must_use]
                fn a(&self) -> u8 { 1 }
                #[instrument::no_instrument]
                fn b(&self) {}
            }),
        )
        .to_string();
        assert!(
            out.contains("# [inline] # [no_instrument] # [must_use] fn a"),
            "{out}"
        );
        assert!(
            out.contains("# [instrument :: no_instrument] fn b"),
            "{out}"
        );
        assert!(out.contains("mod __instrument_no_instrument_"), "{out}");

        // Written as a path only: it resolves through the path, no fallback is needed.
        let out = instrument(
            quote!(),
            quote!(impl S { #[::instrument::no_instrument] fn b(&self) {} }),
        )
        .to_string();
        assert!(
            out.contains("# [:: instrument :: no_instrument] fn b"),
            "{out}"
        );
        assert!(!out.contains("mod __instrument_no_instrument"), "{out}");
        let out = instrument(quote!(), quote!(impl S { fn b(&self) {} })).to_string();
        assert!(!out.contains("mod __instrument_no_instrument"), "{out}");
    }

    #[test]
    fn bare_marker_fallback_resolves_the_crate_path_from_its_module() {
        let fallback = |args: TokenStream| {
            let out = instrument(args, quote!(impl S { #[no_instrument] fn a(&self) {} }));
            let file: syn::File = syn::parse2(out).unwrap();
            let [Item::Mod(module), Item::Use(glob), Item::Impl(_)] = &file.items[..] else {
                panic!("{}", file.to_token_stream());
            };
            let name = module.ident.to_string();
            assert!(name.starts_with("__instrument_no_instrument_"), "{name}");
            assert_eq!(
                glob.to_token_stream().to_string(),
                format!(
                    "# [allow (unused_imports , clippy :: wildcard_imports)] use {name} :: * ;"
                )
            );
            let (_, content) = module.content.as_ref().unwrap();
            content
                .iter()
                .map(|item| item.to_token_stream().to_string())
                .collect::<Vec<_>>()
        };
        let reexport = |path: &str| {
            format!("# [allow (unused_imports)] pub (super) use {path} :: no_instrument ;")
        };
        assert_eq!(fallback(quote!()), [reexport(":: instrument")]);
        assert_eq!(
            fallback(quote!(crate = ::sdk::instrument)),
            [reexport(":: sdk :: instrument")]
        );
        assert_eq!(
            fallback(quote!(crate = crate::sdk)),
            [reexport("crate :: sdk")]
        );
        assert_eq!(
            fallback(quote!(crate = self::sdk)),
            [reexport("super :: sdk")]
        );
        assert_eq!(
            fallback(quote!(crate = super::sdk)),
            [reexport("super :: super :: sdk")]
        );
        assert_eq!(
            fallback(quote!(crate = reexport::instrument)),
            [
                "# [allow (unused_imports , clippy :: wildcard_imports)] use super :: * ;"
                    .to_owned(),
                reexport("reexport :: instrument")
            ]
        );
    }

    #[test]
    fn fallback_modules_of_different_blocks_differ() {
        let module = |item: TokenStream| {
            let out = instrument(quote!(), item).to_string();
            let start = out.find("__instrument_no_instrument_").unwrap();
            out[start..start + 43].to_owned()
        };
        let a = quote!(impl A { #[no_instrument] fn a(&self) {} });
        let b = quote!(impl B { #[no_instrument] fn a(&self) {} });
        assert_eq!(module(a.clone()), module(a.clone()));
        assert_ne!(module(a), module(b));
    }

    #[test]
    #[cfg(feature = "enabled")]
    fn impl_err_kind_applies_to_methods_returning_a_result() {
        let out = expand(
            quote!(err_kind = kinds::of),
            quote!(
                impl S {
                    fn new() -> Self {
                        S
                    }
                    fn len(&self) -> u32 {
                        0
                    }
                    fn clear(&mut self) {}
                    fn get(&self) -> Option<u8> {
                        None
                    }
                    fn load(&self) -> Result<u8, E> {
                        Ok(1)
                    }
                    fn read(&self) -> io::Result<u8> {
                        Ok(1)
                    }
                    async fn fetch(&self) -> anyhow::Result<u8> {
                        Ok(1)
                    }
                    #[instrument_performance(err_kind = kinds::other)]
                    fn save(&self) -> Result<(), E> {
                        Ok(())
                    }
                }
            ),
        );
        let by_err_kind = quote!(__instrument_guard.err(kinds::of(__instrument_e)));
        assert_eq!(out.matches(&by_err_kind.to_string()).count(), 3, "{out}");
        let by_other = quote!(__instrument_guard.err(kinds::other(__instrument_e)));
        assert_eq!(out.matches(&by_other.to_string()).count(), 1, "{out}");
        let by_default = quote!(__instrument_guard.err(__instrument_e.__instrument_kind()));
        assert_eq!(out.matches(&by_default.to_string()).count(), 4, "{out}");
    }

    #[test]
    fn own_err_kind_on_a_method_needs_a_result() {
        let out = instrument(
            quote!(),
            quote!(impl S { #[instrument_performance(err_kind = k)] fn new() -> Self { S } }),
        )
        .to_string();
        assert!(
            out.contains(
                "`err_kind` needs a function returning `Result` (`new` returns `Self`, not a \
                 type named `Result`"
            ),
            "{out}"
        );
        let out = instrument(
            quote!(err_kind = k),
            quote!(
                fn len() -> usize {
                    0
                }
            ),
        )
        .to_string();
        assert!(
            out.contains("(`len` returns `usize`, not a type named `Result`"),
            "{out}"
        );
    }

    #[test]
    #[cfg(not(feature = "enabled"))]
    fn disabled_items_are_returned_unchanged_after_validation() {
        let item = quote!(
            #[inline]
            pub fn add(a: u32, b: u32) -> u32 {
                a + b
            }
        );
        let out = instrument(quote!(slow = "5ms", capture(a)), item.clone());
        assert_eq!(out.to_string(), item.to_string());

        let out = instrument(quote!(capture(z)), item).to_string();
        assert!(out.contains("`add` has no parameter named `z`"), "{out}");

        let out = expand(
            quote!(audit),
            quote!(
                impl S {
                    #[no_instrument]
                    fn a(&self) {}
                    #[instrument_performance(slow = "1ms")]
                    fn b(&self) {}
                }
            ),
        );
        let expected = quote!(
            impl S {
                #[no_instrument]
                fn a(&self) {}
                fn b(&self) {}
            }
        );
        assert_eq!(impl_of(&out), expected.to_string());
        assert!(out.starts_with("# [doc (hidden)] mod __instrument_no_instrument_"));

        let out = instrument(
            quote!(),
            quote!(impl S { #[instrument_performance(slow = "0s")] fn b(&self) {} }),
        )
        .to_string();
        assert!(out.contains("`slow` must be greater than zero"), "{out}");
    }

    #[test]
    fn no_instrument_rejects_arguments() {
        let item = quote!(
            fn f() {}
        );
        assert_eq!(
            no_instrument(quote!(), item.clone()).to_string(),
            item.to_string()
        );
        let out = no_instrument(quote!(x), item).to_string();
        assert!(
            out.contains("`#[no_instrument]` takes no arguments"),
            "{out}"
        );
    }
}
