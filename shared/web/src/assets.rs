//! Files a front end's pages load, compiled into its binary (a bus or HQ may have no
//! internet; no CDN). Served with a cache lifetime: the pages name them with a version.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// One compiled-in file: its name under `/assets/`, its media type, its bytes.
pub type Asset = (&'static str, &'static str, &'static [u8]);

/// The response for asset `name` of `table`, or 404.
pub fn serve(table: &'static [Asset], name: &str) -> Response {
    match table.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, body)) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
