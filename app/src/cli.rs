//! Command-line interface.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use peep_capture::platform::PlatformSession;
use peep_encode::{Codec, OpenH264Config, OpenH264Encoder};

use crate::pipeline::{Pipeline, PipelineConfig};
use crate::sources::{Backend, OpenRequest};

#[derive(Debug, Parser)]
#[command(name = "peep", version, about = "Share your screen to a browser link")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log format on stderr: `text`, or `json` (one object per line, for
    /// log collectors). `PEEP_LOG` sets the level (e.g. `debug`).
    #[arg(long, global = true, env = "PEEP_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List displays and windows that can be shared.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Capture backend: x11, or portal (Wayland). Default: portal on a
        /// Wayland session, else x11.
        #[arg(long, value_enum)]
        backend: Option<Backend>,
    },
    /// Capture and encode to an H.264 (Annex-B) file or stdout.
    Record(RecordArgs),
    /// Share to a browser link until Ctrl-C.
    Share(ShareArgs),
    /// Run a relay so people can share over the internet.
    #[command(long_about = crate::relay::ABOUT, after_long_help = crate::relay::DEPLOY)]
    Relay(crate::relay::RelayArgs),
    /// Show synthetic content in a window (for benchmarks and demos).
    #[command(hide = true)]
    DemoWindow {
        /// Scene: static, typing, scrolling or moving.
        #[arg(long, default_value = "moving")]
        scene: String,
        /// Frames per second.
        #[arg(long, default_value_t = 30.0)]
        fps: f32,
        /// Stop after this many seconds (0: run until killed).
        #[arg(long, default_value_t = 0.0)]
        seconds: f64,
        /// Switch to this scene after `--after` seconds (a full-screen
        /// change); prints `switch UNIX_MS` on stdout when drawn.
        #[arg(long, requires = "after")]
        then: Option<String>,
        /// Seconds before switching to `--then`.
        #[arg(long)]
        after: Option<f64>,
    },
}

#[derive(Debug, clap::Parser)]
struct ShareArgs {
    /// Source id from `peep list` (`screen`, `monitor:NAME`, `window:0xID`,
    /// `portal`, `synthetic[:SCENE]`). Defaults to the primary display; on
    /// Wayland to `portal` (the desktop's dialog chooses).
    #[arg(long)]
    source: Option<String>,
    /// Capture backend: x11, or portal (Wayland's ScreenCast portal).
    /// Default: portal on a Wayland session, else x11.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Frames per second.
    #[arg(long, default_value_t = 30.0)]
    fps: f32,
    /// Highest bitrate, e.g. 4M (congestion control may go down to a quarter of it).
    #[arg(long, value_parser = parse_bitrate, conflicts_with = "quality")]
    bitrate: Option<u32>,
    /// Quality preset: low, balanced, sharp or max.
    #[arg(long)]
    quality: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: std::net::IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Viewers must enter this password.
    #[arg(long, env = "PEEP_PASSWORD", hide_env_values = true, value_parser = parse_secret)]
    password: Option<peep_transport::Secret>,
    /// Most viewers at once.
    #[arg(long, default_value_t = 16)]
    max_viewers: usize,
    /// Host name or address to put in the printed link (default: this machine's LAN address).
    #[arg(long)]
    public_host: Option<String>,
    /// Size of the synthetic source.
    #[arg(long, default_value = "1920x1080", value_parser = parse_size)]
    size: (u32, u32),
    /// Do not draw the mouse cursor.
    #[arg(long)]
    no_cursor: bool,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    seconds: Option<f64>,
    /// Share over the internet through this relay (`peep relay`), e.g.
    /// https://relay.example.org: the printed link is the relay's.
    #[arg(long, env = "PEEP_RELAY")]
    relay: Option<String>,
    /// Trust this CA certificate (PEM) for the relay's HTTPS.
    #[arg(long, requires = "relay")]
    relay_ca: Option<PathBuf>,
    /// Ask to join: each viewer waits until you let it in (type `a N` while sharing).
    #[arg(long)]
    admit: bool,
    /// Print one JSON line of statistics (sender, encoder, every viewer) to
    /// stdout every 200 ms, for the network lab's scenarios.
    #[arg(long, hide = true)]
    stats_json: bool,
    /// Also publish to this WHIP endpoint (Janus, LiveKit ingress, mediamtx,
    /// OvenMediaEngine, Cloudflare Stream…) for audiences beyond a few
    /// viewers; local viewers keep watching as usual. The URL may carry a
    /// stream key: only its host is ever printed.
    #[arg(long, value_name = "URL", env = "PEEP_WHIP_URL", hide_env_values = true, value_parser = parse_secret)]
    whip: Option<peep_transport::Secret>,
    /// Bearer token for the WHIP endpoint.
    #[arg(long, value_name = "TOKEN", env = "PEEP_WHIP_TOKEN", hide_env_values = true, value_parser = parse_secret, requires = "whip")]
    whip_token: Option<peep_transport::Secret>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics and JSON at
    /// /stats, on a listener of their own (they reveal activity: bind it to
    /// loopback or a monitoring network, never the viewers' port).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Video codecs to offer viewers, best first (each viewer gets the
    /// first its browser plays): h264, vp9, vp8.
    #[arg(long, default_value = "h264,vp9,vp8", value_parser = parse_codecs)]
    codecs: CodecList,
}

/// `--codecs`: one argument naming several codecs (clap would read a `Vec`
/// as repeated arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CodecList(Vec<peep_transport::VideoCodec>);

#[derive(Debug, clap::Args)]
struct RecordArgs {
    /// Source id from `peep list` (`screen`, `monitor:NAME`, `window:0xID`,
    /// `portal`, `synthetic[:SCENE]`). Defaults to the primary display; on
    /// Wayland to `portal` (the desktop's dialog chooses).
    #[arg(long)]
    source: Option<String>,
    /// Capture backend: x11, or portal (Wayland's ScreenCast portal).
    /// Default: portal on a Wayland session, else x11.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Seconds to record.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Frames per second.
    #[arg(long, default_value_t = 30.0)]
    fps: f32,
    /// Target bitrate, e.g. 2500000, 2500k or 2.5M.
    #[arg(long, default_value = "2.5M", value_parser = parse_bitrate)]
    bitrate: u32,
    /// Output file, or `-` for stdout (flushed after every frame).
    #[arg(long)]
    out: PathBuf,
    /// Size of the synthetic source.
    #[arg(long, default_value = "1920x1080", value_parser = parse_size)]
    size: (u32, u32),
    /// Do not draw the mouse cursor.
    #[arg(long)]
    no_cursor: bool,
}

/// Parses `2500000`, `2500k`, `2.5M` (bits per second).
pub fn parse_bitrate(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        _ => (t, 1.0),
    };
    let value =
        number.parse::<f64>().map_err(|_| format!("bitrate {text:?}: expected e.g. 2500000, 2500k or 2.5M"))? * scale;
    if !(10_000.0..=100e6).contains(&value) {
        return Err(format!("bitrate {text:?} is outside 10k–100M"));
    }
    Ok(value as u32)
}

/// Wraps a secret argument so `Debug` of the parsed arguments hides it.
fn parse_secret(text: &str) -> Result<peep_transport::Secret, String> {
    Ok(peep_transport::Secret::from(text))
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let err = || format!("size {text:?}: expected WIDTHxHEIGHT, e.g. 1920x1080");
    let (w, h) = text.split_once('x').ok_or_else(err)?;
    let (w, h) = (w.parse().map_err(|_| err())?, h.parse().map_err(|_| err())?);
    if w == 0 || h == 0 || w > 3840 || h > 3840 {
        return Err(format!("size {text:?} must be between 1x1 and 3840x3840"));
    }
    Ok((w, h))
}

/// Logs to stderr, as text or one JSON object per line. The level comes
/// from `PEEP_LOG` (default: warnings, with the WebRTC stack's internals
/// off — Peep reports what matters in its own words; zbus warns about every
/// portal request object it cannot cache), and whatever it asks for, the
/// relay's WebSocket frames are never logged ([`crate::relay::log_filter`]).
pub fn init_logging(json: bool) {
    let wanted = std::env::var("PEEP_LOG").unwrap_or_else(|_| {
        "warn,webrtc=off,rtc=off,rtc_ice=off,rtc_interceptor=off,rtc_dtls=off,rtc_srtp=off,rtc_sctp=off,zbus=error"
            .into()
    });
    let filter = tracing_subscriber::EnvFilter::try_new(crate::relay::log_filter(&wanted))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(peep_transport::relay::LOG_REDACTIONS));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second initialisation (tests calling `run` twice) keeps the first.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Parses the command line and runs the command.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format == "json");
    match cli.command {
        Some(Command::List { json, backend }) => list(json, backend.unwrap_or_else(Backend::detect)),
        Some(Command::Record(args)) => record(args),
        Some(Command::Share(args)) => share(args),
        Some(Command::Relay(args)) => crate::relay::run(args),
        #[cfg(target_os = "linux")]
        Some(Command::DemoWindow { scene, fps, seconds, then, after }) => {
            demo_window(&scene, fps, seconds, then.as_deref().zip(after))
        }
        #[cfg(not(target_os = "linux"))]
        Some(Command::DemoWindow { .. }) => bail!("demo-window needs X11"),
        None if crate::gui::display_available() => crate::gui::run(),
        None => {
            eprintln!(
                "peep: no display (DISPLAY and WAYLAND_DISPLAY are unset), so no window: sharing the synthetic \
                 test screen headless. To share headless yourself, run `peep share` (see `peep share --help`)."
            );
            share(ShareArgs::parse_from(["share", "--source", "synthetic"]))
        }
    }
}

fn list(json: bool, backend: Backend) -> Result<()> {
    let sources = match backend {
        Backend::X11 => PlatformSession::connect()?.list_sources()?,
        Backend::Portal => vec![portal_source()],
    };
    let mut out = std::io::stdout().lock();
    if backend == Backend::Portal && !json {
        writeln!(
            out,
            "On Wayland the desktop's own dialog chooses the screen or window to share (Peep cannot list them): \
             share `portal`. `--backend x11` lists what XWayland sees."
        )?;
    }
    if json {
        serde_json::to_writer_pretty(&mut out, &sources)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "{:<22} {:<8} {:>11} {:>11}  NAME", "ID", "KIND", "SIZE", "POSITION")?;
    for s in &sources {
        let kind = format!("{:?}", s.kind).to_lowercase();
        let name = match &s.app {
            Some(app) => format!("{} ({app})", s.name),
            None if s.primary && s.id != "portal" => format!("{} (primary)", s.name),
            None => s.name.clone(),
        };
        writeln!(
            out,
            "{:<22} {:<8} {:>11} {:>11}  {name}",
            s.id,
            kind,
            if s.width == 0 { "-".into() } else { format!("{}x{}", s.width, s.height) },
            if s.width == 0 { "-".into() } else { format!("{},{}", s.x, s.y) }
        )?;
    }
    writeln!(
        out,
        "{:<22} {:<8} {:>11} {:>11}  Test pattern (scenes: static, typing, scrolling, moving)",
        "synthetic", "test", "any", "-"
    )?;
    Ok(())
}

/// The one source a Wayland session offers: whatever the portal's dialog picks.
fn portal_source() -> peep_capture::SourceInfo {
    peep_capture::SourceInfo {
        id: peep_capture::SourceId::Portal.to_string(),
        kind: peep_capture::SourceKind::Display,
        name: "Chosen in the desktop's dialog".into(),
        app: None,
        x: 0,
        y: 0,
        width: 0,
        height: 0,
        primary: true,
    }
}

fn record(args: RecordArgs) -> Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be positive");
    }
    if !(args.fps > 0.0 && args.fps <= 240.0) {
        bail!("--fps must be between 0 and 240");
    }
    let backend = crate::sources::open_source(OpenRequest {
        source: args.source.as_deref(),
        backend: args.backend,
        synthetic_size: args.size,
        cursor: !args.no_cursor,
    })?;
    let description = backend.describe();
    let to_stdout = args.out.as_os_str() == "-";
    let mut sink: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?)
    };
    let encoder =
        OpenH264Encoder::new(OpenH264Config { bitrate_bps: args.bitrate, fps: args.fps, ..OpenH264Config::default() })?;
    let mut pipeline =
        Pipeline::start(backend, Box::new(encoder), PipelineConfig { fps: args.fps, ..PipelineConfig::default() })?;
    eprintln!("peep: recording {description} for {}s at {} fps, {} kbps", args.seconds, args.fps, args.bitrate / 1000);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let mut written = 0u64;
    let mut result = Ok(());
    while Instant::now() < deadline {
        let packet = match pipeline.recv_timeout((deadline - Instant::now()).min(Duration::from_millis(200))) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let write = sink.write_all(&packet.data).and_then(|()| sink.flush());
        match write {
            Ok(()) => written += packet.data.len() as u64,
            // The reader went away (e.g. ffplay closed): a normal end.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => {
                let target = if to_stdout { "stdout".into() } else { args.out.display().to_string() };
                result = Err(anyhow::Error::new(e).context(format!("writing {target}")));
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    let stop = pipeline_summary(&pipeline, elapsed, written);
    let ended = pipeline.stop();
    eprintln!("{stop}");
    result.and(ended)
}

fn share(args: ShareArgs) -> Result<()> {
    use peep_transport::ShareConfig;
    use std::sync::atomic::Ordering::Relaxed;

    use crate::presets;
    use crate::session::Session;

    let (range, max_height) = match (args.bitrate, args.quality.as_deref()) {
        (Some(bps), _) => (presets::range_for_bitrate(bps), None),
        (None, name) => {
            let name = name.unwrap_or(presets::DEFAULT_QUALITY);
            let names: Vec<_> = presets::QUALITIES.iter().map(|q| q.name).collect();
            let q = presets::quality(name)
                .with_context(|| format!("unknown quality {name:?} (one of: {})", names.join(", ")))?;
            (q.range(), q.max_height)
        }
    };
    if !(args.fps > 0.0 && args.fps <= 240.0) {
        bail!("--fps must be between 0 and 240");
    }
    let backend = crate::sources::open_source(OpenRequest {
        source: args.source.as_deref(),
        backend: args.backend,
        synthetic_size: args.size,
        cursor: !args.no_cursor,
    })?;
    let description = backend.describe();
    let encoder = crate::session::live_encoder(range.clamp(peep_transport::rate::START_BPS), args.fps)?;
    let config = ShareConfig {
        bind: args.bind,
        port: args.port,
        public_host: args.public_host,
        password: args.password,
        max_viewers: args.max_viewers,
        bitrate: range,
        relay: args.relay.map(|url| peep_transport::RelayClientConfig { url, ca_file: args.relay_ca }),
        admit: args.admit,
        codecs: args.codecs.0,
        ..ShareConfig::default()
    };
    let pipeline = PipelineConfig { fps: args.fps, max_height, ..PipelineConfig::default() };
    let session = Session::start(backend, encoder, pipeline, config)?;
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        ctrlc::set_handler(move || interrupted.store(true, Relaxed)).context("installing the Ctrl-C handler")?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "Link: {}", session.share().link())?;
        writeln!(out, "WHEP: {}", session.share().whep_url())?;
        if session.share().relay_status().is_some() {
            writeln!(out, "LAN: {}", session.share().lan_link())?;
        }
        out.flush()?;
    }
    let _metrics = match args.metrics {
        Some(addr) => {
            let server = crate::metrics::serve(&session, addr)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "Metrics: http://{}/metrics", server.local_addr())?;
            out.flush()?;
            tracing::info!(addr = %server.local_addr(), "metrics listener started");
            Some(server)
        }
        None => None,
    };
    if let Some(url) = args.whip {
        let config = peep_transport::WhipConfig { url, token: args.whip_token };
        session.share().start_publish(config)?;
        let server = session.share().publish_status().map(|p| p.server).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        writeln!(out, "Publishing (WHIP) to {server}")?;
        out.flush()?;
    }
    eprintln!("peep: sharing {description}; press Ctrl-C to stop");
    if args.admit {
        eprintln!("peep: viewers ask to join; {}", crate::console::HELP);
    }
    let typed = crate::console::spawn_stdin_reader();
    let (mut announced, mut relay_failed) = (0u64, false);
    let started = Instant::now();
    let deadline = args.seconds.map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let mut last = (Instant::now(), [(0u64, 0u64); 3], 0u64);
    let mut publish_failed = None;
    while !interrupted.load(Relaxed) && deadline.is_none_or(|d| Instant::now() < d) && !session.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
        let share = session.share();
        for line in typed.try_iter() {
            console_command(share, &line);
        }
        let fresh: Vec<_> = share.knocks().into_iter().filter(|k| k.id > announced).collect();
        for knock in fresh {
            announced = knock.id;
            eprintln!("\n{}", crate::console::knock_line(&knock));
        }
        if let (false, Some(peep_transport::RelayStatus::Failed(why))) = (relay_failed, share.relay_status()) {
            relay_failed = true;
            eprintln!("\npeep: {why}; viewers already watching keep watching, new ones cannot join");
        }
        if let Some(p) = share.publish_status().filter(|p| p.state == peep_transport::PublishState::Failed) {
            publish_failed =
                Some(format!("WHIP publish to {} failed: {}", p.server, p.message.as_deref().unwrap_or("?")));
            break;
        }
        let now = Instant::now();
        if args.stats_json {
            print_stats_json(&session)?;
        }
        if now - last.0 >= Duration::from_secs(1) {
            let secs = (now - last.0).as_secs_f64();
            let mut counts = [(0u64, 0u64); 3];
            for (count, codec) in counts.iter_mut().zip(Codec::ALL) {
                let c = session.pipeline_stats().codec(codec);
                *count = (c.frames_encoded.load(Relaxed), c.bytes.load(Relaxed));
            }
            let publish = session.share().publish_status();
            let published = publish.as_ref().map_or(0, |p| p.bytes_sent);
            let whip =
                publish.as_ref().map(|p| publish_words(p, (published.saturating_sub(last.2)) as f64 * 8.0 / secs));
            let paths = crate::console::viewer_paths(&session.share().viewers());
            let relay = session.share().relay_status().map(|s| crate::console::relay_words(&s)).unwrap_or_default();
            eprint!(
                "\r{}  {}{}{}  ",
                status_line(&session, secs, &last.1, &counts),
                if paths.is_empty() { String::new() } else { format!("[{paths}]  ") },
                whip.unwrap_or_default(),
                relay,
            );
            last = (now, counts, published);
        }
    }
    eprintln!();
    let result = session.stop();
    eprintln!("peep: share ended");
    match publish_failed {
        Some(failure) => result.and(Err(anyhow::anyhow!(failure))),
        None => result,
    }
}

/// The WHIP publish in the status line: `whip live 1850 kbps rtt 3 ms`,
/// `whip reconnecting in 4 s (…)`.
pub fn publish_words(p: &peep_transport::PublishSnapshot, bps: f64) -> String {
    use peep_transport::PublishState;
    match p.state {
        PublishState::Live => {
            let rtt = p.rtt.map_or("-".to_owned(), |r| format!("{:.0} ms", r.as_secs_f64() * 1e3));
            format!("whip live {:>5.0} kbps rtt {rtt}  ", bps / 1e3)
        }
        PublishState::Reconnecting => format!(
            "whip reconnecting in {} s ({})  ",
            p.retry_in.map_or(0, |d| d.as_secs_f64().ceil() as u64),
            p.message.as_deref().unwrap_or("?")
        ),
        state => format!("whip {}  ", state.word()),
    }
}

/// One line of `share --stats-json`: wall-clock time (ms since the UNIX
/// epoch, to line up with the receiver's timestamps), cumulative counters,
/// the encoder's target and every viewer's snapshot.
fn print_stats_json(session: &crate::session::Session) -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let p = session.pipeline_stats();
    let share = session.share().stats();
    let viewers = session.share().viewers();
    let t_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0);
    let line = serde_json::json!({
        "t_ms": t_ms,
        "frames_encoded": p.frames_encoded.load(Relaxed),
        "frames_dropped": p.frames_dropped.load(Relaxed),
        "frames_skipped_by_encoder": p.frames_skipped_by_encoder.load(Relaxed),
        "frames_skipped_budget": p.frames_skipped_budget.load(Relaxed),
        "frames_skipped_backlog": p.frames_skipped_backlog.load(Relaxed),
        "fps": p.fps_x10.load(Relaxed) as f64 / 10.0,
        "rate_gain": p.codec(peep_encode::Codec::H264).rate_gain_x100.load(Relaxed) as f64 / 100.0,
        "encode_ms_p50": p.encode_time.quantile(0.5).as_secs_f64() * 1e3,
        "keyframes": p.keyframes.load(Relaxed),
        "bytes": p.bytes.load(Relaxed),
        "target_bps": share.target_bps.load(Relaxed),
        "keyframe_requests": share.keyframe_requests.load(Relaxed),
        "keyframes_forced": share.keyframes_forced.load(Relaxed),
        "estimate_bps": viewers.iter().map(|v| v.estimate_bps).min(),
        "viewers": viewers,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// The figures of one running encoder over the last status interval.
#[derive(Debug, Clone, Copy, PartialEq)]
struct EncoderFigures {
    codec: Codec,
    fps: f64,
    kbps: f64,
    target_kbps: f64,
    encode_ms: f64,
}

/// `viewers 2 (H.264 1, VP9 1)  H.264  fps  30.0  bitrate … kbps  target … kbps  encode … ms  VP9  fps …`:
/// the connected viewers by codec, then one block per running encoder.
fn format_status(
    viewers: &[peep_transport::ViewerSnapshot],
    encoders: &[EncoderFigures],
    send: &SendFigures,
) -> String {
    use std::fmt::Write as _;
    let connected: Vec<_> = viewers.iter().filter(|v| v.state == peep_transport::ViewerState::Connected).collect();
    let mut line = format!("viewers {}", connected.len());
    let by_codec: Vec<String> = peep_transport::VideoCodec::ALL
        .iter()
        .map(|c| (c, connected.iter().filter(|v| v.codec == *c).count()))
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    if !by_codec.is_empty() {
        let _ = write!(line, " ({})", by_codec.join(", "));
    }
    for e in encoders {
        let _ = write!(
            line,
            "  {}  fps {:>5.1}  bitrate {:>6.0} kbps  target {:>6.0} kbps  encode {:>5.1} ms",
            e.codec, e.fps, e.kbps, e.target_kbps, e.encode_ms
        );
    }
    if !connected.is_empty() {
        let _ = write!(
            line,
            "  est {:>6.0} kbps  queue {:>4} ms  skipped {}  rtx {}  nack {}  pli {}{}",
            send.estimate_kbps,
            send.queue_ms,
            send.skipped,
            send.retransmissions,
            send.nacks,
            send.plis,
            if send.fps_limited_by_link { "  fps limited by the link" } else { "" },
        );
    }
    line
}

/// The status line of a running share; `before`/`now` are frames and bytes
/// per codec, `secs` apart.
fn status_line(
    session: &crate::session::Session,
    secs: f64,
    before: &[(u64, u64); 3],
    now: &[(u64, u64); 3],
) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let encoders: Vec<EncoderFigures> = Codec::ALL
        .into_iter()
        .filter(|codec| session.pipeline_stats().codec(*codec).active.load(Relaxed))
        .map(|codec| {
            let i = codec.index();
            let (frames, bytes) = (now[i].0 - before[i].0, now[i].1 - before[i].1);
            EncoderFigures {
                codec,
                fps: frames as f64 / secs,
                kbps: bytes as f64 * 8.0 / secs / 1e3,
                target_kbps: session.share().stats().target_bps_of(crate::session::share_codec(codec)) as f64 / 1e3,
                encode_ms: session.pipeline_stats().codec(codec).encode_time.quantile(0.5).as_secs_f64() * 1e3,
            }
        })
        .collect();
    let viewers = session.share().viewers();
    let stats = session.pipeline_stats();
    let connected: Vec<_> = viewers.iter().filter(|v| v.state == peep_transport::ViewerState::Connected).collect();
    let sum = |f: fn(&peep_transport::ViewerSnapshot) -> u64| connected.iter().map(|v| f(v)).sum::<u64>();
    let send = SendFigures {
        fps_limited_by_link: stats.fps_limited_by_link.load(Relaxed),
        estimate_kbps: connected.iter().map(|v| v.estimate_bps).min().unwrap_or(0) as f64 / 1e3,
        queue_ms: connected.iter().map(|v| v.queue_ms).max().unwrap_or(0),
        skipped: stats.frames_skipped_budget.load(Relaxed) + stats.frames_skipped_backlog.load(Relaxed),
        retransmissions: sum(|v| v.retransmissions),
        nacks: sum(|v| v.nacks),
        plis: sum(|v| v.plis),
    };
    format_status(&viewers, &encoders, &send)
}

/// What the viewers' send sides see, for the status line: the slowest
/// estimate, the longest send queue, frames the frame dropper skipped, and
/// retransmission/NACK/PLI totals; whether the link, not the setting,
/// limits the frame rate.
#[derive(Debug, Default)]
struct SendFigures {
    fps_limited_by_link: bool,
    estimate_kbps: f64,
    queue_ms: u32,
    skipped: u64,
    retransmissions: u64,
    nacks: u64,
    plis: u64,
}

/// Parses `h264,vp9,vp8` (best first).
fn parse_codecs(s: &str) -> Result<CodecList, String> {
    use peep_transport::VideoCodec;
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim) {
        let codec = match name.to_ascii_lowercase().as_str() {
            "h264" | "h.264" => VideoCodec::H264,
            "vp8" => VideoCodec::Vp8,
            "vp9" => VideoCodec::Vp9,
            other => return Err(format!("unknown codec {other:?} (h264, vp9, vp8)")),
        };
        if !out.contains(&codec) {
            out.push(codec);
        }
    }
    Ok(CodecList(out))
}

/// Applies a typed console command.
fn console_command(share: &peep_transport::Share, line: &str) {
    use crate::console::ConsoleCommand;
    match crate::console::parse(line) {
        Ok(ConsoleCommand::Admit(n)) | Ok(ConsoleCommand::Refuse(n)) if !share.knocks().iter().any(|k| k.id == n) => {
            eprintln!("peep: nobody waits as #{n}");
        }
        Ok(ConsoleCommand::Admit(n)) => {
            share.admit(n, true);
            eprintln!("peep: let #{n} in");
        }
        Ok(ConsoleCommand::Refuse(n)) => {
            share.admit(n, false);
            eprintln!("peep: turned #{n} away");
        }
        Ok(ConsoleCommand::Kick(prefix)) => {
            let matching: Vec<_> = share.viewers().into_iter().filter(|v| v.id.starts_with(&prefix)).collect();
            match matching.as_slice() {
                [one] => {
                    share.kick(&one.id);
                    eprintln!("peep: kicked {}", one.id);
                }
                [] => eprintln!("peep: no viewer id starts with {prefix:?} (type `v`)"),
                _ => eprintln!("peep: several viewer ids start with {prefix:?}; type more of it"),
            }
        }
        Ok(ConsoleCommand::List) => eprint!("\n{}", crate::console::list(&share.viewers(), &share.knocks())),
        Ok(ConsoleCommand::Help) => eprintln!("\npeep: {}", crate::console::HELP),
        Err(e) => eprintln!("\npeep: {e}"),
    }
}

fn pipeline_summary(p: &Pipeline, elapsed: Duration, written: u64) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let (s, c) = (&p.stats, &p.capture_stats);
    let secs = elapsed.as_secs_f64().max(1e-3);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "peep: {:.1}s: captured {} (unchanged ticks {}, keep-alive {}), encoded {} ({:.1} fps), dropped {}, skipped by encoder {}, \
         keyframes {}, {} bytes written ({:.0} kbps); encode ms p50 {:.2} p95 {:.2} p99 {:.2}; capture→encoded ms p50 {:.2} p95 {:.2}",
        secs,
        c.frames_captured.load(Relaxed),
        c.frames_unchanged.load(Relaxed),
        c.frames_forced.load(Relaxed),
        s.frames_encoded.load(Relaxed),
        s.frames_encoded.load(Relaxed) as f64 / secs,
        s.frames_dropped.load(Relaxed),
        s.frames_skipped_by_encoder.load(Relaxed),
        s.keyframes.load(Relaxed),
        written,
        written as f64 * 8.0 / secs / 1e3,
        ms(s.encode_time.quantile(0.5)),
        ms(s.encode_time.quantile(0.95)),
        ms(s.encode_time.quantile(0.99)),
        ms(s.capture_to_encoded.quantile(0.5)),
        ms(s.capture_to_encoded.quantile(0.95)),
    )
}

#[cfg(target_os = "linux")]
fn demo_window(scene: &str, fps: f32, seconds: f64, then: Option<(&str, f64)>) -> Result<()> {
    use peep_capture::backend::x11::X11Session;
    use peep_capture::marks::FrameMark;
    use peep_capture::synthetic::Scene;
    use peep_capture::synthetic::SyntheticScene;
    use peep_capture::testing::DemoWindow;
    let parse = |name: &str| {
        Scene::from_name(name).with_context(|| format!("unknown scene {name:?} (static, typing, scrolling, moving)"))
    };
    let scene = parse(scene)?;
    let mut then =
        then.map(|(name, after)| parse(name).map(|s| (s, Duration::from_secs_f64(after.max(0.0))))).transpose()?;
    if Backend::detect() == Backend::Portal {
        // A Wayland window with the same content.
        let display = std::env::var_os("WAYLAND_DISPLAY").context("WAYLAND_DISPLAY is not set")?;
        let socket = std::path::PathBuf::from(&display);
        let socket = if socket.is_absolute() {
            socket
        } else {
            std::path::PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR").context("XDG_RUNTIME_DIR is not set")?)
                .join(socket)
        };
        let seconds = (seconds > 0.0).then_some(seconds);
        return peep_capture::testing::wayland_demo::run(&socket, "Peep demo", scene, fps, seconds)
            .map_err(anyhow::Error::msg);
    }
    let session = X11Session::connect()?;
    let (w, h) = {
        let screen = session.list_displays()?;
        (screen[0].width, screen[0].height)
    };
    let mut window = DemoWindow::open(session.connection().clone(), 0, 0, w as u16, h as u16, "Peep demo")?;
    let mut content = SyntheticScene::new(w as usize, h as usize, scene);
    let mut frame = vec![0u8; w as usize * h as usize * 4];
    let period = Duration::from_secs_f32(1.0 / fps.clamp(0.1, 240.0));
    let started = Instant::now();
    let mut next = started;
    for index in 0u64.. {
        if seconds > 0.0 && started.elapsed().as_secs_f64() >= seconds {
            break;
        }
        let switch = then.filter(|&(_, after)| started.elapsed() >= after).map(|(next, _)| next);
        if let Some(next) = switch {
            content = SyntheticScene::new(w as usize, h as usize, next);
            then = None;
        }
        if index == 0 || switch.is_some() || content.changed(index) {
            let mark = FrameMark::now(index as u32);
            content.render(index, &mut frame, w as usize * 4, mark);
            // Repaint only what changed, as applications do (the X server's
            // damage then covers only that); everything on a scene switch.
            let all = peep_capture::DamageRect { x: 0, y: 0, width: w, height: h };
            let region = if index == 0 || switch.is_some() { all } else { content.damage(index).unwrap_or(all) };
            window.show_region(&frame, w, h, w as usize * 4, region)?;
            if switch.is_some() {
                let mut out = std::io::stdout().lock();
                writeln!(out, "switch {}", mark.timestamp_ms)?;
                out.flush()?;
            }
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates_parse_with_suffixes() {
        assert_eq!(parse_bitrate("2500000"), Ok(2_500_000));
        assert_eq!(parse_bitrate("2500k"), Ok(2_500_000));
        assert_eq!(parse_bitrate("2.5M"), Ok(2_500_000));
        assert!(parse_bitrate("fast").is_err());
        assert!(parse_bitrate("1").is_err());
        assert!(parse_bitrate("").is_err());
    }

    #[test]
    fn the_password_argument_never_shows_in_debug_output() {
        let cli = Cli::try_parse_from(["peep", "share", "--password", "hunter2-arg"]).expect("parses");
        let debug = format!("{cli:?}");
        assert!(debug.contains("password: Some(***)") && !debug.contains("hunter2-arg"), "{debug}");
    }

    #[test]
    fn whip_url_and_token_never_show_in_debug_output() {
        let cli = Cli::try_parse_from([
            "peep",
            "share",
            "--whip",
            "https://customer-x.example/KEY-1234/webRTC/publish",
            "--whip-token",
            "tok-5678",
        ])
        .expect("parses");
        let debug = format!("{cli:?}");
        assert!(!debug.contains("KEY-1234") && !debug.contains("tok-5678"), "{debug}");
        assert!(Cli::try_parse_from(["peep", "share", "--whip-token", "t"]).is_err(), "a token needs a URL");
    }

    #[test]
    fn status_names_each_viewers_codec_and_each_running_encoder() {
        use peep_transport::{VideoCodec, ViewerSnapshot, ViewerState};
        let viewer = |codec, state| ViewerSnapshot {
            id: "x".into(),
            remote: "127.0.0.1:1".parse().expect("addr"),
            codec,
            state,
            connected_for: Duration::from_secs(1),
            rtt: None,
            path: None,
            loss: 0.0,
            estimate_bps: 0,
            bytes_sent: 0,
            frames_sent: 0,
            frames_dropped: 0,
            frames_skipped: 0,
            keyframe_requests: 0,
            queue_ms: 0,
            retransmissions: 0,
            nacks: 0,
            plis: 0,
            probes: 0,
            padding_bytes: 0,
            app_limited: false,
            acked_bps: 0,
            playout_min_ms: 0,
        };
        let viewers = [
            viewer(VideoCodec::H264, ViewerState::Connected),
            viewer(VideoCodec::Vp9, ViewerState::Connected),
            viewer(VideoCodec::H264, ViewerState::Connected),
            viewer(VideoCodec::Vp8, ViewerState::Connecting),
        ];
        let figures = |codec, fps| EncoderFigures { codec, fps, kbps: 900.0, target_kbps: 1000.0, encode_ms: 9.5 };
        let send = SendFigures {
            fps_limited_by_link: true,
            estimate_kbps: 1200.0,
            queue_ms: 12,
            skipped: 3,
            retransmissions: 4,
            nacks: 5,
            plis: 1,
        };
        let line = format_status(&viewers, &[figures(Codec::H264, 30.0), figures(Codec::Vp9, 15.0)], &send);
        assert_eq!(
            line,
            "viewers 3 (H.264 2, VP9 1)  H.264  fps  30.0  bitrate    900 kbps  target   1000 kbps  encode   9.5 ms  \
             VP9  fps  15.0  bitrate    900 kbps  target   1000 kbps  encode   9.5 ms  \
             est   1200 kbps  queue   12 ms  skipped 3  rtx 4  nack 5  pli 1  fps limited by the link"
        );
        assert_eq!(format_status(&[], &[], &SendFigures::default()), "viewers 0");
    }

    #[test]
    fn codec_lists_parse_in_order() {
        use peep_transport::VideoCodec::*;
        assert_eq!(parse_codecs("h264,vp9,vp8"), Ok(CodecList(vec![H264, Vp9, Vp8])));
        assert_eq!(parse_codecs("VP8, h264, vp8"), Ok(CodecList(vec![Vp8, H264])));
        assert!(parse_codecs("av1").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1919x1079"), Ok((1919, 1079)));
        assert!(parse_size("0x5").is_err());
        assert!(parse_size("axb").is_err());
    }
}
