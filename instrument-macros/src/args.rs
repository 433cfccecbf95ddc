//! Parsing of `#[instrument_performance(...)]` arguments.
//!
//! Everything that can be checked from the arguments alone is checked here: option syntax,
//! duplicate options, label names, the `slow` duration and the `sample` range. Checks that need
//! the annotated item (does a captured name exist?) live in `validate.rs`.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt as _;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Error, Ident, LitStr, Path, Result, Token, parenthesized};

/// Option keywords; `crate` is a Rust keyword and uses `Token![crate]`.
pub(crate) mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(labels);
    syn::custom_keyword!(slow);
    syn::custom_keyword!(sample);
    syn::custom_keyword!(capture);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(audit);
    syn::custom_keyword!(err_kind);
}

/// Label names the exporters set themselves; a user label of the same name would clash.
/// Twin of `RESERVED_LABELS` in `instrument/src/callsite.rs` (used by `counter!`/`gauge!`): a
/// proc-macro crate cannot export it, so both lists must change together.
pub(crate) const RESERVED_LABELS: &[&str] = &[
    "le",
    "quantile",
    "function",
    "module",
    "outcome",
    "error_kind",
];

/// The parsed arguments of one `#[instrument_performance(...)]` attribute.
///
/// Each option is `None` when not given. Options keep their keyword token so that later errors
/// (for example "`name` cannot be set on an `impl` block") can point at it.
#[derive(Clone, Default)]
pub(crate) struct Args {
    pub(crate) name: Option<NameArg>,
    pub(crate) labels: Option<LabelsArg>,
    pub(crate) slow: Option<SlowArg>,
    pub(crate) sample: Option<SampleArg>,
    pub(crate) capture: Option<CaptureArg>,
    pub(crate) skip: Option<SkipArg>,
    pub(crate) audit: Option<kw::audit>,
    pub(crate) err_kind: Option<ErrKindArg>,
    pub(crate) krate: Option<CrateArg>,
}

/// `name = "..."`.
#[derive(Clone)]
pub(crate) struct NameArg {
    pub(crate) kw: kw::name,
    pub(crate) value: LitStr,
}

/// `labels(key = "value", ...)`.
#[derive(Clone)]
pub(crate) struct LabelsArg {
    pub(crate) labels: Vec<Label>,
}

/// One `key = "value"` pair of `labels(...)`; the key is an identifier or a string literal.
#[derive(Clone)]
pub(crate) struct Label {
    pub(crate) key: String,
    pub(crate) value: LitStr,
}

/// `slow = "5ms"`, already converted to nanoseconds.
#[derive(Clone)]
pub(crate) struct SlowArg {
    pub(crate) nanos: u64,
}

/// `sample = 0.01`.
#[derive(Clone)]
pub(crate) struct SampleArg {
    pub(crate) fraction: f64,
}

/// `capture(a, %b, ...)`.
#[derive(Clone)]
pub(crate) struct CaptureArg {
    pub(crate) items: Vec<CaptureItem>,
}

/// One captured parameter: Debug-formatted, or Display-formatted with a `%` prefix.
#[derive(Clone)]
pub(crate) struct CaptureItem {
    pub(crate) display: bool,
    pub(crate) ident: Ident,
}

/// `skip(a, ...)`.
#[derive(Clone)]
pub(crate) struct SkipArg {
    pub(crate) kw: kw::skip,
    pub(crate) idents: Vec<Ident>,
    /// Set when the list comes from an `impl` block's attribute: names a method lacks are ignored.
    pub(crate) from_impl: bool,
}

/// `err_kind = path`.
#[derive(Clone)]
pub(crate) struct ErrKindArg {
    pub(crate) kw: kw::err_kind,
    pub(crate) path: Path,
    /// Set when it comes from an `impl` block's attribute: it applies only to the methods that
    /// return a `Result`.
    pub(crate) from_impl: bool,
}

/// `crate = path`.
#[derive(Clone)]
pub(crate) struct CrateArg {
    pub(crate) path: Path,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> Result<Self> {
        let mut args = Args::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::name) {
                let kw: kw::name = input.parse()?;
                ensure_unset(args.name.is_some(), &kw, "name")?;
                input.parse::<Token![=]>()?;
                let value: LitStr = input.parse()?;
                if value.value().is_empty() {
                    return Err(Error::new_spanned(&value, "`name` must not be empty"));
                }
                args.name = Some(NameArg { kw, value });
            } else if lookahead.peek(kw::labels) {
                let kw: kw::labels = input.parse()?;
                ensure_unset(args.labels.is_some(), &kw, "labels")?;
                args.labels = Some(parse_labels(input)?);
            } else if lookahead.peek(kw::slow) {
                let kw: kw::slow = input.parse()?;
                ensure_unset(args.slow.is_some(), &kw, "slow")?;
                input.parse::<Token![=]>()?;
                let text: LitStr = input.parse()?;
                let nanos =
                    parse_slow(&text.value()).map_err(|msg| Error::new_spanned(&text, msg))?;
                args.slow = Some(SlowArg { nanos });
            } else if lookahead.peek(kw::sample) {
                let kw: kw::sample = input.parse()?;
                ensure_unset(args.sample.is_some(), &kw, "sample")?;
                input.parse::<Token![=]>()?;
                args.sample = Some(parse_sample(input)?);
            } else if lookahead.peek(kw::capture) {
                let kw: kw::capture = input.parse()?;
                ensure_unset(args.capture.is_some(), &kw, "capture")?;
                args.capture = Some(parse_capture(input)?);
            } else if lookahead.peek(kw::skip) {
                let kw: kw::skip = input.parse()?;
                ensure_unset(args.skip.is_some(), &kw, "skip")?;
                args.skip = Some(parse_skip(kw, input)?);
            } else if lookahead.peek(kw::audit) {
                let kw: kw::audit = input.parse()?;
                ensure_unset(args.audit.is_some(), &kw, "audit")?;
                args.audit = Some(kw);
            } else if lookahead.peek(kw::err_kind) {
                let kw: kw::err_kind = input.parse()?;
                ensure_unset(args.err_kind.is_some(), &kw, "err_kind")?;
                input.parse::<Token![=]>()?;
                let path = input.call(Path::parse_mod_style)?;
                args.err_kind = Some(ErrKindArg {
                    kw,
                    path,
                    from_impl: false,
                });
            } else if lookahead.peek(Token![crate]) {
                let kw: Token![crate] = input.parse()?;
                ensure_unset(args.krate.is_some(), &kw, "crate")?;
                input.parse::<Token![=]>()?;
                let path = input.call(Path::parse_mod_style)?;
                args.krate = Some(CrateArg { path });
            } else {
                return Err(lookahead.error());
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        if let (Some(_), Some(skip)) = (&args.capture, &args.skip) {
            return Err(Error::new_spanned(
                skip.kw,
                "`capture(...)` and `skip(...)` cannot be used together: `capture` lists the \
                 parameters to record, `skip` records all parameters except the listed ones",
            ));
        }
        Ok(args)
    }
}

/// Fails with "duplicate `option` option" at `kw` when the option was already given.
fn ensure_unset(already_set: bool, kw: &impl ToTokens, option: &str) -> Result<()> {
    if already_set {
        Err(Error::new_spanned(
            kw,
            format!("duplicate `{option}` option"),
        ))
    } else {
        Ok(())
    }
}

fn parse_labels(input: ParseStream) -> Result<LabelsArg> {
    let content;
    parenthesized!(content in input);
    let mut labels = Vec::new();
    let mut seen = HashSet::new();
    while !content.is_empty() {
        let (key, key_tokens) = if content.peek(LitStr) {
            let lit: LitStr = content.parse()?;
            (lit.value(), lit.to_token_stream())
        } else {
            let ident = content.call(Ident::parse_any)?;
            (ident.unraw().to_string(), ident.to_token_stream())
        };
        validate_label_name(&key).map_err(|msg| Error::new_spanned(&key_tokens, msg))?;
        if !seen.insert(key.clone()) {
            return Err(Error::new_spanned(
                &key_tokens,
                format!("duplicate label `{key}`"),
            ));
        }
        content.parse::<Token![=]>()?;
        let value: LitStr = content.parse()?;
        labels.push(Label { key, value });
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    Ok(LabelsArg { labels })
}

/// Checks a label name against the Prometheus rule `[a-zA-Z_][a-zA-Z0-9_]*`, the `__` prefix
/// Prometheus keeps for itself, and the names the exporters set themselves.
pub(crate) fn validate_label_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "invalid label name `{name}`: label names must match `[a-zA-Z_][a-zA-Z0-9_]*`"
        ));
    }
    if name.starts_with("__") {
        return Err(format!(
            "invalid label name `{name}`: names starting with `__` are reserved by Prometheus"
        ));
    }
    if RESERVED_LABELS.contains(&name) {
        return Err(format!(
            "label name `{name}` is reserved: the exporters set `le`, `quantile`, `function`, \
             `module`, `outcome` and `error_kind` themselves"
        ));
    }
    Ok(())
}

/// Parses a `slow` threshold such as `"5ms"` or `"1s 500ms"` into nanoseconds.
pub(crate) fn parse_slow(text: &str) -> std::result::Result<u64, String> {
    let duration = humantime::parse_duration(text).map_err(|err| {
        format!("invalid `slow` duration `{text}`: {err}; write it like \"5ms\" or \"1s 500ms\"")
    })?;
    if duration.is_zero() {
        return Err("`slow` must be greater than zero".to_owned());
    }
    u64::try_from(duration.as_nanos())
        .map_err(|_| format!("`slow` duration `{text}` is too large: at most about 584 years"))
}

fn parse_sample(input: ParseStream) -> Result<SampleArg> {
    let minus: Option<Token![-]> = input.parse()?;
    let lookahead = input.lookahead1();
    let (value, lit_tokens) = if lookahead.peek(syn::LitFloat) {
        let lit: syn::LitFloat = input.parse()?;
        (lit.base10_parse::<f64>()?, lit.to_token_stream())
    } else if lookahead.peek(syn::LitInt) {
        let lit: syn::LitInt = input.parse()?;
        (lit.base10_parse::<f64>()?, lit.to_token_stream())
    } else {
        return Err(lookahead.error());
    };
    let fraction = if minus.is_some() { -value } else { value };
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(Error::new_spanned(
            quote!(#minus #lit_tokens),
            format!(
                "`sample` must be a fraction of calls greater than 0 and at most 1, got {fraction}"
            ),
        ));
    }
    Ok(SampleArg { fraction })
}

fn parse_capture(input: ParseStream) -> Result<CaptureArg> {
    let content;
    let paren = parenthesized!(content in input);
    let parsed = Punctuated::<(Option<Token![%]>, Ident), Token![,]>::parse_terminated_with(
        &content,
        |input| Ok((input.parse()?, input.call(Ident::parse_any)?)),
    )?;
    if parsed.is_empty() {
        return Err(Error::new(
            paren.span.join(),
            "`capture(...)` needs at least one parameter name",
        ));
    }
    let mut items: Vec<CaptureItem> = Vec::new();
    for (percent, ident) in parsed {
        if ident == "self" {
            return Err(Error::new_spanned(
                &ident,
                "`self` cannot be captured: `capture(...)` takes the names of the function's \
                 other parameters",
            ));
        }
        if items.iter().any(|item| item.ident == ident) {
            return Err(Error::new_spanned(
                &ident,
                format!("`{ident}` is captured twice"),
            ));
        }
        items.push(CaptureItem {
            display: percent.is_some(),
            ident,
        });
    }
    Ok(CaptureArg { items })
}

fn parse_skip(kw: kw::skip, input: ParseStream) -> Result<SkipArg> {
    let content;
    parenthesized!(content in input);
    let parsed = Punctuated::<Ident, Token![,]>::parse_terminated_with(&content, Ident::parse_any)?;
    let mut idents: Vec<Ident> = Vec::new();
    for ident in parsed {
        if idents.contains(&ident) {
            return Err(Error::new_spanned(
                &ident,
                format!("`{ident}` is skipped twice"),
            ));
        }
        idents.push(ident);
    }
    Ok(SkipArg {
        kw,
        idents,
        from_impl: false,
    })
}

impl Args {
    /// The path of the runtime crate: `crate = path`, else `::instrument`.
    pub(crate) fn crate_path(&self) -> TokenStream {
        self.krate.as_ref().map_or_else(
            || quote!(::instrument),
            |krate| krate.path.to_token_stream(),
        )
    }

    /// Combines a method's own arguments (`self`) with its `impl` block's (`base`).
    ///
    /// Options given on the method win. `capture` and `skip` are one choice: a method that sets
    /// either ignores both of the `impl` block's. An inherited `skip` or `err_kind` is marked
    /// `from_impl`.
    pub(crate) fn merged_over(self, base: &Args) -> Args {
        let own_fields = self.capture.is_some() || self.skip.is_some();
        let (capture, skip) = if own_fields {
            (self.capture, self.skip)
        } else {
            let skip = base.skip.clone().map(|skip| SkipArg {
                from_impl: true,
                ..skip
            });
            (base.capture.clone(), skip)
        };
        Args {
            name: self.name.or_else(|| base.name.clone()),
            labels: self.labels.or_else(|| base.labels.clone()),
            slow: self.slow.or_else(|| base.slow.clone()),
            sample: self.sample.or_else(|| base.sample.clone()),
            capture,
            skip,
            audit: self.audit.or(base.audit),
            err_kind: self.err_kind.or_else(|| {
                base.err_kind.clone().map(|err_kind| ErrKindArg {
                    from_impl: true,
                    ..err_kind
                })
            }),
            krate: self.krate.or_else(|| base.krate.clone()),
        }
    }
}

/// The span of a whole `name = ...` option, for errors about where it may appear.
pub(crate) fn name_option_span(name: &NameArg) -> TokenStream {
    let (kw, value) = (&name.kw, &name.value);
    quote!(#kw = #value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(tokens: TokenStream) -> Result<Args> {
        syn::parse2(tokens)
    }

    fn error(tokens: TokenStream) -> String {
        match parse(tokens) {
            Ok(_) => panic!("expected a parse error"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn empty_arguments_set_nothing() {
        let args = parse(quote!()).unwrap();
        assert!(args.name.is_none() && args.labels.is_none() && args.slow.is_none());
        assert!(args.sample.is_none() && args.capture.is_none() && args.skip.is_none());
        assert!(args.audit.is_none() && args.err_kind.is_none() && args.krate.is_none());
        assert_eq!(
            args.crate_path().to_string(),
            quote!(::instrument).to_string()
        );
    }

    #[test]
    fn every_option_parses() {
        let args = parse(quote!(
            name = "db.query",
            labels(region = "eu", "tier" = "gold", r#type = "x"),
            slow = "1s 500ms",
            sample = 0.25,
            capture(a, %b),
            audit,
            err_kind = crate::kinds::classify,
            crate = ::my_reexport::instrument,
        ))
        .unwrap();
        assert_eq!(args.name.unwrap().value.value(), "db.query");
        let labels = args.labels.unwrap().labels;
        let keys: Vec<_> = labels.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(keys, ["region", "tier", "type"]);
        assert_eq!(labels[0].value.value(), "eu");
        assert_eq!(args.slow.unwrap().nanos, 1_500_000_000);
        assert!((args.sample.unwrap().fraction - 0.25).abs() < f64::EPSILON);
        let capture = args.capture.unwrap();
        assert_eq!(capture.items.len(), 2);
        assert!(!capture.items[0].display && capture.items[0].ident == "a");
        assert!(capture.items[1].display && capture.items[1].ident == "b");
        assert!(args.audit.is_some());
        let err_kind = args.err_kind.unwrap().path;
        assert_eq!(
            err_kind.to_token_stream().to_string(),
            "crate :: kinds :: classify"
        );
        assert_eq!(
            args.krate.unwrap().path.to_token_stream().to_string(),
            ":: my_reexport :: instrument"
        );
    }

    #[test]
    fn integer_sample_is_accepted() {
        let args = parse(quote!(sample = 1)).unwrap();
        assert!((args.sample.unwrap().fraction - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn unknown_option_lists_the_valid_ones() {
        let msg = error(quote!(nme = "x"));
        assert_eq!(
            msg,
            "expected one of: `name`, `labels`, `slow`, `sample`, `capture`, `skip`, `audit`, \
             `err_kind`, `crate`"
        );
    }

    #[test]
    fn every_duplicate_names_its_own_option() {
        let cases = [
            (quote!(name = "a", name = "b"), "name"),
            (quote!(labels(a = "1"), labels(b = "2")), "labels"),
            (quote!(slow = "1ms", slow = "2ms"), "slow"),
            (quote!(sample = 0.5, sample = 0.5), "sample"),
            (quote!(capture(a), capture(b)), "capture"),
            (quote!(skip(a), skip(b)), "skip"),
            (quote!(audit, audit), "audit"),
            (quote!(err_kind = a, err_kind = b), "err_kind"),
            (quote!(crate = a, crate = b), "crate"),
        ];
        for (tokens, option) in cases {
            assert_eq!(error(tokens), format!("duplicate `{option}` option"));
        }
    }

    #[test]
    fn label_names_follow_prometheus_rules() {
        for ok in ["a", "_a", "region", "A9_b", "http_method"] {
            assert_eq!(validate_label_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "9a", "a-b", "a b", "café", "a.b"] {
            assert!(
                validate_label_name(bad).unwrap_err().contains("must match"),
                "{bad}"
            );
        }
        assert!(validate_label_name("__name").unwrap_err().contains("`__`"));
        assert!(validate_label_name("__").unwrap_err().contains("`__`"));
        for reserved in RESERVED_LABELS {
            assert!(
                validate_label_name(reserved)
                    .unwrap_err()
                    .contains("is reserved")
            );
        }
    }

    #[test]
    fn label_errors() {
        assert!(error(quote!(labels("a-b" = "x"))).contains("invalid label name `a-b`"));
        assert!(error(quote!(labels(outcome = "x"))).contains("`outcome` is reserved"));
        assert!(error(quote!(labels(__x = "x"))).contains("`__`"));
        assert_eq!(
            error(quote!(labels(a = "x", a = "y"))),
            "duplicate label `a`"
        );
        assert_eq!(error(quote!(labels(a = 1))), "expected string literal");
    }

    #[test]
    fn slow_is_parsed_at_compile_time() {
        assert_eq!(parse_slow("5ms"), Ok(5_000_000));
        assert_eq!(parse_slow("2us"), Ok(2_000));
        assert!(
            parse_slow("five")
                .unwrap_err()
                .starts_with("invalid `slow` duration `five`")
        );
        assert_eq!(
            parse_slow("0s"),
            Err("`slow` must be greater than zero".to_owned())
        );
        assert!(parse_slow("1000000y").unwrap_err().contains("too large"));
    }

    #[test]
    fn sample_must_be_a_fraction() {
        for bad in [
            quote!(sample = 0.0),
            quote!(sample = 1.5),
            quote!(sample = -0.5),
            quote!(sample = 2),
        ] {
            assert!(error(bad).starts_with("`sample` must be a fraction"));
        }
        assert_eq!(
            error(quote!(sample = "0.5")),
            "expected floating point literal or integer literal"
        );
    }

    #[test]
    fn capture_and_skip_errors() {
        assert!(error(quote!(capture(self))).starts_with("`self` cannot be captured"));
        assert_eq!(error(quote!(capture(a, %a))), "`a` is captured twice");
        assert_eq!(error(quote!(skip(a, a))), "`a` is skipped twice");
        assert!(error(quote!(capture())).starts_with("`capture(...)` needs"));
        assert!(error(quote!(capture(a), skip(b))).starts_with("`capture(...)` and `skip(...)`"));
        assert!(parse(quote!(skip(self, password))).is_ok());
    }

    #[test]
    fn options_are_separated_by_commas() {
        assert_eq!(error(quote!(audit name = "x")), "expected `,`");
        assert!(error(quote!(name)).contains("expected `=`"));
    }

    #[test]
    fn method_options_win_over_impl_options() {
        let base = parse(quote!(slow = "1ms", sample = 0.5, skip(secret), audit)).unwrap();
        let own = parse(quote!(slow = "2ms", capture(a))).unwrap();
        let merged = own.merged_over(&base);
        assert_eq!(merged.slow.unwrap().nanos, 2_000_000);
        assert!((merged.sample.unwrap().fraction - 0.5).abs() < f64::EPSILON);
        assert!(merged.audit.is_some());
        assert!(merged.capture.is_some() && merged.skip.is_none());

        let inherited = Args::default().merged_over(&base);
        assert!(inherited.skip.unwrap().from_impl);
    }

    #[test]
    fn err_kind_is_marked_when_inherited() {
        let base = parse(quote!(err_kind = block::kind)).unwrap();
        assert!(!base.err_kind.as_ref().unwrap().from_impl);
        let inherited = Args::default().merged_over(&base).err_kind.unwrap();
        assert!(inherited.from_impl);
        assert_eq!(
            inherited.path.to_token_stream().to_string(),
            "block :: kind"
        );

        let own = parse(quote!(err_kind = own::kind)).unwrap();
        let merged = own.merged_over(&base).err_kind.unwrap();
        assert!(!merged.from_impl);
        assert_eq!(merged.path.to_token_stream().to_string(), "own :: kind");
    }
}
