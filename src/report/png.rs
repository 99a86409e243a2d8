//! A minimal PNG writer: 8-bit RGB, no interlacing, filter 0 on every
//! scanline, one zlib IDAT chunk (PNG spec §11–12).
//!
//! Why not the `image`/`png` crates: enabling them changes the features of
//! crates the whole dependency tree shares (`flate2`'s backends, `bytemuck`),
//! which recompiles arrow, parquet, datafusion and candle: many minutes on
//! a 2-core machine. `flate2` (zlib-rs, already in the tree) does the
//! compression and `crc32fast` the checksums; the container is 30 lines.
//! Output bytes depend only on the pixels (fixed compression level).

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
const BIT_DEPTH: u8 = 8;
const COLOR_RGB: u8 = 2;
const FILTER_NONE: u8 = 0;

/// Encode `rgb` (`width × height × 3` bytes, row-major) as a PNG file.
pub fn encode_rgb(rgb: &[u8], width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let row = width as usize * 3;
    anyhow::ensure!(
        rgb.len() == row * height as usize,
        "PNG: {} bytes of pixels for {width}×{height} RGB",
        rgb.len()
    );
    let mut header = Vec::with_capacity(13);
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([BIT_DEPTH, COLOR_RGB, 0, 0, 0]);
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    for line in rgb.chunks(row.max(1)) {
        z.write_all(&[FILTER_NONE])?;
        z.write_all(line)?;
    }
    let data = z.finish()?;
    let mut out = SIGNATURE.to_vec();
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &data);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend(kind);
    out.extend(data);
    out.extend(crc.finalize().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_pixel_image_has_the_png_layout() {
        let png = encode_rgb(&[255, 0, 0], 1, 1).unwrap();
        assert_eq!(&png[..8], &SIGNATURE);
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[16..24], &[0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(&png[png.len() - 8..png.len() - 4], b"IEND");
        // The IHDR CRC of a 1×1 8-bit RGB image (a well-known constant).
        assert_eq!(&png[29..33], &[0x90, 0x77, 0x53, 0xde]);
        assert!(encode_rgb(&[0; 5], 1, 2).is_err());
    }
}
