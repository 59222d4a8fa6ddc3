//! Drawing a cursor image into a frame, shared by the backends that get the
//! cursor apart from the picture (X11 XFIXES, PipeWire cursor metadata).

/// A premultiplied ARGB image (`0xAARRGGBB` per pixel) placed on a frame.
#[derive(Debug, Clone, Copy)]
pub struct Overlay<'a> {
    /// Pixels, rows of `width`.
    pub argb: &'a [u32],
    /// Width in pixels.
    pub width: u32,
    /// Frame column of the image's left edge (may be negative).
    pub left: i32,
    /// Frame row of the image's top edge (may be negative).
    pub top: i32,
}

/// Alpha-blends `overlay` into a B,G,R,x frame; parts outside the frame are
/// clipped.
pub fn blend_premultiplied_argb(frame: &mut [u8], width: u32, height: u32, stride_bytes: usize, overlay: Overlay<'_>) {
    let Overlay { argb: image, width: image_width, left, top } = overlay;
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
        let image = [0xff00_ff00, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff];
        blend_premultiplied_argb(&mut frame, 4, 4, 16, Overlay { argb: &image, width: 2, left: 3, top: 3 });
        assert_eq!(&frame[3 * 16 + 12..3 * 16 + 15], &[0, 255, 0]);
        assert_eq!(&frame[2 * 16 + 12..2 * 16 + 15], &[100, 100, 100]);
        // Negative origin clips the other way.
        blend_premultiplied_argb(
            &mut frame,
            4,
            4,
            16,
            Overlay { argb: &[0xffff_ffff, 0xff00_00ff], width: 2, left: -1, top: 0 },
        );
        assert_eq!(&frame[..3], &[255, 0, 0]);
    }
}
