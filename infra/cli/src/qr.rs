//! QR links and pictures of them.

use anyhow::Context;
use qrcode::QrCode;

pub fn terminal(url: &str) -> anyhow::Result<String> {
    let code = QrCode::new(url.as_bytes()).context("QR encode")?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

pub fn svg(url: &str) -> anyhow::Result<String> {
    let code = QrCode::new(url.as_bytes()).context("QR encode")?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build())
}

pub fn png(url: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let code = QrCode::new(url.as_bytes()).context("QR encode")?;
    let img = code
        .render::<image::Luma<u8>>()
        .min_dimensions(300, 300)
        .build();
    img.save(path)
        .with_context(|| format!("writing {}", path.display()))
}
