//! `/k`: where a technician types the code printed under a sticker's QR
//! code when the camera cannot read it.

use super::{html, render};
use askama::Template;
use axum::response::Response;

#[derive(Template)]
#[template(path = "sticker_code.html")]
pub struct StickerCodePage<'a> {
    /// What was typed, shown again after a mistake.
    pub typed: &'a str,
    pub error: Option<&'a str>,
}

impl StickerCodePage<'_> {
    pub fn page(&self, status: u16) -> Response {
        html(status, render(self))
    }
}
