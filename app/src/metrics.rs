//! `peep share --metrics ADDR:PORT`: the pipeline's metrics beside the
//! share's (`peep_transport::metrics`) and the standard `process_*` ones,
//! served with a JSON `/stats` on their own listener.
//!
//! | metric | type | from |
//! |---|---|---|
//! | `peep_frames_captured_total` | counter | capture ticks that published a frame |
//! | `peep_frames_unchanged_total` | counter | capture ticks that found nothing changed |
//! | `peep_frames_encoded_total{codec}` | counter | frames the encoder produced |
//! | `peep_frames_dropped_total{reason}` | counter | `overwritten` in the ring, skipped by the encoder's `rate_control`, by the frame dropper for `budget` or `backlog` |
//! | `peep_encoded_bytes_total{codec}` | counter | encoded bytes |
//! | `peep_keyframes_encoded_total{codec}` | counter | IDRs produced |
//! | `peep_encode_seconds{codec}` | histogram | encode time per frame |
//! | `peep_capture_to_encoded_seconds` | histogram | capture to encoded frame ready |
//! | `peep_bitrate_actual_bps{codec}` | gauge | encoded bits per second over the last second |
//! | `peep_encoders_running{codec}` | gauge | 1 while that codec's encode chain runs (0 while nobody watches) |
//! | `peep_frame_rate` | gauge | frame rate in force (the governor's) |
//! | `peep_frame_rate_limited_by_link` | gauge | 1 when the link, not the setting, limits it |
//!
//! The share's own (viewers, RTT/loss, keyframes forced, pacer queues,
//! target bitrate…) are listed in `peep_transport::metrics::SHARE_METRICS`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::{Context as _, Result};
use peep_capture::driver::CaptureStats;
use peep_transport::metrics::{Def, Kind, MetricsServer, Scrape, descs};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use crate::session::{LiveFigures, Session};
use crate::stats::PipelineStats;
use peep_encode::Codec;

/// The pipeline's metrics (see the module docs).
pub const PIPELINE_METRICS: &[Def] = &[
    Def::new("peep_frames_captured_total", Kind::Counter, &[], "Capture ticks that published a frame"),
    Def::new("peep_frames_unchanged_total", Kind::Counter, &[], "Capture ticks that found nothing changed"),
    Def::new("peep_frames_encoded_total", Kind::Counter, &["codec"], "Frames the encoder produced"),
    Def::new(
        "peep_frames_dropped_total",
        Kind::Counter,
        &["reason"],
        "Captured frames not encoded: overwritten in the ring, skipped by the encoder's rate control, \
         or by the frame dropper for its budget or the send backlog",
    ),
    Def::new("peep_encoded_bytes_total", Kind::Counter, &["codec"], "Encoded bytes"),
    Def::new("peep_keyframes_encoded_total", Kind::Counter, &["codec"], "Keyframes (IDR) the encoder produced"),
    Def::new("peep_encode_seconds", Kind::Histogram, &["codec"], "Time to convert and encode one frame"),
    Def::new("peep_capture_to_encoded_seconds", Kind::Histogram, &[], "Capture to encoded frame ready"),
    Def::new("peep_bitrate_actual_bps", Kind::Gauge, &["codec"], "Encoded bits per second over the last second"),
    Def::new("peep_encoders_running", Kind::Gauge, &["codec"], "Encoders running (none while nobody watches)"),
    Def::new("peep_frame_rate", Kind::Gauge, &[], "Frame rate in force, frames per second"),
    Def::new(
        "peep_frame_rate_limited_by_link",
        Kind::Gauge,
        &[],
        "1 when the link, not the setting, limits the frame rate",
    ),
];

/// A codec as a metric label, as the share's metrics spell it: `h264`,
/// `vp8`, `vp9`.
fn codec_label(codec: Codec) -> &'static str {
    peep_transport::metrics::codec_label(crate::session::share_codec(codec))
}

fn def(name: &str) -> &'static Def {
    PIPELINE_METRICS.iter().find(|d| d.name == name).unwrap_or_else(|| panic!("metric {name} is not declared"))
}

/// Collects the pipeline's metrics at scrape time from its atomics.
pub struct PipelineMetrics {
    pipeline: Arc<PipelineStats>,
    capture: Arc<CaptureStats>,
    live: Arc<LiveFigures>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for PipelineMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineMetrics").finish_non_exhaustive()
    }
}

impl PipelineMetrics {
    /// A collector over these counters.
    pub fn new(pipeline: Arc<PipelineStats>, capture: Arc<CaptureStats>, live: Arc<LiveFigures>) -> Self {
        Self { pipeline, capture, live, descs: descs(PIPELINE_METRICS) }
    }

    /// Whether `codec`'s encode chain runs now (started, and someone watches).
    fn running(&self, codec: Codec) -> bool {
        self.live.encoding.load(Relaxed) && self.pipeline.codec(codec).active.load(Relaxed)
    }

    /// This scrape's samples.
    pub fn scrape(&self, out: &mut Scrape) {
        let (p, c) = (&self.pipeline, &self.capture);
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as f64;
        out.counter(def("peep_frames_captured_total"), &[], n(&c.frames_captured));
        out.counter(def("peep_frames_unchanged_total"), &[], n(&c.frames_unchanged));
        for (reason, counter) in [
            ("overwritten", &p.frames_dropped),
            ("rate_control", &p.frames_skipped_by_encoder),
            ("budget", &p.frames_skipped_budget),
            ("backlog", &p.frames_skipped_backlog),
        ] {
            out.counter(def("peep_frames_dropped_total"), &[reason], n(counter));
        }
        for codec in Codec::ALL {
            let (label, this) = (codec_label(codec), p.codec(codec));
            out.counter(def("peep_frames_encoded_total"), &[label], n(&this.frames_encoded));
            out.counter(def("peep_encoded_bytes_total"), &[label], n(&this.bytes));
            out.counter(def("peep_keyframes_encoded_total"), &[label], n(&this.keyframes));
            let h = &this.encode_time;
            out.histogram(
                def("peep_encode_seconds"),
                &[label],
                &h.cumulative_buckets(),
                h.count(),
                h.sum().as_secs_f64(),
            );
            out.gauge(def("peep_bitrate_actual_bps"), &[label], n(&self.live.actual_bps[codec.index()]));
            out.gauge(def("peep_encoders_running"), &[label], f64::from(u8::from(self.running(codec))));
        }
        let h = &p.capture_to_encoded;
        out.histogram(
            def("peep_capture_to_encoded_seconds"),
            &[],
            &h.cumulative_buckets(),
            h.count(),
            h.sum().as_secs_f64(),
        );
        out.gauge(def("peep_frame_rate"), &[], p.fps_x10.load(Relaxed) as f64 / 10.0);
        out.gauge(
            def("peep_frame_rate_limited_by_link"),
            &[],
            f64::from(u8::from(p.fps_limited_by_link.load(Relaxed))),
        );
    }

    /// The pipeline's figures as JSON (part of `/stats`).
    pub fn stats_json(&self) -> serde_json::Value {
        let (p, c) = (&self.pipeline, &self.capture);
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let codecs: serde_json::Map<String, serde_json::Value> = Codec::ALL
            .iter()
            .map(|&codec| {
                let this = p.codec(codec);
                let figures = serde_json::json!({
                    "running": self.running(codec),
                    "frames_encoded": this.frames_encoded.load(Relaxed),
                    "keyframes": this.keyframes.load(Relaxed),
                    "bytes": this.bytes.load(Relaxed),
                    "actual_bps": self.live.actual_bps[codec.index()].load(Relaxed),
                    "encode_ms_p50": ms(this.encode_time.quantile(0.5)),
                    "encode_ms_p95": ms(this.encode_time.quantile(0.95)),
                });
                (codec_label(codec).to_owned(), figures)
            })
            .collect();
        serde_json::json!({
            "codecs": codecs,
            "encoding": self.live.encoding.load(Relaxed),
            "frames_captured": c.frames_captured.load(Relaxed),
            "frames_unchanged": c.frames_unchanged.load(Relaxed),
            "frames_encoded": p.frames_encoded.load(Relaxed),
            "frames_dropped": p.frames_dropped.load(Relaxed),
            "frames_skipped_by_encoder": p.frames_skipped_by_encoder.load(Relaxed),
            "frames_skipped_budget": p.frames_skipped_budget.load(Relaxed),
            "frames_skipped_backlog": p.frames_skipped_backlog.load(Relaxed),
            "keyframes": p.keyframes.load(Relaxed),
            "bytes": p.bytes.load(Relaxed),
            "fps": p.fps_x10.load(Relaxed) as f64 / 10.0,
            "fps_limited_by_link": p.fps_limited_by_link.load(Relaxed),
            "encode_ms_p50": ms(p.encode_time.quantile(0.5)),
            "capture_to_encoded_ms_p50": ms(p.capture_to_encoded.quantile(0.5)),
        })
    }
}

impl Collector for PipelineMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Scrape::new();
        self.scrape(&mut out);
        out.finish()
    }
}

/// The registry of a sharing session: the share's and the pipeline's
/// collectors, and the process collector (RSS, open fds, threads, CPU) on
/// Linux.
pub fn registry(session: &Session) -> Result<prometheus::Registry> {
    let registry = prometheus::Registry::new();
    registry.register(Box::new(session.share().metrics())).context("registering the share's metrics")?;
    registry.register(Box::new(session.pipeline_metrics())).context("registering the pipeline's metrics")?;
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
        .context("registering the process metrics")?;
    Ok(registry)
}

/// Serves `/metrics` and `/stats` of `session` on `addr` (its own
/// listener; never the viewers' port). Holds counters only: the share
/// still ends when the session stops.
pub fn serve(session: &Session, addr: SocketAddr) -> Result<MetricsServer> {
    let viewers = session.share().local_addr();
    if addr.port() != 0
        && addr.port() == viewers.port()
        && (addr.ip() == viewers.ip() || addr.ip().is_unspecified() || viewers.ip().is_unspecified())
    {
        anyhow::bail!("--metrics {addr}: that is the viewers' port; metrics need a listener of their own");
    }
    let registry = registry(session)?;
    let (share, pipeline) = (session.share().metrics(), session.pipeline_metrics());
    let stats = Box::new(move || serde_json::json!({ "share": share.stats_json(), "pipeline": pipeline.stats_json() }));
    Ok(MetricsServer::start(addr, registry, stats)?)
}
