//! An image's declared size, read from its header bytes without decoding
//! it: a small file can declare a gigapixel canvas (a decompression bomb
//! for whoever decodes it later: the review page, Salesforce previews).

/// Largest side accepted, in pixels.
pub const MAX_SIDE: u32 = 12_000;
/// Largest area accepted, in pixels.
pub const MAX_PIXELS: u64 = 40_000_000;

/// Width and height as the header declares them; `None` when the header is
/// cut short or not one of PNG, JPEG, WebP.
pub fn dimensions(data: &[u8]) -> Option<(u32, u32)> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        // The first chunk must be IHDR: width, height (big endian).
        (data.get(12..16)? == b"IHDR").then_some(())?;
        return Some((be32(data.get(16..20)?), be32(data.get(20..24)?)));
    }
    if data.starts_with(&[0xFF, 0xD8]) {
        return jpeg(data);
    }
    if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        return webp(data);
    }
    None
}

/// Whether the declared size is within [`MAX_SIDE`] and [`MAX_PIXELS`].
pub fn acceptable((w, h): (u32, u32)) -> bool {
    w > 0 && h > 0 && w <= MAX_SIDE && h <= MAX_SIDE && u64::from(w) * u64::from(h) <= MAX_PIXELS
}

fn be16(b: &[u8]) -> u32 {
    u32::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn le24(b: &[u8]) -> u32 {
    u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16
}

/// Walks the marker segments to the first start-of-frame.
fn jpeg(data: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while *data.get(i)? == 0xFF && *data.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *data.get(i)? != 0xFF {
            return None;
        }
        let marker = *data.get(i + 1)?;
        i += 2;
        match marker {
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => continue,
            // End of image or start of scan before any frame: no size.
            0xD9 | 0xDA => return None,
            _ => {}
        }
        let len = be16(data.get(i..i + 2)?) as usize;
        if len < 2 {
            return None;
        }
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let seg = data.get(i + 2..i + 7)?;
            return Some((be16(&seg[3..5]), be16(&seg[1..3])));
        }
        i += len;
    }
}

fn webp(data: &[u8]) -> Option<(u32, u32)> {
    let chunk = data.get(12..16)?;
    let body = data.get(20..)?;
    match chunk {
        // Lossy: after a 3-byte frame tag and the start code, 14-bit sizes.
        b"VP8 " => {
            (body.get(3..6)? == [0x9D, 0x01, 0x2A]).then_some(())?;
            let w = u32::from(u16::from_le_bytes([*body.get(6)?, *body.get(7)?]) & 0x3FFF);
            let h = u32::from(u16::from_le_bytes([*body.get(8)?, *body.get(9)?]) & 0x3FFF);
            Some((w, h))
        }
        // Lossless: a signature byte, then 14 + 14 bits of size - 1.
        b"VP8L" => {
            (*body.first()? == 0x2F).then_some(())?;
            let b = body.get(1..5)?;
            let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        // Extended: canvas size - 1 as two 24-bit little-endian numbers.
        b"VP8X" => {
            let b = body.get(4..10)?;
            Some((le24(&b[0..3]) + 1, le24(&b[3..6]) + 1))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        v.extend(w.to_be_bytes());
        v.extend(h.to_be_bytes());
        v.extend([8, 2, 0, 0, 0]);
        v
    }

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, b'J', b'F'];
        v.extend([0xFF, 0xC0, 0x00, 0x11, 0x08]);
        v.extend(h.to_be_bytes());
        v.extend(w.to_be_bytes());
        v.extend([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        v
    }

    #[test]
    fn sizes_come_from_the_header() {
        assert_eq!(dimensions(&png(640, 480)), Some((640, 480)));
        assert_eq!(dimensions(&jpeg(4032, 3024)), Some((4032, 3024)));
        let mut vp8x = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        vp8x.extend([0x3F, 0x1F, 0x00, 0xDF, 0x2E, 0x00]); // 8000 x 12000
        assert_eq!(dimensions(&vp8x), Some((8000, 12000)));
        assert_eq!(dimensions(b"\x89PNG\r\n\x1a\n"), None, "cut short");
        assert_eq!(dimensions(&[0xFF, 0xD8, 0xFF, 0xDA]), None, "no frame");
        assert_eq!(dimensions(b"GIF89a"), None);
    }

    #[test]
    fn limits_per_side_and_area() {
        assert!(acceptable((4032, 3024)));
        assert!(acceptable((12_000, 3_000)));
        assert!(!acceptable((12_001, 10)), "a side too long");
        assert!(!acceptable((7_000, 7_000)), "49 megapixels");
        assert!(!acceptable((0, 10)));
        assert!(!acceptable((u32::MAX, u32::MAX)));
    }
}
