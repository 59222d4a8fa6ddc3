/* Sizes, field offsets and constants of the libvpx headers Peep is built
 * against, in the order of `LAYOUT_NAMES` in vpx_ffi.rs. The Rust side
 * compares them with its own declarations before touching libvpx. */
#include <stddef.h>
#include <vpx/vp8cx.h>
#include <vpx/vp8dx.h>
#include <vpx/vpx_decoder.h>
#include <vpx/vpx_encoder.h>

const long peep_vpx_layout[] = {
    VPX_ENCODER_ABI_VERSION,
    VPX_DECODER_ABI_VERSION,
    sizeof(vpx_codec_ctx_t),
    sizeof(vpx_codec_dec_cfg_t),
    sizeof(vpx_codec_enc_cfg_t),
    offsetof(vpx_codec_enc_cfg_t, g_w),
    offsetof(vpx_codec_enc_cfg_t, g_timebase),
    offsetof(vpx_codec_enc_cfg_t, g_error_resilient),
    offsetof(vpx_codec_enc_cfg_t, g_lag_in_frames),
    offsetof(vpx_codec_enc_cfg_t, rc_dropframe_thresh),
    offsetof(vpx_codec_enc_cfg_t, rc_end_usage),
    offsetof(vpx_codec_enc_cfg_t, rc_target_bitrate),
    offsetof(vpx_codec_enc_cfg_t, rc_min_quantizer),
    offsetof(vpx_codec_enc_cfg_t, rc_buf_sz),
    offsetof(vpx_codec_enc_cfg_t, kf_mode),
    offsetof(vpx_codec_enc_cfg_t, kf_max_dist),
    offsetof(vpx_codec_enc_cfg_t, ss_number_layers),
    offsetof(vpx_codec_enc_cfg_t, ts_number_layers),
    offsetof(vpx_codec_enc_cfg_t, layer_target_bitrate),
    offsetof(vpx_codec_enc_cfg_t, temporal_layering_mode),
    offsetof(vpx_codec_enc_cfg_t, active_wq_factor),
    sizeof(vpx_image_t),
    offsetof(vpx_image_t, d_w),
    offsetof(vpx_image_t, planes),
    offsetof(vpx_image_t, stride),
    offsetof(vpx_image_t, fb_priv),
    sizeof(vpx_codec_cx_pkt_t),
    offsetof(vpx_codec_cx_pkt_t, data.frame.buf),
    offsetof(vpx_codec_cx_pkt_t, data.frame.sz),
    offsetof(vpx_codec_cx_pkt_t, data.frame.pts),
    offsetof(vpx_codec_cx_pkt_t, data.frame.flags),
    VPX_IMG_FMT_I420,
    VPX_CS_BT_709,
    VPX_CR_STUDIO_RANGE,
    VPX_DL_REALTIME,
    VPX_EFLAG_FORCE_KF,
    VPX_FRAME_IS_KEY,
    VPX_ERROR_RESILIENT_DEFAULT,
    VPX_CBR,
    VPX_KF_AUTO,
    VPX_KF_DISABLED,
    VPX_CODEC_CX_FRAME_PKT,
    VP8E_SET_CPUUSED,
    VP8E_SET_NOISE_SENSITIVITY,
    VP8E_SET_STATIC_THRESHOLD,
    VP8E_SET_TOKEN_PARTITIONS,
    VP8E_SET_MAX_INTRA_BITRATE_PCT,
    VP8E_SET_SCREEN_CONTENT_MODE,
    VP9E_SET_TUNE_CONTENT,
    VP9E_SET_ROW_MT,
    VP9E_SET_AQ_MODE,
    VP9E_SET_TILE_COLUMNS,
    VP9E_SET_COLOR_SPACE,
    VP9E_SET_COLOR_RANGE,
    VP9E_SET_NOISE_SENSITIVITY,
    VP9E_CONTENT_SCREEN,
};

const size_t peep_vpx_layout_len = sizeof(peep_vpx_layout) / sizeof(peep_vpx_layout[0]);
