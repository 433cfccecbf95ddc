//! `#[derive(ErrorKind)]` and its `#[error_kind(...)]` helper attribute.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt as _;
use syn::parse::ParseStream;
use syn::{Attribute, Data, DeriveInput, Error, Fields, LitStr, Path, Result, Token};

/// The helper attribute: `#[error_kind(crate = path)]` on the type, `#[error_kind(rename = "..")]`
/// on a variant or a struct.
const HELPER: &str = "error_kind";

mod kw {
    syn::custom_keyword!(rename);
}

/// The options of the `#[error_kind(...)]` attributes of one type or variant.
#[derive(Default)]
struct HelperArgs {
    krate: Option<Path>,
    rename: Option<LitStr>,
}

/// Where `#[error_kind(...)]` is written, which decides the options it may take.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Enum,
    Struct,
    Variant,
}

// Input:  #[error_kind(crate = path)]?
//         enum E<T> { A, #[error_kind(rename = "b")] B(T), C { x: u8 } }
// Output: impl<T> path::ErrorKind for E<T> {          // `::instrument` without `crate`
//             fn error_kind(&self) -> &'static str {
//                 match self { Self::A => "A", Self::B(..) => "b", Self::C { .. } => "C" }
//             }
//         }
//         A struct returns its type name, or its `rename`; a union is an error.
pub(crate) fn error_kind(input: &DeriveInput) -> Result<TokenStream> {
    let (type_args, body) = match &input.data {
        Data::Enum(data) => {
            let type_args = helper_args(&input.attrs, Place::Enum)?;
            let mut arms = Vec::new();
            for variant in &data.variants {
                no_helper_on_fields(&variant.fields)?;
                let ident = &variant.ident;
                let name = helper_args(&variant.attrs, Place::Variant)?
                    .rename
                    .map_or_else(|| ident.unraw().to_string(), |rename| rename.value());
                let pattern = match &variant.fields {
                    Fields::Named(_) => quote!(Self::#ident { .. }),
                    Fields::Unnamed(_) => quote!(Self::#ident(..)),
                    Fields::Unit => quote!(Self::#ident),
                };
                arms.push(quote!(#pattern => #name,));
            }
            let body = if arms.is_empty() {
                quote!(match *self {})
            } else {
                quote!(match self { #(#arms)* })
            };
            (type_args, body)
        }
        Data::Struct(data) => {
            let type_args = helper_args(&input.attrs, Place::Struct)?;
            no_helper_on_fields(&data.fields)?;
            let name = type_args
                .rename
                .as_ref()
                .map_or_else(|| input.ident.unraw().to_string(), LitStr::value);
            (type_args, quote!(#name))
        }
        Data::Union(data) => {
            return Err(Error::new_spanned(
                data.union_token,
                "`#[derive(ErrorKind)]` supports enums and structs, not unions: a union does not \
                 know which of its fields is set",
            ));
        }
    };
    let krate = type_args
        .krate
        .as_ref()
        .map_or_else(|| quote!(::instrument), ToTokens::to_token_stream);
    let ident = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::ErrorKind for #ident #type_generics #where_clause {
            fn error_kind(&self) -> &'static str {
                #body
            }
        }
    })
}

/// The options of every `#[error_kind(...)]` among `attrs`, checked against `place`.
fn helper_args(attrs: &[Attribute], place: Place) -> Result<HelperArgs> {
    let mut args = HelperArgs::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(HELPER)) {
        let list = attr.meta.require_list()?;
        list.parse_args_with(|input: ParseStream| {
            while !input.is_empty() {
                let lookahead = input.lookahead1();
                if lookahead.peek(Token![crate]) {
                    let kw: Token![crate] = input.parse()?;
                    if place == Place::Variant {
                        return Err(Error::new_spanned(
                            kw,
                            "`crate` goes in the `#[error_kind(...)]` of the type, not of a \
                             variant",
                        ));
                    }
                    if args.krate.is_some() {
                        return Err(Error::new_spanned(kw, "duplicate `crate` option"));
                    }
                    input.parse::<Token![=]>()?;
                    args.krate = Some(input.call(Path::parse_mod_style)?);
                } else if lookahead.peek(kw::rename) {
                    let kw: kw::rename = input.parse()?;
                    if place == Place::Enum {
                        return Err(Error::new_spanned(
                            kw,
                            "`rename` does not apply to an enum, whose kinds are the names of \
                             its variants: put `#[error_kind(rename = \"...\")]` on a variant",
                        ));
                    }
                    if args.rename.is_some() {
                        return Err(Error::new_spanned(kw, "duplicate `rename` option"));
                    }
                    input.parse::<Token![=]>()?;
                    let name: LitStr = input.parse()?;
                    if name.value().is_empty() {
                        return Err(Error::new_spanned(&name, "an error kind must not be empty"));
                    }
                    args.rename = Some(name);
                } else {
                    return Err(lookahead.error());
                }
                if input.is_empty() {
                    break;
                }
                input.parse::<Token![,]>()?;
            }
            Ok(())
        })?;
    }
    Ok(args)
}

/// Rejects `#[error_kind(...)]` on a field, where it would otherwise be silently ignored.
fn no_helper_on_fields(fields: &Fields) -> Result<()> {
    for field in fields {
        if let Some(attr) = field.attrs.iter().find(|attr| attr.path().is_ident(HELPER)) {
            return Err(Error::new_spanned(
                attr,
                "`#[error_kind(...)]` goes on the type or on a variant, not on a field",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derive(input: TokenStream) -> Result<String> {
        error_kind(&syn::parse2(input).unwrap()).map(|tokens| tokens.to_string())
    }

    #[test]
    fn enum_variants_of_every_shape() {
        let out = derive(quote!(
            enum E<T: Clone>
            where
                T: Send,
            {
                A,
                B(T, u8),
                C { x: u8 },
                r#D,
            }
        ))
        .unwrap();
        let expected = quote! {
            #[automatically_derived]
            impl<T: Clone> ::instrument::ErrorKind for E<T> where T: Send, {
                fn error_kind(&self) -> &'static str {
                    match self {
                        Self::A => "A",
                        Self::B(..) => "B",
                        Self::C { .. } => "C",
                        Self::r#D => "D",
                    }
                }
            }
        };
        assert_eq!(out, expected.to_string());
    }

    #[test]
    fn empty_enum_matches_on_the_value() {
        assert!(
            derive(quote!(
                enum Never {}
            ))
            .unwrap()
            .contains("match * self { }")
        );
    }

    #[test]
    fn struct_returns_its_name() {
        let out = derive(quote!(
            struct Timeout<'a>(&'a str);
        ))
        .unwrap();
        assert!(
            out.contains("impl < 'a > :: instrument :: ErrorKind for Timeout < 'a >"),
            "{out}"
        );
        assert!(out.contains("{ \"Timeout\" }"), "{out}");
    }

    #[test]
    fn rename_overrides_a_variant_kind() {
        let out = derive(quote!(
            enum E {
                #[error_kind(rename = "timeout")]
                Timeout,
                /// Doc comments and other attributes are not helpers.
                #[allow(dead_code)]
                #[error_kind(rename = "http.status")]
                Status(u16),
                #[error_kind()]
                Decode { offset: usize },
                #[error_kind(rename = "timeout")]
                r#ConnectTimeout,
            }
        ))
        .unwrap();
        let arms = quote! {
            match self {
                Self::Timeout => "timeout",
                Self::Status(..) => "http.status",
                Self::Decode { .. } => "Decode",
                Self::r#ConnectTimeout => "timeout",
            }
        };
        assert!(out.contains(&arms.to_string()), "{out}");
    }

    #[test]
    fn crate_path_names_the_trait() {
        let out = derive(quote!(
            #[error_kind(crate = ::my_sdk::instrument)]
            enum E {
                A,
            }
        ))
        .unwrap();
        assert!(
            out.contains("impl :: my_sdk :: instrument :: ErrorKind for E {"),
            "{out}"
        );
        assert_eq!(out.matches("ErrorKind").count(), 1, "{out}");

        let out = derive(quote!(
            #[error_kind(crate = sdk::instrument, rename = "timed_out")]
            #[error_kind()]
            struct Timeout<'a>(&'a str);
        ))
        .unwrap();
        assert!(
            out.contains("impl < 'a > sdk :: instrument :: ErrorKind for Timeout < 'a >"),
            "{out}"
        );
        assert!(out.contains("{ \"timed_out\" }"), "{out}");
    }

    #[test]
    fn helper_errors() {
        let error = |input: TokenStream| derive(input).unwrap_err().to_string();
        assert_eq!(
            error(quote!(
                #[error_kind(name = "x")]
                struct S;
            )),
            "expected `crate` or `rename`"
        );
        assert_eq!(
            error(quote!(
                #[error_kind]
                struct S;
            )),
            "expected attribute arguments in parentheses: `error_kind(...)`"
        );
        assert!(
            error(quote!(
                #[error_kind(rename = "x")]
                enum E {
                    A,
                }
            ))
            .starts_with("`rename` does not apply to an enum")
        );
        assert!(
            error(quote!(
                enum E {
                    #[error_kind(crate = x)]
                    A,
                }
            ))
            .starts_with("`crate` goes in the `#[error_kind(...)]` of the type")
        );
        assert_eq!(
            error(quote!(
                enum E {
                    #[error_kind(rename = "")]
                    A,
                }
            )),
            "an error kind must not be empty"
        );
        assert_eq!(
            error(quote!(
                enum E {
                    #[error_kind(rename = "a")]
                    #[error_kind(rename = "b")]
                    A,
                }
            )),
            "duplicate `rename` option"
        );
        assert_eq!(
            error(quote!(
                #[error_kind(crate = a, crate = b)]
                struct S;
            )),
            "duplicate `crate` option"
        );
        assert_eq!(
            error(quote!(
                enum E {
                    #[error_kind(rename = x)]
                    A,
                }
            )),
            "expected string literal"
        );
        assert!(
            error(quote!(
                enum E {
                    A {
                        #[error_kind(rename = "x")]
                        x: u8,
                    },
                }
            ))
            .starts_with("`#[error_kind(...)]` goes on the type or on a variant")
        );
        assert!(
            error(quote!(
                struct S(#[error_kind(rename = "x")] u8);
            ))
            .starts_with("`#[error_kind(...)]` goes on the type or on a variant")
        );
    }

    #[test]
    fn union_is_rejected() {
        let err = derive(quote!(union U { a: u8 })).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`#[derive(ErrorKind)]` supports enums and structs")
        );
    }
}
