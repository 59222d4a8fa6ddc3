//! Drawing a cursor image into a frame, shared by the backends that get the
//! cursor apart from the picture (X11 XFIXES, PipeWire cursor metadata).

/// Alpha-blends a premultiplied ARGB image (`0xAARRGGBB` per pixel, rows of
/// `image_width`) into a B,G,R,x frame with its top-left corner at
/// (`left`, `top`) in frame pixels; parts outside the frame are clipped.
pub fn blend_premultiplied_argb(
    frame: &mut [u8],
    width: u32,
    height: u32,
    stride_bytes: usize,
    image: &[u32],
    image_width: u32,
    left: i32,
    top: i32,
) {
    if image_width == 0 {
        return;
    }
    for (cy, row) in image.chunks_exact(image_width as usize).enumerate() {
        let y = top + cy as i32;
        if y < 0 || y >= height as i32 {
            continue;
        }
        for (cx, &argb) in row.iter().enumerate() {
            let x = left + cx as i32;
            if x < 0 || x >= width as i32 {
                continue;
            }
            let a = argb >> 24;
            if a == 0 {
                continue;
            }
            let i = y as usize * stride_bytes + x as usize * 4;
            let Some(px) = frame.get_mut(i..i + 3) else { return };
            for (c, d) in px.iter_mut().enumerate() {
                let s = (argb >> (8 * c)) & 0xff;
                *d = (s + u32::from(*d) * (255 - a) / 255).min(255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premultiplied_over_with_clipping() {
        let mut frame = vec![100u8; 4 * 4 * 4];
        // 2x2 image at (3, 3): only its top-left pixel lands inside.
        blend_premultiplied_argb(&mut frame, 4, 4, 16, &[0xff00_ff00, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff], 2, 3, 3);
        assert_eq!(&frame[3 * 16 + 12..3 * 16 + 15], &[0, 255, 0]);
        assert_eq!(&frame[2 * 16 + 12..2 * 16 + 15], &[100, 100, 100]);
        // Negative origin clips the other way.
        blend_premultiplied_argb(&mut frame, 4, 4, 16, &[0xffff_ffff, 0xff00_00ff], 2, -1, 0);
        assert_eq!(&frame[..3], &[255, 0, 0]);
    }
}
