//! `#[derive(ErrorKind)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt as _;
use syn::{Data, DeriveInput, Error, Fields, Result};

// Input:  enum E<T> { A, B(T), C { x: u8 } }
// Output: impl<T> ::instrument::ErrorKind for E<T> {
//             fn error_kind(&self) -> &'static str {
//                 match self { Self::A => "A", Self::B(..) => "B", Self::C { .. } => "C" }
//             }
//         }
//         A struct returns its type name; a union is an error.
pub(crate) fn error_kind(input: &DeriveInput) -> Result<TokenStream> {
    let body = match &input.data {
        Data::Enum(data) if data.variants.is_empty() => quote!(match *self {}),
        Data::Enum(data) => {
            let arms = data.variants.iter().map(|variant| {
                let ident = &variant.ident;
                let name = ident.unraw().to_string();
                let pattern = match &variant.fields {
                    Fields::Named(_) => quote!(Self::#ident { .. }),
                    Fields::Unnamed(_) => quote!(Self::#ident(..)),
                    Fields::Unit => quote!(Self::#ident),
                };
                quote!(#pattern => #name,)
            });
            quote!(match self { #(#arms)* })
        }
        Data::Struct(_) => {
            let name = input.ident.unraw().to_string();
            quote!(#name)
        }
        Data::Union(data) => {
            return Err(Error::new_spanned(
                data.union_token,
                "`#[derive(ErrorKind)]` supports enums and structs, not unions: a union does not \
                 know which of its fields is set",
            ));
        }
    };
    let ident = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::instrument::ErrorKind for #ident #type_generics #where_clause {
            fn error_kind(&self) -> &'static str {
                #body
            }
        }
    })
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
    fn union_is_rejected() {
        let err = derive(quote!(union U { a: u8 })).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`#[derive(ErrorKind)]` supports enums and structs")
        );
    }
}
