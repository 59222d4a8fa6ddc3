//! A sharing session: the media pipeline feeding a [`Share`], with the
//! fan-out thread between them. Used by `peep share` and the GUI.
//!
//! ```text
//! Pipeline ──packets (codec-tagged)──▶ peep-fanout ──send_encoded(codec)──▶ Share (viewers of that codec)
//!    ▲                                      │
//!    └── Control ◀── SetCodecs (codecs in use), EncoderRequest (keyframes, bitrate, per codec) ◀──┘
//! ```
//!
//! Each viewer watches one codec (H.264 when its browser has it, VP9 or VP8
//! otherwise). The fan-out thread keeps the pipeline's encode chains equal
//! to the codecs in use: a codec's encoder starts with its first connected
//! viewer and stops with its last. While nobody watches, capture and
//! encoding are paused: an idle share costs nothing but the HTTP server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};
use peep_capture::backend::CaptureBackend;
use peep_encode::{Codec, Encoder, VpxCodec, VpxConfig, VpxEncoder};
use peep_transport::{EncoderRequest, Share, ShareConfig, VideoCodec};

use crate::pipeline::{Codecs, Control, EncoderFactory, Pipeline, PipelineConfig};

/// The H.264 encoder for live sharing: VideoToolbox on macOS (OpenH264 when
/// the Mac has no hardware encoder), OpenH264 elsewhere.
pub fn live_encoder(bitrate_bps: u32, fps: f32) -> Result<Box<dyn Encoder>> {
    #[cfg(target_os = "macos")]
    {
        use peep_encode::videotoolbox_core::{VideoToolboxConfig, open_h264_encoder};
        let (encoder, _choice) =
            open_h264_encoder(&VideoToolboxConfig { bitrate_bps, fps, ..VideoToolboxConfig::default() })?;
        Ok(encoder)
    }
    #[cfg(not(target_os = "macos"))]
    {
        use peep_encode::{OpenH264Config, OpenH264Encoder};
        Ok(Box::new(OpenH264Encoder::new(OpenH264Config {
            bitrate_bps,
            fps,
            adjust_rate: true,
            ..OpenH264Config::default()
        })?))
    }
}

/// An encoder for live sharing of `codec`: [`live_encoder`] for H.264,
/// libvpx for VP8 and VP9 (their real-time defaults).
pub fn live_encoder_for(codec: Codec, bitrate_bps: u32, fps: f32) -> Result<Box<dyn Encoder>> {
    let vpx = match codec {
        Codec::H264 => return live_encoder(bitrate_bps, fps),
        Codec::Vp8 => VpxCodec::Vp8,
        Codec::Vp9 => VpxCodec::Vp9,
    };
    Ok(Box::new(VpxEncoder::new(VpxConfig { bitrate_bps, fps, ..VpxConfig::for_codec(vpx) })?))
}

/// The pipeline's name for a codec the share negotiated.
pub fn encode_codec(codec: VideoCodec) -> Codec {
    match codec {
        VideoCodec::H264 => Codec::H264,
        VideoCodec::Vp8 => Codec::Vp8,
        VideoCodec::Vp9 => Codec::Vp9,
    }
}

/// The share's name for a codec the pipeline encodes.
pub fn share_codec(codec: Codec) -> VideoCodec {
    match codec {
        Codec::H264 => VideoCodec::H264,
        Codec::Vp8 => VideoCodec::Vp8,
        Codec::Vp9 => VideoCodec::Vp9,
    }
}

/// A running share.
#[derive(Debug)]
pub struct Session {
    share: Arc<Share>,
    stop: Arc<AtomicBool>,
    controls: crossbeam_channel::Sender<Control>,
    preview: Arc<std::sync::Mutex<Option<crossbeam_channel::Sender<PreviewPacket>>>>,
    fanout: Option<JoinHandle<Result<()>>>,
    pipeline_stats: Arc<crate::stats::PipelineStats>,
    capture_stats: Arc<peep_capture::driver::CaptureStats>,
    live: Arc<LiveFigures>,
}

/// What the fan-out thread knows about the running encode, for metrics.
#[derive(Debug, Default)]
pub struct LiveFigures {
    /// Whether capture and encoding run (someone watches).
    pub encoding: AtomicBool,
    /// Each codec's encoded bits per second over the last second (updated
    /// once a second), indexed by [`Codec::index`].
    pub actual_bps: [std::sync::atomic::AtomicU64; 3],
}

impl Session {
    /// Starts the server and the pipeline. `encoder` serves H.264 viewers;
    /// other codecs' encoders come from [`live_encoder_for`].
    pub fn start(
        backend: Box<dyn CaptureBackend>,
        encoder: Box<dyn Encoder>,
        pipeline: PipelineConfig,
        share: ShareConfig,
    ) -> Result<Self> {
        Self::start_with_factory(backend, encoder, Box::new(live_encoder_for), pipeline, share)
    }

    /// As [`Session::start`], with `factory` making the encoders of codecs
    /// other than `encoder`'s when viewers need them.
    pub fn start_with_factory(
        backend: Box<dyn CaptureBackend>,
        encoder: Box<dyn Encoder>,
        factory: EncoderFactory,
        pipeline: PipelineConfig,
        share: ShareConfig,
    ) -> Result<Self> {
        // Live viewers: trade frame rate for bitrate when the link is slow.
        let start_bps = share.bitrate.clamp(peep_transport::rate::START_BPS);
        let share = Arc::new(Share::start(share).context("starting the share server")?);
        // The frame dropper skips frames while the viewers' send queues are
        // long (each codec's chain watches its own viewers'). Nobody watches
        // yet: nothing is captured or encoded until someone does.
        let pipeline = PipelineConfig {
            governor_start_bps: Some(start_bps),
            send_backlogs: Some(Codec::ALL.map(|c| share.send_backlog(share_codec(c)))),
            start_paused: true,
            ..pipeline
        };
        let mut pipeline = Pipeline::start_with_factory(backend, encoder, Some(factory), pipeline)?;
        let (pipeline_stats, capture_stats) = (pipeline.stats.clone(), pipeline.capture_stats.clone());
        let stop = Arc::new(AtomicBool::new(false));
        // Policy when full: the command is dropped (settings; the next one wins).
        let (controls, control_rx) = crossbeam_channel::bounded(16);
        let preview = Arc::new(std::sync::Mutex::new(None));
        let live = Arc::new(LiveFigures::default());
        let fanout = {
            let (share, stop, preview, live) = (share.clone(), stop.clone(), preview.clone(), live.clone());
            std::thread::Builder::new()
                .name("peep-fanout".into())
                .spawn(move || {
                    let taps = Taps { controls: control_rx, preview, live };
                    fan_out(&mut pipeline, &share, &stop, &taps).and(pipeline.stop())
                })
                .context("starting the fan-out thread")?
        };
        Ok(Self { share, stop, controls, preview, fanout: Some(fanout), pipeline_stats, capture_stats, live })
    }

    /// The share (link, viewers, kick, password).
    pub fn share(&self) -> &Share {
        &self.share
    }

    /// Sends a run-time command to the pipeline (fps, bitrate, keyframe);
    /// false if it was dropped.
    pub fn control(&self, command: Control) -> bool {
        self.controls.try_send(command).is_ok()
    }

    /// Starts (Some) or stops (None) copying every encoded H.264 frame to a
    /// preview decoder (the H.264 encoder runs while the preview is open).
    /// A keyframe is requested so decoding can begin.
    /// Policy when the preview's channel is full: the frame is dropped for
    /// the preview and a keyframe is requested (it resynchronises).
    pub fn set_preview(&self, tap: Option<crossbeam_channel::Sender<PreviewPacket>>) {
        let opened = tap.is_some();
        *self.preview.lock().unwrap_or_else(|e| e.into_inner()) = tap;
        if opened {
            self.control(Control::Keyframe(Codec::H264));
        }
    }

    /// Encoder-side stats.
    pub fn pipeline_stats(&self) -> &crate::stats::PipelineStats {
        &self.pipeline_stats
    }

    /// Capture-side stats.
    pub fn capture_stats(&self) -> &peep_capture::driver::CaptureStats {
        &self.capture_stats
    }

    /// A Prometheus collector of the pipeline's figures (see
    /// [`crate::metrics`]). It holds the counters, not the session.
    pub fn pipeline_metrics(&self) -> crate::metrics::PipelineMetrics {
        crate::metrics::PipelineMetrics::new(self.pipeline_stats.clone(), self.capture_stats.clone(), self.live.clone())
    }

    /// Whether the pipeline ended on its own (e.g. the shared window closed).
    pub fn is_finished(&self) -> bool {
        self.fanout.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the pipeline, tells viewers the share ended, and returns the
    /// pipeline's error if it failed.
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        let result = match self.fanout.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the fan-out thread panicked"))),
            None => Ok(()),
        };
        // The fan-out thread held the only other reference to the share:
        // dropping the session now shuts it down and tells the viewers.
        result
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// One encoded H.264 frame for the local preview.
#[derive(Debug, Clone)]
pub struct PreviewPacket {
    /// Annex-B access unit.
    pub data: Vec<u8>,
    /// Whether it is an IDR.
    pub keyframe: bool,
}

struct Taps {
    controls: crossbeam_channel::Receiver<Control>,
    preview: Arc<std::sync::Mutex<Option<crossbeam_channel::Sender<PreviewPacket>>>>,
    live: Arc<LiveFigures>,
}

/// The encode chains the viewers (and the preview) need.
fn wanted_codecs(share: &Share, preview: bool) -> Codecs {
    let mut wanted: Codecs = share.codecs_in_use().iter().map(encode_codec).collect();
    // The preview decodes H.264; a live WHIP publish sends H.264 to a
    // server whose audience needs frames.
    if preview || share.publishing() {
        wanted.insert(Codec::H264);
    }
    wanted
}

fn fan_out(pipeline: &mut Pipeline, share: &Share, stop: &AtomicBool, taps: &Taps) -> Result<()> {
    let mut paused = true;
    let mut preview_needs_keyframe = true;
    // Each codec's bytes encoded at the start of the current one-second window.
    let mut window = (std::time::Instant::now(), [0u64; 3]);
    // What the pipeline was last told to run (its own start: the first encoder).
    let mut running: Option<Codecs> = None;
    while !stop.load(Ordering::Acquire) {
        let now = std::time::Instant::now();
        if now - window.0 >= Duration::from_secs(1) {
            let seconds = (now - window.0).as_secs_f64();
            for codec in Codec::ALL {
                let bytes = pipeline.stats.codec(codec).bytes.load(Ordering::Relaxed);
                let bps = bytes.saturating_sub(window.1[codec.index()]) as f64 * 8.0 / seconds;
                taps.live.actual_bps[codec.index()].store(bps as u64, Ordering::Relaxed);
                window.1[codec.index()] = bytes;
            }
            window.0 = now;
        }
        for command in taps.controls.try_iter() {
            pipeline.control(command);
        }
        let preview = taps.preview.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if preview.is_none() {
            preview_needs_keyframe = true;
        }
        let wanted = wanted_codecs(share, preview.is_some());
        if running != Some(wanted) {
            // New chains start at the bitrate congestion control has for them.
            for codec in wanted.iter().filter(|c| !running.is_some_and(|r| r.contains(*c))) {
                let bps = share.stats().target_bps_of(share_codec(codec));
                pipeline.control(Control::SetBitrate(codec, u32::try_from(bps).unwrap_or(u32::MAX)));
            }
            // Retried next time round if the control channel was full.
            if pipeline.control(Control::SetCodecs(wanted)) {
                running = Some(wanted);
            }
        }
        let watching = wanted != Codecs::NONE;
        if watching == paused {
            paused = !watching;
            pipeline.set_paused(paused);
            taps.live.encoding.store(!paused, Ordering::Relaxed);
        }
        if let Some(packet) = pipeline.recv_timeout(Duration::from_millis(50))? {
            share.send_encoded(share_codec(packet.codec), &packet.data, packet.keyframe, packet.captured_at);
            if let Some(tap) = &preview
                && packet.codec == Codec::H264
                && (packet.keyframe || !preview_needs_keyframe)
            {
                let copy = PreviewPacket { data: packet.data.to_vec(), keyframe: packet.keyframe };
                preview_needs_keyframe = tap.try_send(copy).is_err();
                if preview_needs_keyframe {
                    pipeline.control(Control::Keyframe(Codec::H264));
                }
            }
        }
        for request in share.encoder_requests().try_iter() {
            let control = match request {
                EncoderRequest::Keyframe(codec) => Control::Keyframe(encode_codec(codec)),
                EncoderRequest::SetBitrate(codec, bps) => Control::SetBitrate(encode_codec(codec), bps),
            };
            pipeline.control(control);
        }
    }
    Ok(())
}
