//! Every file the console's pages load, compiled into the binary (HQ may have no
//! internet; no CDN). Served with a long cache lifetime: their names change with them.

use axum::extract::Path;
use axum::response::Response;
use keliling_web::assets::Asset;

const ASSETS: &[Asset] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console.js"),
    ),
    (
        "logo.svg",
        "image/svg+xml",
        include_bytes!("../../assets/logo.svg"),
    ),
];

pub async fn serve(Path(name): Path<String>) -> Response {
    keliling_web::assets::serve(ASSETS, &name)
}
