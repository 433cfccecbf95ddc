//! The page and its assets, embedded in the binary: served with their media types, an `ETag`
//! (a hash of the content) and a cache policy; nothing is fetched from elsewhere.

use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};
use sha2::{Digest, Sha256};

use crate::http::EndpointBuilder;

/// The version of the vendored uPlot, part of its file names.
pub const UPLOT_VERSION: &str = "1.6.32";

/// How a file may be cached.
#[derive(Clone, Copy, Debug)]
enum Cache {
    /// Revalidated on each use (`no-cache` with an `ETag`): it changes with the binary.
    Revalidate,
    /// The file name carries its version: kept for a year without asking.
    Immutable,
}

/// One embedded file.
#[derive(Debug)]
pub(crate) struct Asset {
    pub(crate) path: &'static str,
    pub(crate) content_type: &'static str,
    body: &'static [u8],
    cache: Cache,
}

/// Every embedded file, `/` first.
pub(crate) static ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../assets/ops/index.html"),
        cache: Cache::Revalidate,
    },
    Asset {
        path: "/assets/ops.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/ops/ops.js"),
        cache: Cache::Revalidate,
    },
    Asset {
        path: "/assets/ops.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/ops/ops.css"),
        cache: Cache::Revalidate,
    },
    Asset {
        path: "/assets/uPlot-1.6.32.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/ops/uPlot-1.6.32.iife.min.js"),
        cache: Cache::Immutable,
    },
    Asset {
        path: "/assets/uPlot-1.6.32.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/ops/uPlot-1.6.32.min.css"),
        cache: Cache::Immutable,
    },
    Asset {
        path: "/assets/LICENSE-uPlot.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../assets/ops/LICENSE-uPlot.txt"),
        cache: Cache::Revalidate,
    },
];

/// Each asset's `ETag`, in the order of [`ASSETS`].
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body);
            let hex = digest[..8].iter().fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            });
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
        })
        .collect()
});

/// Whether `If-None-Match` lists `etag` (or `*`).
fn matches(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == etag.as_bytes())
}

fn route(index: usize) -> MethodRouter {
    get(move |headers: HeaderMap| async move {
        let asset = &ASSETS[index];
        let etag = ETAGS[index].clone();
        let cache = match asset.cache {
            Cache::Revalidate => "no-cache",
            Cache::Immutable => "public, max-age=31536000, immutable",
        };
        let common = [
            (CACHE_CONTROL, HeaderValue::from_static(cache)),
            (ETAG, etag.clone()),
            (
                axum::http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ];
        if matches(&headers, &etag) {
            return (StatusCode::NOT_MODIFIED, common).into_response();
        }
        (
            StatusCode::OK,
            common,
            [(CONTENT_TYPE, HeaderValue::from_static(asset.content_type))],
            asset.body,
        )
            .into_response()
    })
}

/// Mounts the page and its assets.
pub(crate) fn mount(mut endpoint: EndpointBuilder) -> EndpointBuilder {
    for (index, asset) in ASSETS.iter().enumerate() {
        endpoint = endpoint.route(asset.path, route(index));
    }
    endpoint
}

#[cfg(test)]
mod tests {
    use super::{ASSETS, UPLOT_VERSION};

    #[test]
    fn the_vendored_chart_library_is_the_version_its_names_say() {
        let js = ASSETS
            .iter()
            .find(|a| a.path.ends_with(".iife.min.js"))
            .unwrap();
        assert!(js.path.contains(UPLOT_VERSION));
        let head = std::str::from_utf8(&js.body[..80]).unwrap();
        assert!(head.contains(&format!("(v{UPLOT_VERSION})")), "{head}");
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        for asset in &ASSETS[1..] {
            if asset.content_type.starts_with("text/javascript")
                || asset.content_type.starts_with("text/css")
            {
                assert!(page.contains(asset.path), "the page loads {}", asset.path);
            }
        }
    }
}
