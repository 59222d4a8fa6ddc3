//! A thin, hand-written binding to the part of libvpx that [`crate::vpx`]
//! uses: encoder and decoder set-up, one-frame encode/decode, codec
//! controls. Declared from the libvpx 1.12 headers (Debian 12's
//! `libvpx-dev`, encoder ABI 25, decoder ABI 12).
//!
//! Why not a binding crate: `env-libvpx-sys` ships pre-generated bindings
//! per libvpx version and its build script panics on any other version (and
//! on a cross/type-check build, where pkg-config refuses); `vpx-sys` runs
//! bindgen, adding libclang to every build, and has not been released for
//! years. Peep needs about fifteen functions and five structs. Two checks
//! guard the hand-written layout:
//! - `build.rs` compiles `vpx_layout.c` against the installed headers, and
//!   [`check_layout`] compares every size, field offset and constant used
//!   here with what C sees, before any libvpx call (a mismatch is an error,
//!   never undefined behaviour);
//! - libvpx's own `*_init_ver` refuses an ABI version it was not built for.

#![allow(non_camel_case_types, missing_debug_implementations)]

use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::mem::{offset_of, size_of};

/// `VPX_ENCODER_ABI_VERSION` of the declarations below.
pub const VPX_ENCODER_ABI_VERSION: c_int = 25;
/// `VPX_DECODER_ABI_VERSION` of the declarations below.
pub const VPX_DECODER_ABI_VERSION: c_int = 12;

pub type vpx_codec_err_t = c_int;
pub const VPX_CODEC_OK: vpx_codec_err_t = 0;

pub const VPX_IMG_FMT_I420: c_int = 0x102;
pub const VPX_CS_BT_709: c_int = 2;
pub const VPX_CR_STUDIO_RANGE: c_int = 0;
pub const VPX_DL_REALTIME: c_ulong = 1;
pub const VPX_EFLAG_FORCE_KF: c_long = 1;
pub const VPX_FRAME_IS_KEY: u32 = 1;
pub const VPX_ERROR_RESILIENT_DEFAULT: u32 = 1;
pub const VPX_CBR: c_int = 1;
pub const VPX_KF_AUTO: c_int = 1;
pub const VPX_KF_DISABLED: c_int = 0;
pub const VPX_CODEC_CX_FRAME_PKT: c_int = 0;

pub const VP8E_SET_CPUUSED: c_int = 13;
pub const VP8E_SET_NOISE_SENSITIVITY: c_int = 15;
pub const VP8E_SET_STATIC_THRESHOLD: c_int = 17;
pub const VP8E_SET_TOKEN_PARTITIONS: c_int = 18;
pub const VP8E_SET_MAX_INTRA_BITRATE_PCT: c_int = 26;
pub const VP8E_SET_SCREEN_CONTENT_MODE: c_int = 31;
pub const VP9E_SET_TUNE_CONTENT: c_int = 43;
pub const VP9E_SET_ROW_MT: c_int = 55;
pub const VP9E_SET_AQ_MODE: c_int = 36;
pub const VP9E_SET_TILE_COLUMNS: c_int = 33;
pub const VP9E_SET_COLOR_SPACE: c_int = 46;
pub const VP9E_SET_COLOR_RANGE: c_int = 51;
pub const VP9E_SET_NOISE_SENSITIVITY: c_int = 38;
pub const VP9E_CONTENT_SCREEN: c_int = 1;

/// Opaque `vpx_codec_iface_t`.
#[repr(C)]
pub struct vpx_codec_iface_t {
    _private: [u8; 0],
}

#[repr(C)]
pub struct vpx_codec_ctx_t {
    pub name: *const c_char,
    pub iface: *const vpx_codec_iface_t,
    pub err: vpx_codec_err_t,
    pub err_detail: *const c_char,
    pub init_flags: c_long,
    /// Union of `dec`/`enc`/`raw` config pointers.
    pub config: *const c_void,
    pub priv_: *mut c_void,
}

#[repr(C)]
pub struct vpx_codec_dec_cfg_t {
    pub threads: c_uint,
    pub w: c_uint,
    pub h: c_uint,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct vpx_rational_t {
    pub num: c_int,
    pub den: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct vpx_fixed_buf_t {
    pub buf: *mut c_void,
    pub sz: usize,
}

const VPX_SS_MAX_LAYERS: usize = 5;
const VPX_TS_MAX_LAYERS: usize = 5;
const VPX_TS_MAX_PERIODICITY: usize = 16;
const VPX_MAX_LAYERS: usize = 12;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct vpx_codec_enc_cfg_t {
    pub g_usage: c_uint,
    pub g_threads: c_uint,
    pub g_profile: c_uint,
    pub g_w: c_uint,
    pub g_h: c_uint,
    pub g_bit_depth: c_int,
    pub g_input_bit_depth: c_uint,
    pub g_timebase: vpx_rational_t,
    pub g_error_resilient: u32,
    pub g_pass: c_int,
    pub g_lag_in_frames: c_uint,
    pub rc_dropframe_thresh: c_uint,
    pub rc_resize_allowed: c_uint,
    pub rc_scaled_width: c_uint,
    pub rc_scaled_height: c_uint,
    pub rc_resize_up_thresh: c_uint,
    pub rc_resize_down_thresh: c_uint,
    pub rc_end_usage: c_int,
    pub rc_twopass_stats_in: vpx_fixed_buf_t,
    pub rc_firstpass_mb_stats_in: vpx_fixed_buf_t,
    pub rc_target_bitrate: c_uint,
    pub rc_min_quantizer: c_uint,
    pub rc_max_quantizer: c_uint,
    pub rc_undershoot_pct: c_uint,
    pub rc_overshoot_pct: c_uint,
    pub rc_buf_sz: c_uint,
    pub rc_buf_initial_sz: c_uint,
    pub rc_buf_optimal_sz: c_uint,
    pub rc_2pass_vbr_bias_pct: c_uint,
    pub rc_2pass_vbr_minsection_pct: c_uint,
    pub rc_2pass_vbr_maxsection_pct: c_uint,
    pub rc_2pass_vbr_corpus_complexity: c_uint,
    pub kf_mode: c_int,
    pub kf_min_dist: c_uint,
    pub kf_max_dist: c_uint,
    pub ss_number_layers: c_uint,
    pub ss_enable_auto_alt_ref: [c_int; VPX_SS_MAX_LAYERS],
    pub ss_target_bitrate: [c_uint; VPX_SS_MAX_LAYERS],
    pub ts_number_layers: c_uint,
    pub ts_target_bitrate: [c_uint; VPX_TS_MAX_LAYERS],
    pub ts_rate_decimator: [c_uint; VPX_TS_MAX_LAYERS],
    pub ts_periodicity: c_uint,
    pub ts_layer_id: [c_uint; VPX_TS_MAX_PERIODICITY],
    pub layer_target_bitrate: [c_uint; VPX_MAX_LAYERS],
    pub temporal_layering_mode: c_int,
    pub use_vizier_rc_params: c_int,
    /// `active_wq_factor` … `rd_mult_key_qp_fac`: fifteen `vpx_rational_t`
    /// tuning factors of the external ("vizier") rate control, unused here.
    pub vizier_factors: [vpx_rational_t; 15],
}

#[repr(C)]
pub struct vpx_image_t {
    pub fmt: c_int,
    pub cs: c_int,
    pub range: c_int,
    pub w: c_uint,
    pub h: c_uint,
    pub bit_depth: c_uint,
    pub d_w: c_uint,
    pub d_h: c_uint,
    pub r_w: c_uint,
    pub r_h: c_uint,
    pub x_chroma_shift: c_uint,
    pub y_chroma_shift: c_uint,
    pub planes: [*mut u8; 4],
    pub stride: [c_int; 4],
    pub bps: c_int,
    pub user_priv: *mut c_void,
    pub img_data: *mut u8,
    pub img_data_owner: c_int,
    pub self_allocd: c_int,
    pub fb_priv: *mut c_void,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct vpx_cx_frame_t {
    pub buf: *mut c_void,
    pub sz: usize,
    pub pts: i64,
    pub duration: c_ulong,
    pub flags: u32,
    pub partition_id: c_int,
    pub width: [c_uint; VPX_SS_MAX_LAYERS],
    pub height: [c_uint; VPX_SS_MAX_LAYERS],
    pub spatial_layer_encoded: [u8; VPX_SS_MAX_LAYERS],
}

#[repr(C)]
pub union vpx_cx_pkt_data_t {
    pub frame: vpx_cx_frame_t,
    /// The header's fixed size: `char pad[128 - sizeof(enum)]`.
    pub pad: [c_char; 124],
}

#[repr(C)]
pub struct vpx_codec_cx_pkt_t {
    pub kind: c_int,
    pub data: vpx_cx_pkt_data_t,
}

pub type vpx_codec_iter_t = *const c_void;

#[link(name = "vpx")]
unsafe extern "C" {
    pub fn vpx_codec_vp8_cx() -> *const vpx_codec_iface_t;
    pub fn vpx_codec_vp9_cx() -> *const vpx_codec_iface_t;
    pub fn vpx_codec_vp8_dx() -> *const vpx_codec_iface_t;
    pub fn vpx_codec_vp9_dx() -> *const vpx_codec_iface_t;
    pub fn vpx_codec_version_str() -> *const c_char;
    pub fn vpx_codec_err_to_string(err: vpx_codec_err_t) -> *const c_char;
    pub fn vpx_codec_error_detail(ctx: *mut vpx_codec_ctx_t) -> *const c_char;
    pub fn vpx_codec_destroy(ctx: *mut vpx_codec_ctx_t) -> vpx_codec_err_t;
    pub fn vpx_codec_control_(ctx: *mut vpx_codec_ctx_t, ctrl_id: c_int, ...) -> vpx_codec_err_t;
    pub fn vpx_codec_enc_config_default(
        iface: *const vpx_codec_iface_t,
        cfg: *mut vpx_codec_enc_cfg_t,
        usage: c_uint,
    ) -> vpx_codec_err_t;
    pub fn vpx_codec_enc_init_ver(
        ctx: *mut vpx_codec_ctx_t,
        iface: *const vpx_codec_iface_t,
        cfg: *const vpx_codec_enc_cfg_t,
        flags: c_long,
        ver: c_int,
    ) -> vpx_codec_err_t;
    pub fn vpx_codec_enc_config_set(ctx: *mut vpx_codec_ctx_t, cfg: *const vpx_codec_enc_cfg_t) -> vpx_codec_err_t;
    pub fn vpx_codec_encode(
        ctx: *mut vpx_codec_ctx_t,
        img: *const vpx_image_t,
        pts: i64,
        duration: c_ulong,
        flags: c_long,
        deadline: c_ulong,
    ) -> vpx_codec_err_t;
    pub fn vpx_codec_get_cx_data(ctx: *mut vpx_codec_ctx_t, iter: *mut vpx_codec_iter_t) -> *const vpx_codec_cx_pkt_t;
    pub fn vpx_codec_dec_init_ver(
        ctx: *mut vpx_codec_ctx_t,
        iface: *const vpx_codec_iface_t,
        cfg: *const vpx_codec_dec_cfg_t,
        flags: c_long,
        ver: c_int,
    ) -> vpx_codec_err_t;
    pub fn vpx_codec_decode(
        ctx: *mut vpx_codec_ctx_t,
        data: *const u8,
        data_sz: c_uint,
        user_priv: *mut c_void,
        deadline: c_long,
    ) -> vpx_codec_err_t;
    pub fn vpx_codec_get_frame(ctx: *mut vpx_codec_ctx_t, iter: *mut vpx_codec_iter_t) -> *const vpx_image_t;
}

unsafe extern "C" {
    /// From `vpx_layout.c`, compiled by build.rs against the installed headers.
    static peep_vpx_layout: [c_long; 0];
    static peep_vpx_layout_len: usize;
}

/// What each entry of `peep_vpx_layout` is, and the Rust side's value.
// `c_long` is i64 here but i32 on other targets: the casts are not no-ops everywhere.
#[allow(clippy::unnecessary_cast)]
fn rust_layout() -> Vec<(&'static str, i64)> {
    type Enc = vpx_codec_enc_cfg_t;
    type Img = vpx_image_t;
    type Pkt = vpx_codec_cx_pkt_t;
    let pkt_frame = offset_of!(Pkt, data);
    let frame = |field: usize| (pkt_frame + field) as i64;
    vec![
        ("VPX_ENCODER_ABI_VERSION", i64::from(VPX_ENCODER_ABI_VERSION)),
        ("VPX_DECODER_ABI_VERSION", i64::from(VPX_DECODER_ABI_VERSION)),
        ("sizeof(vpx_codec_ctx_t)", size_of::<vpx_codec_ctx_t>() as i64),
        ("sizeof(vpx_codec_dec_cfg_t)", size_of::<vpx_codec_dec_cfg_t>() as i64),
        ("sizeof(vpx_codec_enc_cfg_t)", size_of::<Enc>() as i64),
        ("offsetof(enc_cfg, g_w)", offset_of!(Enc, g_w) as i64),
        ("offsetof(enc_cfg, g_timebase)", offset_of!(Enc, g_timebase) as i64),
        ("offsetof(enc_cfg, g_error_resilient)", offset_of!(Enc, g_error_resilient) as i64),
        ("offsetof(enc_cfg, g_lag_in_frames)", offset_of!(Enc, g_lag_in_frames) as i64),
        ("offsetof(enc_cfg, rc_dropframe_thresh)", offset_of!(Enc, rc_dropframe_thresh) as i64),
        ("offsetof(enc_cfg, rc_end_usage)", offset_of!(Enc, rc_end_usage) as i64),
        ("offsetof(enc_cfg, rc_target_bitrate)", offset_of!(Enc, rc_target_bitrate) as i64),
        ("offsetof(enc_cfg, rc_min_quantizer)", offset_of!(Enc, rc_min_quantizer) as i64),
        ("offsetof(enc_cfg, rc_buf_sz)", offset_of!(Enc, rc_buf_sz) as i64),
        ("offsetof(enc_cfg, kf_mode)", offset_of!(Enc, kf_mode) as i64),
        ("offsetof(enc_cfg, kf_max_dist)", offset_of!(Enc, kf_max_dist) as i64),
        ("offsetof(enc_cfg, ss_number_layers)", offset_of!(Enc, ss_number_layers) as i64),
        ("offsetof(enc_cfg, ts_number_layers)", offset_of!(Enc, ts_number_layers) as i64),
        ("offsetof(enc_cfg, layer_target_bitrate)", offset_of!(Enc, layer_target_bitrate) as i64),
        ("offsetof(enc_cfg, temporal_layering_mode)", offset_of!(Enc, temporal_layering_mode) as i64),
        ("offsetof(enc_cfg, active_wq_factor)", offset_of!(Enc, vizier_factors) as i64),
        ("sizeof(vpx_image_t)", size_of::<Img>() as i64),
        ("offsetof(image, d_w)", offset_of!(Img, d_w) as i64),
        ("offsetof(image, planes)", offset_of!(Img, planes) as i64),
        ("offsetof(image, stride)", offset_of!(Img, stride) as i64),
        ("offsetof(image, fb_priv)", offset_of!(Img, fb_priv) as i64),
        ("sizeof(vpx_codec_cx_pkt_t)", size_of::<Pkt>() as i64),
        ("offsetof(pkt, data.frame.buf)", frame(offset_of!(vpx_cx_frame_t, buf))),
        ("offsetof(pkt, data.frame.sz)", frame(offset_of!(vpx_cx_frame_t, sz))),
        ("offsetof(pkt, data.frame.pts)", frame(offset_of!(vpx_cx_frame_t, pts))),
        ("offsetof(pkt, data.frame.flags)", frame(offset_of!(vpx_cx_frame_t, flags))),
        ("VPX_IMG_FMT_I420", i64::from(VPX_IMG_FMT_I420)),
        ("VPX_CS_BT_709", i64::from(VPX_CS_BT_709)),
        ("VPX_CR_STUDIO_RANGE", i64::from(VPX_CR_STUDIO_RANGE)),
        ("VPX_DL_REALTIME", VPX_DL_REALTIME as i64),
        ("VPX_EFLAG_FORCE_KF", VPX_EFLAG_FORCE_KF as i64),
        ("VPX_FRAME_IS_KEY", i64::from(VPX_FRAME_IS_KEY)),
        ("VPX_ERROR_RESILIENT_DEFAULT", i64::from(VPX_ERROR_RESILIENT_DEFAULT)),
        ("VPX_CBR", i64::from(VPX_CBR)),
        ("VPX_KF_AUTO", i64::from(VPX_KF_AUTO)),
        ("VPX_KF_DISABLED", i64::from(VPX_KF_DISABLED)),
        ("VPX_CODEC_CX_FRAME_PKT", i64::from(VPX_CODEC_CX_FRAME_PKT)),
        ("VP8E_SET_CPUUSED", i64::from(VP8E_SET_CPUUSED)),
        ("VP8E_SET_NOISE_SENSITIVITY", i64::from(VP8E_SET_NOISE_SENSITIVITY)),
        ("VP8E_SET_STATIC_THRESHOLD", i64::from(VP8E_SET_STATIC_THRESHOLD)),
        ("VP8E_SET_TOKEN_PARTITIONS", i64::from(VP8E_SET_TOKEN_PARTITIONS)),
        ("VP8E_SET_MAX_INTRA_BITRATE_PCT", i64::from(VP8E_SET_MAX_INTRA_BITRATE_PCT)),
        ("VP8E_SET_SCREEN_CONTENT_MODE", i64::from(VP8E_SET_SCREEN_CONTENT_MODE)),
        ("VP9E_SET_TUNE_CONTENT", i64::from(VP9E_SET_TUNE_CONTENT)),
        ("VP9E_SET_ROW_MT", i64::from(VP9E_SET_ROW_MT)),
        ("VP9E_SET_AQ_MODE", i64::from(VP9E_SET_AQ_MODE)),
        ("VP9E_SET_TILE_COLUMNS", i64::from(VP9E_SET_TILE_COLUMNS)),
        ("VP9E_SET_COLOR_SPACE", i64::from(VP9E_SET_COLOR_SPACE)),
        ("VP9E_SET_COLOR_RANGE", i64::from(VP9E_SET_COLOR_RANGE)),
        ("VP9E_SET_NOISE_SENSITIVITY", i64::from(VP9E_SET_NOISE_SENSITIVITY)),
        ("VP9E_CONTENT_SCREEN", i64::from(VP9E_CONTENT_SCREEN)),
    ]
}

/// Compares the declarations above with the installed headers (see the
/// module docs). Returns the first mismatch, e.g.
/// `"sizeof(vpx_codec_enc_cfg_t): headers say 512, Peep's bindings 504"`.
#[allow(clippy::useless_conversion)] // `c_long` → i64 (i32 on some targets)
pub fn check_layout() -> Result<(), String> {
    static RESULT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    RESULT
        .get_or_init(|| {
            // SAFETY: `peep_vpx_layout` is a C array of `peep_vpx_layout_len`
            // longs with static storage (vpx_layout.c); both are read-only.
            let c = unsafe {
                std::slice::from_raw_parts(std::ptr::addr_of!(peep_vpx_layout).cast::<c_long>(), peep_vpx_layout_len)
            };
            let ours = rust_layout();
            if c.len() != ours.len() {
                return Err(format!("vpx_layout.c lists {} entries, vpx_ffi.rs {}", c.len(), ours.len()));
            }
            for ((name, value), &theirs) in ours.iter().zip(c) {
                if i64::from(theirs) != *value {
                    return Err(format!("{name}: headers say {theirs}, Peep's bindings {value}"));
                }
            }
            Ok(())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_match_the_installed_headers() {
        check_layout().unwrap();
    }

    #[test]
    fn default_config_reads_back_through_the_bindings() {
        // Reading fields libvpx itself wrote checks the offsets from the
        // library's side too (the VP8 defaults: 320x240, 1/30 s, 256 kbps).
        // SAFETY: `cfg` is a properly sized, writable vpx_codec_enc_cfg_t
        // (check_layout above), the interface comes from libvpx.
        let cfg = unsafe {
            let mut cfg = std::mem::MaybeUninit::<vpx_codec_enc_cfg_t>::zeroed();
            assert_eq!(vpx_codec_enc_config_default(vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0), VPX_CODEC_OK);
            cfg.assume_init()
        };
        assert_eq!((cfg.g_w, cfg.g_h), (320, 240));
        assert_eq!((cfg.g_timebase.num, cfg.g_timebase.den), (1, 30));
        assert_eq!(cfg.rc_target_bitrate, 256);
        assert_eq!(cfg.rc_max_quantizer, 63);
    }
}
