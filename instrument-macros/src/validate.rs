//! Checks of parsed arguments against the item they are applied to.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt as _;
use syn::visit::Visit;
use syn::{
    Attribute, Error, FnArg, GenericArgument, Ident, Item, Pat, PatIdent, PathArguments, Result,
    ReturnType, Signature, Type, TypeParamBound,
};

use crate::args::{Args, ErrKindArg};

/// The attribute this crate expands, matched by the last segment of an attribute's path.
pub(crate) const ATTRIBUTE: &str = "instrument_performance";
/// The marker that exempts a method of an instrumented `impl` block.
pub(crate) const MARKER: &str = "no_instrument";

/// A parameter whose value is attached to per-call events.
pub(crate) struct Field {
    pub(crate) ident: Ident,
    /// `%name`: formatted with `Display` instead of `Debug`.
    pub(crate) display: bool,
}

/// Whether `attr` is `#[name]` or `#[some::path::name]`.
pub(crate) fn is_attribute(attr: &Attribute, name: &str) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == name)
}

/// Rejects the other attributes of an item that conflict with the one being expanded: a second
/// `#[instrument_performance]`, or `#[no_instrument]`.
pub(crate) fn other_attributes(attrs: &[Attribute]) -> Result<()> {
    for attr in attrs {
        if is_attribute(attr, ATTRIBUTE) {
            return Err(Error::new_spanned(
                attr,
                "`#[instrument_performance]` is applied more than once to this item",
            ));
        }
        if is_attribute(attr, MARKER) {
            return Err(Error::new_spanned(
                attr,
                "`#[no_instrument]` contradicts `#[instrument_performance]` on the same item",
            ));
        }
    }
    Ok(())
}

/// Checks `args` against the function `sig` and returns the parameters to capture.
pub(crate) fn function(args: &Args, sig: &Signature) -> Result<Vec<Field>> {
    if let Some(const_token) = &sig.constness {
        return Err(Error::new_spanned(
            const_token,
            "`#[instrument_performance]` cannot be applied to a `const fn`: it reads the clock \
             and records each call at run time",
        ));
    }
    if let Some(err_kind) = &args.err_kind
        && !returns_result(&sig.output)
    {
        return Err(err_kind_without_result(err_kind, sig));
    }
    let params = named_parameters(sig);
    if let Some(capture) = &args.capture {
        let mut fields = Vec::new();
        for item in &capture.items {
            if !params.contains(&item.ident) {
                return Err(unknown_parameter(sig, &item.ident, "captured"));
            }
            fields.push(Field {
                ident: item.ident.clone(),
                display: item.display,
            });
        }
        return Ok(fields);
    }
    if let Some(skip) = &args.skip {
        if !skip.from_impl {
            for ident in &skip.idents {
                if ident != "self" && !params.contains(ident) {
                    return Err(unknown_parameter(sig, ident, "skipped"));
                }
            }
        }
        return Ok(params
            .into_iter()
            .filter(|param| !skip.idents.contains(param))
            .map(|ident| Field {
                ident,
                display: false,
            })
            .collect());
    }
    Ok(Vec::new())
}

fn unknown_parameter(sig: &Signature, ident: &Ident, verb: &str) -> Error {
    let fn_name = &sig.ident;
    let mut bindings = Bindings(Vec::new());
    for arg in &sig.inputs {
        if let FnArg::Typed(typed) = arg
            && !matches!(*typed.pat, Pat::Ident(_))
        {
            bindings.visit_pat(&typed.pat);
        }
    }
    if bindings.0.contains(ident) {
        Error::new_spanned(
            ident,
            format!(
                "`{ident}` cannot be {verb}: it is bound inside a destructuring pattern of \
                 `{fn_name}`, and only parameters bound to a plain name can be"
            ),
        )
    } else {
        Error::new_spanned(
            ident,
            format!("`{fn_name}` has no parameter named `{ident}`"),
        )
    }
}

/// Parameters bound to a plain name (`x: T`, `mut x: T`), in order; `self` is not one of them.
fn named_parameters(sig: &Signature) -> Vec<Ident> {
    sig.inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) => Some(pat.ident.clone()),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// Every name bound by a pattern.
struct Bindings(Vec<Ident>);

impl<'ast> Visit<'ast> for Bindings {
    fn visit_pat_ident(&mut self, pat: &'ast PatIdent) {
        self.0.push(pat.ident.clone());
        syn::visit::visit_pat_ident(self, pat);
    }
}

/// Whether the declared return type is syntactically a `Result`: a path whose last segment is
/// `Result`, such as `Result<T, E>`, `io::Result<T>`, `fmt::Result` or `anyhow::Result<T>`.
///
/// Only the name is seen, not what it resolves to: an alias of `Result` under another name
/// (`type Fallible<T> = Result<T, E>`) is not recognised, and a type named `Result` that is not
/// one is.
/// A boxed future's output, `Pin<Box<dyn Future<Output = T> + ..>>` (what `#[async_trait]`
/// makes of an `async fn`), is looked through.
pub(crate) fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Default => false,
        ReturnType::Type(_, ty) => is_result(ty),
    }
}

fn is_result(ty: &Type) -> bool {
    if let Some(output) = boxed_future_output(ty) {
        return is_result(output);
    }
    match strip_parens(ty) {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Result"),
        _ => false,
    }
}

/// `T` of `Pin<Box<dyn Future<Output = T> + ..>>`, spelled with any paths.
pub(crate) fn boxed_future_output(ty: &Type) -> Option<&Type> {
    let boxed = only_type_argument(ty, "Pin")?;
    let Type::TraitObject(object) = strip_parens(only_type_argument(boxed, "Box")?) else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let segment = bound.path.segments.last()?;
        let PathArguments::AngleBracketed(args) = &segment.arguments else {
            return None;
        };
        if segment.ident != "Future" {
            return None;
        }
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// `T` of `Name<T>` (any path ending in `Name`).
fn only_type_argument<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = strip_parens(ty) else {
        return None;
    };
    let segment = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    match (args.args.len(), args.args.first()?) {
        (1, GenericArgument::Type(inner)) if segment.ident == name => Some(inner),
        _ => None,
    }
}

/// The error for `err_kind` on a function whose return type is not a `Result`: at the return
/// type, or at the option when there is none.
fn err_kind_without_result(err_kind: &ErrKindArg, sig: &Signature) -> Error {
    let fn_name = sig.ident.unraw();
    let ty = match &sig.output {
        ReturnType::Default => {
            return Error::new_spanned(
                err_kind.kw,
                format!(
                    "`err_kind` needs a function returning `Result` (`{fn_name}` returns `()`)"
                ),
            );
        }
        ReturnType::Type(_, ty) => ty,
    };
    let cause = match strip_parens(ty) {
        Type::Never(_) => format!("`{fn_name}` never returns"),
        Type::Tuple(tuple) if tuple.elems.is_empty() => format!("`{fn_name}` returns `()`"),
        Type::Path(_) => format!(
            "`{fn_name}` returns `{}`, not a type named `Result` such as `Result<T, E>` or \
             `io::Result<T>`",
            type_text(ty)
        ),
        _ => format!("`{fn_name}` returns `{}`, not a `Result`", type_text(ty)),
    };
    Error::new_spanned(
        ty,
        format!("`err_kind` needs a function returning `Result` ({cause})"),
    )
}

/// A type as written, without the spaces token printing puts around `<`, `>`, `::` and `&`.
fn type_text(ty: &Type) -> String {
    let mut text = ty.to_token_stream().to_string();
    for (from, to) in [
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ::", "::"),
        (":: ", "::"),
    ] {
        text = text.replace(from, to);
    }
    text.replace("& ", "&").replace(" ,", ",")
}

/// `ty` without redundant parentheses or invisible groups.
pub(crate) fn strip_parens(ty: &Type) -> &Type {
    match ty {
        Type::Paren(paren) => strip_parens(&paren.elem),
        Type::Group(group) => strip_parens(&group.elem),
        other => other,
    }
}

/// The error for an item that is neither a function with a body nor an `impl` block.
pub(crate) fn unsupported_item(item: &Item) -> Error {
    if let Item::Verbatim(tokens) = item
        && let Ok(method) = syn::parse2::<syn::TraitItemFn>(tokens.clone())
    {
        return Error::new_spanned(
            &method.sig,
            "`#[instrument_performance]` needs a function body: apply it to the \
             implementations of this method, or give it a default body",
        );
    }
    Error::new_spanned(
        item_head(item),
        "`#[instrument_performance]` can only be applied to functions and `impl` blocks",
    )
}

/// The keyword and name of an item, to underline in errors instead of the whole item.
fn item_head(item: &Item) -> TokenStream {
    match item {
        Item::Struct(item) => {
            let (kw, ident) = (&item.struct_token, &item.ident);
            quote!(#kw #ident)
        }
        Item::Enum(item) => {
            let (kw, ident) = (&item.enum_token, &item.ident);
            quote!(#kw #ident)
        }
        Item::Union(item) => {
            let (kw, ident) = (&item.union_token, &item.ident);
            quote!(#kw #ident)
        }
        Item::Trait(item) => {
            let (kw, ident) = (&item.trait_token, &item.ident);
            quote!(#kw #ident)
        }
        Item::Mod(item) => {
            let (kw, ident) = (&item.mod_token, &item.ident);
            quote!(#kw #ident)
        }
        Item::Static(item) => {
            let (kw, ident) = (&item.static_token, &item.ident);
            quote!(#kw #ident)
        }
        Item::Const(item) => {
            let (kw, ident) = (&item.const_token, &item.ident);
            quote!(#kw #ident)
        }
        Item::Type(item) => {
            let (kw, ident) = (&item.type_token, &item.ident);
            quote!(#kw #ident)
        }
        Item::Use(item) => item.use_token.to_token_stream(),
        Item::ExternCrate(item) => {
            let (kw, ident) = (&item.extern_token, &item.ident);
            quote!(#kw #ident)
        }
        Item::ForeignMod(item) => item.abi.to_token_stream(),
        Item::Macro(item) => item.mac.path.to_token_stream(),
        other => other.to_token_stream(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn fields(args: TokenStream, sig: TokenStream) -> Result<Vec<String>> {
        let args: Args = syn::parse2(args).unwrap();
        let sig: Signature = syn::parse2(sig).unwrap();
        function(&args, &sig).map(|fields| {
            fields
                .into_iter()
                .map(|f| format!("{}{}", if f.display { "%" } else { "" }, f.ident))
                .collect()
        })
    }

    #[test]
    fn capture_resolves_named_parameters() {
        let got = fields(
            quote!(capture(b, %a)),
            quote!(fn f(&self, a: u8, mut b: String)),
        )
        .unwrap();
        assert_eq!(got, ["b", "%a"]);
    }

    #[test]
    fn skip_captures_every_other_named_parameter() {
        let got = fields(
            quote!(skip(self, secret)),
            quote!(fn f(&self, a: u8, secret: &str, (x, y): (u8, u8), _: u8, c: u8)),
        )
        .unwrap();
        assert_eq!(got, ["a", "c"]);
    }

    #[test]
    fn unknown_and_destructured_names_are_rejected() {
        let err = fields(quote!(capture(z)), quote!(fn f(a: u8))).unwrap_err();
        assert_eq!(err.to_string(), "`f` has no parameter named `z`");
        let err = fields(quote!(skip(z)), quote!(fn f(a: u8))).unwrap_err();
        assert_eq!(err.to_string(), "`f` has no parameter named `z`");
        let err = fields(quote!(capture(x)), quote!(fn f((x, y): (u8, u8)))).unwrap_err();
        assert!(err.to_string().contains("destructuring pattern"));
    }

    #[test]
    fn impl_level_skip_ignores_missing_names() {
        let base: Args = syn::parse2(quote!(skip(secret))).unwrap();
        let args = Args::default().merged_over(&base);
        let sig: Signature = syn::parse2(quote!(fn f(a: u8))).unwrap();
        let got: Vec<_> = function(&args, &sig)
            .unwrap()
            .into_iter()
            .map(|f| f.ident)
            .collect();
        assert_eq!(got, ["a"]);
    }

    #[test]
    fn const_fn_is_rejected() {
        let err = fields(quote!(), quote!(const fn f())).unwrap_err();
        assert!(err.to_string().contains("`const fn`"));
    }

    #[test]
    fn err_kind_needs_a_result() {
        for sig in [
            quote!(fn f() -> Result<u8, E>),
            quote!(fn f() -> io::Result<()>),
            quote!(fn f() -> ::core::result::Result<u8, E>),
            quote!(fn f() -> anyhow::Result<u8>),
            quote!(fn f() -> fmt::Result),
            quote!(async fn f(&self) -> Result<&str, E>),
        ] {
            assert!(fields(quote!(err_kind = k), sig.clone()).is_ok(), "{sig}");
        }
        let cases = [
            (quote!(fn f()), "`f` returns `()`"),
            (quote!(fn f() -> ()), "`f` returns `()`"),
            (quote!(fn f() -> !), "`f` never returns"),
            (
                quote!(fn r#f() -> Self),
                "`f` returns `Self`, not a type named `Result` such as `Result<T, E>` or \
                 `io::Result<T>`)",
            ),
            (
                quote!(fn f() -> my::Fallible<Vec<u8>>),
                "`f` returns `my::Fallible<Vec<u8>>`, not a type named `Result`",
            ),
            (
                quote!(fn f() -> (u8,)),
                "`f` returns `(u8,)`, not a `Result`",
            ),
            (
                quote!(fn f<'a>() -> &'a Result<u8, E>),
                "`f` returns `&'a Result<u8, E>`, not a `Result`",
            ),
            (
                quote!(fn f() -> impl Future<Output = Result<u8, E>>),
                "`f` returns `impl Future<Output = Result<u8, E>>`, not a `Result`",
            ),
        ];
        for (sig, cause) in cases {
            let err = fields(quote!(err_kind = k), sig).unwrap_err().to_string();
            let expected = format!("`err_kind` needs a function returning `Result` ({cause}");
            assert!(err.starts_with(&expected), "{err}");
        }
    }

    #[test]
    fn result_return_types() {
        for (sig, result) in [
            (quote!(fn f() -> Result<u8, E>), true),
            (quote!(fn f() -> (std::io::Result<u8>)), true),
            (quote!(fn f() -> <T as Tr>::Result), true),
            (quote!(fn f()), false),
            (quote!(fn f() -> ()), false),
            (quote!(fn f() -> Results<u8>), false),
            (quote!(fn f() -> Result::Ok), false),
            (quote!(fn f() -> Option<Result<u8, E>>), false),
            (quote!(fn f() -> Box<Result<u8, E>>), false),
        ] {
            let sig: Signature = syn::parse2(sig).unwrap();
            assert_eq!(
                returns_result(&sig.output),
                result,
                "{}",
                sig.to_token_stream()
            );
        }
    }

    #[test]
    fn unsupported_items_name_the_cause() {
        let item: Item = syn::parse2(quote!(
            struct S;
        ))
        .unwrap();
        let err = unsupported_item(&item);
        assert!(
            err.to_string()
                .contains("only be applied to functions and `impl` blocks")
        );
        let item: Item = syn::parse2(quote!(
            fn f(&self) -> u8;
        ))
        .unwrap();
        assert!(
            unsupported_item(&item)
                .to_string()
                .contains("needs a function body")
        );
    }
}
