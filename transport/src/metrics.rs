//! Metrics for operators: Prometheus text at `/metrics` and a JSON `/stats`
//! on a listener of their own ([`MetricsServer`]), never the viewers' port —
//! the figures reveal when and how much someone shares.
//!
//! Nothing is counted twice: the collectors read the atomics the share, the
//! viewers and the pipeline already keep, when Prometheus scrapes
//! ([`ShareMetrics`] here, the pipeline's in the app). [`Scrape`] turns
//! those readings into metric families of the `prometheus` crate, whose
//! `TextEncoder` writes the exposition format. Every metric is declared
//! once in a [`Def`] table (name, help, type, labels): the descriptors the
//! registry checks come from it, and a collector cannot emit what it did
//! not declare (debug builds assert).
//!
//! Secrets never appear: no metric or label carries the link token, the
//! password, a WHIP URL or token, or a viewer's session id
//! (`tests/secrets.rs` scrapes both endpoints and checks).
//!
//! ```no_run
//! use peep_transport::metrics::MetricsServer;
//! use peep_transport::{Share, ShareConfig};
//!
//! let share = std::sync::Arc::new(Share::start(ShareConfig { port: 0, ..ShareConfig::default() })?);
//! let registry = prometheus::Registry::new();
//! registry.register(Box::new(share.metrics())).expect("unique metric names");
//! let stats = share.clone();
//! let server = MetricsServer::start("127.0.0.1:9100".parse().unwrap(), registry, Box::new(move || stats.stats_json()))?;
//! println!("metrics at http://{}/metrics", server.local_addr());
//! # Ok::<(), peep_transport::TransportError>(())
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use crate::codecs::VideoCodec;
use crate::error::{Result, TransportError};
use crate::hub::{Shared, lock};
use crate::viewer::{ViewerState, ViewerStats};

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Quantiles over a set of values (here: over the current viewers).
    Summary,
    /// Cumulative buckets.
    Histogram,
}

/// One metric's declaration.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    /// Full name, `peep_…`.
    pub name: &'static str,
    /// What it measures, with its unit.
    pub help: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its label names (values are given per sample).
    pub labels: &'static [&'static str],
}

impl Def {
    /// A declaration (for the tables of collectors).
    pub const fn new(name: &'static str, kind: Kind, labels: &'static [&'static str], help: &'static str) -> Self {
        Self { name, help, kind, labels }
    }
}

/// Registry descriptors of a table of [`Def`]s.
///
/// # Panics
/// On an invalid metric or label name (a bug in the table, caught by the
/// collectors' unit tests).
pub fn descs(defs: &[Def]) -> Vec<Desc> {
    defs.iter()
        .map(|d| {
            Desc::new(
                d.name.to_owned(),
                d.help.to_owned(),
                d.labels.iter().map(|l| (*l).to_owned()).collect(),
                Default::default(),
            )
            .expect("metric names and labels in the tables are valid")
        })
        .collect()
}

/// The metric families of one scrape, built sample by sample.
#[derive(Debug, Default)]
pub struct Scrape {
    families: Vec<MetricFamily>,
}

/// Quantiles every summary reports.
pub const SUMMARY_QUANTILES: [f64; 3] = [0.5, 0.9, 1.0];

impl Scrape {
    /// An empty scrape.
    pub fn new() -> Self {
        Self::default()
    }

    /// The families collected.
    pub fn finish(self) -> Vec<MetricFamily> {
        self.families
    }

    fn push(&mut self, def: &Def, labels: &[&str], metric: impl FnOnce(&mut proto::Metric)) {
        debug_assert_eq!(labels.len(), def.labels.len(), "{}: label values for {:?}", def.name, def.labels);
        let at = match self.families.iter().position(|f| f.name() == def.name) {
            Some(at) => at,
            None => {
                let mut family = MetricFamily::default();
                family.set_name(def.name.to_owned());
                family.set_help(def.help.to_owned());
                family.set_field_type(match def.kind {
                    Kind::Counter => MetricType::COUNTER,
                    Kind::Gauge => MetricType::GAUGE,
                    Kind::Summary => MetricType::SUMMARY,
                    Kind::Histogram => MetricType::HISTOGRAM,
                });
                self.families.push(family);
                self.families.len() - 1
            }
        };
        let mut m = proto::Metric::default();
        // Labels sorted by name, as Prometheus' own clients write them.
        let mut pairs: Vec<proto::LabelPair> = def
            .labels
            .iter()
            .zip(labels)
            .map(|(name, value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect();
        pairs.sort_by(|a, b| a.name().cmp(b.name()));
        m.set_label(pairs);
        metric(&mut m);
        self.families[at].mut_metric().push(m);
    }

    /// A counter sample.
    pub fn counter(&mut self, def: &Def, labels: &[&str], value: f64) {
        debug_assert_eq!(def.kind, Kind::Counter, "{}", def.name);
        self.push(def, labels, |m| {
            let mut c = proto::Counter::default();
            c.set_value(value);
            m.set_counter(c);
        });
    }

    /// A gauge sample.
    pub fn gauge(&mut self, def: &Def, labels: &[&str], value: f64) {
        debug_assert_eq!(def.kind, Kind::Gauge, "{}", def.name);
        self.push(def, labels, |m| {
            let mut g = proto::Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        });
    }

    /// A summary of `values` (sorted in place): [`SUMMARY_QUANTILES`]
    /// (nearest rank; 1.0 is the largest), count and sum. No values: count 0
    /// and NaN quantiles, as Prometheus expects.
    pub fn summary(&mut self, def: &Def, labels: &[&str], values: &mut [f64]) {
        debug_assert_eq!(def.kind, Kind::Summary, "{}", def.name);
        values.sort_by(f64::total_cmp);
        let n = values.len();
        self.push(def, labels, |m| {
            let mut s = proto::Summary::default();
            s.set_sample_count(n as u64);
            s.set_sample_sum(values.iter().sum());
            s.set_quantile(
                SUMMARY_QUANTILES
                    .iter()
                    .map(|&q| {
                        let mut quantile = proto::Quantile::default();
                        quantile.set_quantile(q);
                        let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
                        quantile.set_value(values.get(rank - 1).copied().unwrap_or(f64::NAN));
                        quantile
                    })
                    .collect(),
            );
            m.set_summary(s);
        });
    }

    /// A histogram: `(upper bound, cumulative count)` per bucket (the
    /// `+Inf` bucket is implied by `count`), the count and the sum.
    pub fn histogram(&mut self, def: &Def, labels: &[&str], buckets: &[(f64, u64)], count: u64, sum: f64) {
        debug_assert_eq!(def.kind, Kind::Histogram, "{}", def.name);
        self.push(def, labels, |m| {
            let mut h = proto::Histogram::default();
            h.set_sample_count(count);
            h.set_sample_sum(sum);
            h.set_bucket(
                buckets
                    .iter()
                    .map(|&(upper, cumulative)| {
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(upper);
                        b.set_cumulative_count(cumulative);
                        b
                    })
                    .collect(),
            );
            m.set_histogram(h);
        });
    }
}

/// The share's metrics (see [`SHARE_METRICS`]).
pub const SHARE_METRICS: &[Def] = &[
    Def::new("peep_viewers", Kind::Gauge, &["state", "path"], "Viewers by connection state and media path"),
    Def::new("peep_viewers_joined_total", Kind::Counter, &[], "Viewers whose offer was answered"),
    Def::new("peep_viewers_left_total", Kind::Counter, &[], "Viewers that left with a WHEP DELETE"),
    Def::new(
        "peep_offers_refused_total",
        Kind::Counter,
        &[],
        "WHEP offers refused (wrong link, password, full, malformed)",
    ),
    Def::new("peep_passwords_wrong_total", Kind::Counter, &[], "Offers with a wrong password"),
    Def::new(
        "peep_passwords_throttled_total",
        Kind::Counter,
        &[],
        "Offers refused with 429 because their address guessed wrong too often",
    ),
    Def::new("peep_frames_sent_total", Kind::Counter, &[], "Encoded frames handed to the share for its viewers"),
    Def::new(
        "peep_keyframe_requests_total",
        Kind::Counter,
        &["reason"],
        "Keyframe requests before coalescing (viewer = PLI, FIR or a join; recovery = after drops or a lost path)",
    ),
    Def::new("peep_keyframes_forced_total", Kind::Counter, &[], "Keyframes asked of the encoder after coalescing"),
    Def::new(
        "peep_bitrate_target_bps",
        Kind::Gauge,
        &["codec"],
        "Bitrate congestion control asks of each codec's encoder, bits per second",
    ),
    Def::new(
        "peep_send_backlog_seconds",
        Kind::Gauge,
        &["codec"],
        "Send backlog each codec's frame dropper watches (the longest governing send queue of its viewers)",
    ),
    Def::new("peep_viewer_rtt_seconds", Kind::Summary, &[], "Round-trip time of the connected viewers (RTCP)"),
    Def::new(
        "peep_viewer_loss_ratio",
        Kind::Summary,
        &[],
        "Fraction of packets lost in the last receiver report, over the connected viewers",
    ),
    Def::new(
        "peep_viewer_estimate_bps",
        Kind::Summary,
        &[],
        "Bandwidth estimates of the connected viewers, bits per second",
    ),
    Def::new(
        "peep_pacer_queue_seconds",
        Kind::Summary,
        &[],
        "Time each connected viewer's send queue takes to drain at its pacing rate",
    ),
    Def::new(
        "peep_viewers_in_outage",
        Kind::Gauge,
        &[],
        "Connected viewers whose transport feedback stopped (path gone or vanished)",
    ),
    Def::new("peep_whip_publish", Kind::Gauge, &["state"], "WHIP publish to a media server: 1 for its current state"),
    Def::new("peep_whip_sent_bytes_total", Kind::Counter, &[], "Encoded bytes sent to the WHIP server"),
    Def::new("peep_whip_publishes_total", Kind::Counter, &[], "Successful WHIP POSTs (1 + re-publishes)"),
    Def::new("peep_tokio_tasks", Kind::Gauge, &["runtime"], "Alive tasks of a tokio runtime"),
];

fn def(table: &'static [Def], name: &str) -> &'static Def {
    table.iter().find(|d| d.name == name).unwrap_or_else(|| panic!("metric {name} is not declared"))
}

/// How a viewer's media travels. The share offers no TURN server today, so
/// every viewer is direct.
fn path_of(_stats: &ViewerStats) -> &'static str {
    "direct"
}

/// A codec as a metric label: `h264`, `vp8`, `vp9`.
pub fn codec_label(codec: VideoCodec) -> &'static str {
    match codec {
        VideoCodec::H264 => "h264",
        VideoCodec::Vp8 => "vp8",
        VideoCodec::Vp9 => "vp9",
    }
}

/// Collects the share's metrics (see [`SHARE_METRICS`]) at scrape time.
pub struct ShareMetrics {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    publish: Arc<dyn Fn() -> Option<crate::PublishSnapshot> + Send + Sync>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for ShareMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareMetrics").finish_non_exhaustive()
    }
}

impl ShareMetrics {
    pub(crate) fn new(
        shared: Arc<Shared>,
        runtime: tokio::runtime::Handle,
        publish: Arc<dyn Fn() -> Option<crate::PublishSnapshot> + Send + Sync>,
    ) -> Self {
        Self { shared, runtime, publish, descs: descs(SHARE_METRICS) }
    }

    /// The share's figures as JSON (see [`crate::Share::stats_json`]).
    pub fn stats_json(&self) -> serde_json::Value {
        let s = &self.shared.stats;
        let viewers: Vec<serde_json::Value> = self
            .shared
            .snapshots()
            .into_iter()
            .map(|v| {
                let mut json = serde_json::to_value(v).unwrap_or_default();
                if let Some(o) = json.as_object_mut() {
                    o.remove("id");
                }
                json
            })
            .collect();
        let publish = (self.publish)().map(|p| {
            serde_json::json!({
                "state": p.state.word(),
                "server": p.server,
                "publishes": p.publishes,
                "bytes_sent": p.bytes_sent,
                "rtt_ms": p.rtt.map(|r| r.as_secs_f64() * 1e3),
                "estimate_bps": p.estimate_bps,
            })
        });
        serde_json::json!({
            "frames_sent": s.frames_in.load(Relaxed),
            "keyframe_requests": s.keyframe_requests.load(Relaxed),
            "keyframes_forced": s.keyframes_forced.load(Relaxed),
            "target_bps": s.target_bps.load(Relaxed),
            "codecs": VideoCodec::ALL.iter().map(|&c| (codec_label(c).to_owned(), serde_json::json!({
                "target_bps": s.target_bps_of(c),
                "send_backlog_ms": self.shared.backlogs[c.index()].get().as_secs_f64() * 1e3,
            }))).collect::<serde_json::Map<_, _>>(),
            "viewers_joined": s.viewers_joined.load(Relaxed),
            "viewers_left": s.sessions_deleted.load(Relaxed),
            "offers_refused": s.offers_refused.load(Relaxed),
            "tasks_alive": self.runtime.metrics().num_alive_tasks(),
            "viewers": viewers,
            "publish": publish,
        })
    }

    /// This scrape's families.
    pub fn scrape(&self, out: &mut Scrape) {
        let m = |name| def(SHARE_METRICS, name);
        let s = &self.shared.stats;
        let count = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as f64;
        let viewers: Vec<_> = lock(&self.shared.viewers).values().map(|v| v.stats.clone()).collect();
        for state in [ViewerState::Connecting, ViewerState::Connected, ViewerState::Disconnected] {
            for path in ["direct", "relay"] {
                let n = viewers.iter().filter(|v| v.state() == state && path_of(v) == path).count();
                let word = match state {
                    ViewerState::Connecting => "connecting",
                    ViewerState::Connected => "connected",
                    ViewerState::Disconnected => "disconnected",
                    ViewerState::Closed => "closed",
                };
                out.gauge(m("peep_viewers"), &[word, path], n as f64);
            }
        }
        out.counter(m("peep_viewers_joined_total"), &[], count(&s.viewers_joined));
        out.counter(m("peep_viewers_left_total"), &[], count(&s.sessions_deleted));
        out.counter(m("peep_offers_refused_total"), &[], count(&s.offers_refused));
        out.counter(m("peep_passwords_wrong_total"), &[], count(&s.passwords_wrong));
        out.counter(m("peep_passwords_throttled_total"), &[], count(&s.passwords_throttled));
        out.counter(m("peep_frames_sent_total"), &[], count(&s.frames_in));
        let (requests, recovery) = (s.keyframe_requests.load(Relaxed), s.recovery_requests.load(Relaxed));
        out.counter(m("peep_keyframe_requests_total"), &["viewer"], requests.saturating_sub(recovery) as f64);
        out.counter(m("peep_keyframe_requests_total"), &["recovery"], recovery as f64);
        out.counter(m("peep_keyframes_forced_total"), &[], count(&s.keyframes_forced));
        for codec in VideoCodec::ALL {
            let label = codec_label(codec);
            out.gauge(m("peep_bitrate_target_bps"), &[label], s.target_bps_of(codec) as f64);
            let backlog = self.shared.backlogs[codec.index()].get();
            out.gauge(m("peep_send_backlog_seconds"), &[label], backlog.as_secs_f64());
        }
        let connected: Vec<_> = viewers.iter().filter(|v| v.state() == ViewerState::Connected).collect();
        let mut rtt: Vec<f64> =
            connected.iter().map(|v| v.rtt_us.load(Relaxed)).filter(|&us| us > 0).map(|us| us as f64 / 1e6).collect();
        out.summary(m("peep_viewer_rtt_seconds"), &[], &mut rtt);
        let mut loss: Vec<f64> =
            connected.iter().map(|v| f64::from(v.fraction_lost_256.load(Relaxed)) / 256.0).collect();
        out.summary(m("peep_viewer_loss_ratio"), &[], &mut loss);
        let mut estimate: Vec<f64> = connected.iter().map(|v| v.estimate_bps.load(Relaxed) as f64).collect();
        out.summary(m("peep_viewer_estimate_bps"), &[], &mut estimate);
        let mut queue: Vec<f64> = connected.iter().map(|v| v.pacer_queue().as_secs_f64()).collect();
        out.summary(m("peep_pacer_queue_seconds"), &[], &mut queue);
        let outage = connected.iter().filter(|v| v.in_outage.load(Relaxed)).count();
        out.gauge(m("peep_viewers_in_outage"), &[], outage as f64);
        if let Some(p) = (self.publish)() {
            for state in crate::PublishState::ALL {
                out.gauge(m("peep_whip_publish"), &[state.word()], f64::from(u8::from(p.state == state)));
            }
            out.counter(m("peep_whip_sent_bytes_total"), &[], p.bytes_sent as f64);
            out.counter(m("peep_whip_publishes_total"), &[], p.publishes as f64);
        }
        out.gauge(m("peep_tokio_tasks"), &["share"], self.runtime.metrics().num_alive_tasks() as f64);
    }
}

impl Collector for ShareMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Scrape::new();
        self.scrape(&mut out);
        out.finish()
    }
}

/// Produces the JSON of `/stats`.
pub type StatsFn = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

struct Exporter {
    registry: prometheus::Registry,
    stats: StatsFn,
}

/// The metrics listener: `GET /metrics` (Prometheus text format 0.0.4)
/// and `GET /stats` (JSON) on their own address, served by one thread
/// (`peep-metrics`) with its own single-threaded runtime, so a busy share
/// never delays a scrape and a flood of scrapes never delays the viewers.
/// Anything else is 404. Stops when dropped.
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `addr` and serves `registry` and `stats` until dropped.
    ///
    /// # Errors
    /// The address cannot be bound, or the thread cannot start.
    pub fn start(addr: SocketAddr, registry: prometheus::Registry, stats: StatsFn) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TransportError::Runtime(e.to_string()))?;
        let bind_err = |e: std::io::Error| TransportError::Bind { addr, reason: format!("metrics: {e}") };
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr)).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/stats", get(stats_json))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found: /metrics or /stats\n") })
            .with_state(Arc::new(Exporter { registry, stats }));
        let thread = std::thread::Builder::new()
            .name("peep-metrics".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::warn!("metrics server stopped: {e}");
                    }
                });
                // Scrapers still connected do not hold up shutdown.
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .map_err(|e| TransportError::Runtime(e.to_string()))?;
        Ok(Self { local_addr, stop: Some(stop), thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder as _;
    let mut out = Vec::new();
    // Encoding a well-formed family into a Vec cannot fail; a malformed
    // one (a collector bug) yields the families before it.
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!("encoding metrics: {e}");
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn metrics(State(exporter): State<Arc<Exporter>>) -> Response {
    let body = render(&exporter.registry);
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(prometheus::TEXT_FORMAT));
    r
}

async fn stats_json(State(exporter): State<Arc<Exporter>>) -> Response {
    let body = (exporter.stats)().to_string();
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_share_metric_is_declared_once_with_the_prefix() {
        let descs = descs(SHARE_METRICS);
        assert_eq!(descs.len(), SHARE_METRICS.len());
        for (i, d) in SHARE_METRICS.iter().enumerate() {
            assert!(d.name.starts_with("peep_"), "{}", d.name);
            assert_eq!(d.kind == Kind::Counter, d.name.ends_with("_total"), "{}: counters end in _total", d.name);
            assert!(SHARE_METRICS[..i].iter().all(|o| o.name != d.name), "{} declared twice", d.name);
        }
    }

    #[test]
    fn summaries_give_nearest_rank_quantiles_count_and_sum() {
        const D: Def = Def::new("peep_test_seconds", Kind::Summary, &[], "test");
        let mut out = Scrape::new();
        let mut values: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        out.summary(&D, &[], &mut values);
        out.summary(&D, &[], &mut []);
        let families = out.finish();
        let metrics = families[0].get_metric();
        let s = metrics[0].get_summary();
        assert_eq!((s.sample_count(), s.sample_sum()), (10, 55.0));
        let q: Vec<f64> = s.get_quantile().iter().map(|q| q.value()).collect();
        assert_eq!(q, [5.0, 9.0, 10.0]);
        let empty = metrics[1].get_summary();
        assert_eq!(empty.sample_count(), 0);
        assert!(empty.get_quantile().iter().all(|q| q.value().is_nan()));
    }

    #[test]
    fn histograms_render_cumulative_buckets_in_the_text_format() {
        const D: Def = Def::new("peep_test_seconds", Kind::Histogram, &["codec"], "test");
        struct One;
        impl Collector for One {
            fn desc(&self) -> Vec<&Desc> {
                Vec::new()
            }
            fn collect(&self) -> Vec<MetricFamily> {
                let mut out = Scrape::new();
                out.histogram(&D, &["h264"], &[(0.001, 1), (0.01, 3)], 4, 0.5);
                out.finish()
            }
        }
        let registry = prometheus::Registry::new();
        registry.register(Box::new(One)).expect("register");
        let text = render(&registry);
        for line in [
            "# TYPE peep_test_seconds histogram",
            "peep_test_seconds_bucket{codec=\"h264\",le=\"0.001\"} 1",
            "peep_test_seconds_bucket{codec=\"h264\",le=\"0.01\"} 3",
            "peep_test_seconds_bucket{codec=\"h264\",le=\"+Inf\"} 4",
            "peep_test_seconds_sum{codec=\"h264\"} 0.5",
            "peep_test_seconds_count{codec=\"h264\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
