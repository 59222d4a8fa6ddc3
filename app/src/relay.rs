//! `peep relay`: the internet-facing relay (the logic is in
//! `peep_transport::relay`; this module reads the command line and runs it
//! until Ctrl-C or SIGTERM).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use peep_transport::relay::rooms::Limits;
use peep_transport::relay::turn::IceSettings;
use peep_transport::{Relay, RelayConfig, Secret};

/// `--help` text: what a relay is and how to deploy one.
pub const ABOUT: &str = "Run a relay so people can share over the internet. \
Sharers anywhere connect out to it (`peep share --relay URL`) and get a room; \
viewers open the room's link. The relay carries only signalling: video goes \
peer to peer, or through a TURN server when NATs leave no other way.";

/// The long help's deployment notes.
pub const DEPLOY: &str = "\
Deployment (see docs/deploy-relay.md):
  * Give it a public name and a certificate:
      peep relay --public-url https://relay.example.org \\
                 --tls-cert /etc/letsencrypt/live/relay.example.org/fullchain.pem \\
                 --tls-key  /etc/letsencrypt/live/relay.example.org/privkey.pem --port 443
    or run it on 127.0.0.1 behind your reverse proxy (nginx, Caddy) with
    --public-url set, and --trust-forwarded-for so limits apply per viewer.
  * TURN makes it work behind strict NATs. With coturn:
      turnserver --use-auth-secret --static-auth-secret=$SECRET --realm=relay.example.org ...
      peep relay ... --stun-url stun:relay.example.org:3478 \\
                     --turn-url 'turn:relay.example.org:3478?transport=udp' --turn-secret-file /etc/peep/turn-secret
    The relay mints credentials valid for --turn-ttl seconds per viewer and
    per sharer (TURN REST API); coturn checks them with the same secret.
  * Firewall: TCP 443 (or --port) for the relay; UDP 3478 and the TURN relay
    port range (coturn --min-port/--max-port) for TURN.
  * Rooms survive a relay restart: sharers reconnect and reclaim them with
    their owner secret; links keep working.";

/// The log filter for `wanted` (PEEP_LOG or the default), whatever it
/// asks for, never logging the relay's WebSocket frames: they carry room
/// ids, owner secrets and passwords ([`peep_transport::relay::LOG_REDACTIONS`]).
pub fn log_filter(wanted: &str) -> String {
    let kept: Vec<&str> = wanted
        .split(',')
        .map(str::trim)
        .filter(|d| !(d.is_empty() || d.starts_with("tungstenite") || d.starts_with("tokio_tungstenite")))
        .collect();
    let mut filter = kept.join(",");
    if !filter.is_empty() {
        filter.push(',');
    }
    filter.push_str(peep_transport::relay::LOG_REDACTIONS);
    filter
}

/// Command-line arguments of `peep relay`.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// The URL people reach the relay at, e.g. https://relay.example.org
    /// (default: from the bind address; set it behind a proxy or NAT).
    #[arg(long)]
    public_url: Option<String>,
    /// PEM certificate chain for HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// STUN server to hand out, e.g. stun:relay.example.org:3478 (repeatable).
    #[arg(long = "stun-url")]
    stun_urls: Vec<String>,
    /// TURN server to hand out, e.g. turn:relay.example.org:3478?transport=udp (repeatable).
    #[arg(long = "turn-url")]
    turn_urls: Vec<String>,
    /// Secret shared with the TURN server (coturn's static-auth-secret).
    #[arg(long, env = "PEEP_TURN_SECRET", hide_env_values = true, conflicts_with = "turn_secret_file")]
    turn_secret: Option<String>,
    /// File holding the TURN secret (first line).
    #[arg(long)]
    turn_secret_file: Option<PathBuf>,
    /// How long minted TURN credentials are valid, seconds.
    #[arg(long, default_value_t = 3600)]
    turn_ttl: u64,
    /// Seconds a room waits for its sharer to come back before its viewers
    /// are told the share ended.
    #[arg(long, default_value_t = 60)]
    room_grace: u64,
    /// Most rooms on this relay.
    #[arg(long, default_value_t = 10_000)]
    max_rooms: usize,
    /// Most rooms from one address (an IPv6 /64 counts as one).
    #[arg(long, default_value_t = 8)]
    rooms_per_ip: u32,
    /// Most open connections from one address.
    #[arg(long, default_value_t = 64)]
    connections_per_ip: usize,
    /// Take viewers' addresses from X-Forwarded-For (only behind your own
    /// reverse proxy, which must set it).
    #[arg(long)]
    trust_forwarded_for: bool,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Run a TURN server inside the relay on this UDP address (e.g.
    /// 0.0.0.0:3478): one binary, no coturn. UDP only.
    #[arg(long)]
    turn_listen: Option<SocketAddr>,
    /// The public IP the built-in TURN server advertises (default: --bind,
    /// or this machine's address).
    #[arg(long, requires = "turn_listen")]
    turn_public_ip: Option<IpAddr>,
    /// The built-in TURN server's relay ports, MIN-MAX (open them in the firewall).
    #[arg(long, default_value = "49152-65535", value_parser = parse_ports)]
    turn_ports: (u16, u16),
    /// Let the built-in TURN server relay to private addresses (labs, LANs).
    #[arg(long, requires = "turn_listen")]
    turn_allow_private_peers: bool,
}

/// Parses `MIN-MAX`.
fn parse_ports(text: &str) -> Result<(u16, u16), String> {
    let err = || format!("{text:?}: expected MIN-MAX, e.g. 49152-65535");
    let (a, b) = text.split_once('-').ok_or_else(err)?;
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| err())?, b.trim().parse().map_err(|_| err())?);
    if a == 0 || b < a {
        return Err(err());
    }
    Ok((a, b))
}

fn check_urls(urls: &[String], schemes: &[&str], flag: &str) -> Result<()> {
    for url in urls {
        if !schemes.iter().any(|s| url.starts_with(s)) {
            bail!("{flag} {url:?}: expected a URL starting with {}", schemes.join(" or "));
        }
        if url.contains("transport=tcp") || url.starts_with("turns:") {
            tracing::warn!("{url}: Peep's sharer side uses TURN over UDP only; browsers may use it");
        }
    }
    Ok(())
}

/// Builds the relay's configuration from the command line.
pub fn config(args: &RelayArgs) -> Result<RelayConfig> {
    check_urls(&args.stun_urls, &["stun:"], "--stun-url")?;
    check_urls(&args.turn_urls, &["turn:", "turns:"], "--turn-url")?;
    let secret = match (&args.turn_secret, &args.turn_secret_file) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the TURN secret from {}", path.display()))?;
            Some(text.lines().next().unwrap_or("").trim().to_owned())
        }
        (None, None) => None,
    }
    .filter(|s| !s.is_empty());
    if !args.turn_urls.is_empty() && secret.is_none() && args.turn_listen.is_none() {
        bail!("--turn-url needs --turn-secret or --turn-secret-file (the TURN server's static-auth-secret)");
    }
    if args.turn_ttl < 10 {
        bail!("--turn-ttl must be at least 10 seconds");
    }
    if let Some(url) = &args.public_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        bail!("--public-url {url:?}: expected https://host[:port]");
    }
    Ok(RelayConfig {
        bind: SocketAddr::new(args.bind, args.port),
        public_url: args.public_url.clone(),
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        ice: IceSettings {
            stun_urls: args.stun_urls.clone(),
            turn_urls: args.turn_urls.clone(),
            secret: secret.map(Secret::new),
            ttl: Duration::from_secs(args.turn_ttl),
        },
        limits: Limits {
            room_grace: Duration::from_secs(args.room_grace.max(1)),
            max_rooms: args.max_rooms.max(1),
            rooms_per_ip: args.rooms_per_ip.max(1),
            ..Limits::default()
        },
        connections_per_ip: args.connections_per_ip.max(1),
        trust_forwarded_for: args.trust_forwarded_for,
        threads: args.threads.max(1),
        builtin_turn: args.turn_listen.map(|listen| peep_transport::BuiltinTurnConfig {
            listen,
            public_ip: args.turn_public_ip.unwrap_or_else(|| {
                if listen.ip().is_unspecified() {
                    if args.bind.is_unspecified() { peep_transport::detect_lan_ip() } else { args.bind }
                } else {
                    listen.ip()
                }
            }),
            ports: args.turn_ports,
            allow_private_peers: args.turn_allow_private_peers,
        }),
        ..RelayConfig::default()
    })
}

/// Runs the relay until Ctrl-C or SIGTERM.
pub fn run(args: RelayArgs) -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let config = config(&args)?;
    let ttl = config.ice.ttl.as_secs();
    let relay = Relay::start(config).context("starting the relay")?;
    let turn = relay.ice_urls().iter().filter(|u| u.starts_with("turn")).count();
    if let Some((_, at)) = relay.builtin_turn() {
        eprintln!("peep relay: built-in TURN server on udp {at}");
    }
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Relaxed)).context("installing the Ctrl-C handler")?;
    }
    println!("Relay: {} (listening on {})", relay.public_url(), relay.local_addr());
    if turn == 0 {
        eprintln!(
            "peep relay: no TURN server (--turn-url): viewers behind strict NATs will not connect; see `peep relay --help`"
        );
    } else {
        eprintln!("peep relay: {turn} TURN server(s), credentials valid for {ttl} s");
    }
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let counters = relay.counters();
    eprintln!(
        "peep relay: stopping ({} rooms, {} requests forwarded); sharers will reclaim their rooms on the next run",
        counters.rooms, counters.requests_forwarded
    );
    relay.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(Debug, clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: RelayArgs,
    }

    fn parse(args: &[&str]) -> Result<RelayConfig> {
        let w = Wrapper::try_parse_from(std::iter::once("relay").chain(args.iter().copied()))?;
        config(&w.args)
    }

    #[test]
    fn turn_needs_a_secret_and_urls_are_checked() {
        let err = parse(&["--turn-url", "turn:192.0.2.1:3478"]).expect_err("no secret").to_string();
        assert!(err.contains("--turn-secret"), "{err}");
        let err = parse(&["--stun-url", "192.0.2.1:3478"]).expect_err("no scheme").to_string();
        assert!(err.contains("stun:"), "{err}");
        let c = parse(&["--turn-url", "turn:192.0.2.1:3478?transport=udp", "--turn-secret", "s", "--turn-ttl", "60"])
            .expect("config");
        assert_eq!(c.ice.ttl, Duration::from_secs(60));
        assert!(!format!("{c:?}").contains("\"s\""), "the secret stays out of Debug");
        assert!(parse(&["--tls-cert", "a.pem"]).is_err(), "a certificate needs its key");
        assert!(parse(&["--public-url", "relay.example.org"]).is_err());
        let c =
            parse(&["--turn-listen", "0.0.0.0:3478", "--turn-public-ip", "203.0.113.9", "--turn-ports", "50000-50099"])
                .expect("built-in TURN");
        let turn = c.builtin_turn.expect("configured");
        assert_eq!(
            (turn.public_ip.to_string(), turn.ports, turn.allow_private_peers),
            ("203.0.113.9".into(), (50000, 50099), false)
        );
        assert!(parse(&["--turn-listen", "0.0.0.0:3478", "--turn-ports", "9-1"]).is_err());
    }

    #[test]
    fn logs_never_include_websocket_frames() {
        assert_eq!(log_filter("trace"), format!("trace,{}", peep_transport::relay::LOG_REDACTIONS));
        assert_eq!(
            log_filter("debug, tungstenite=trace,tokio_tungstenite::compat=trace,peep=info"),
            format!("debug,peep=info,{}", peep_transport::relay::LOG_REDACTIONS)
        );
        assert_eq!(log_filter(""), peep_transport::relay::LOG_REDACTIONS);
    }

    #[test]
    fn the_secret_can_come_from_a_file() {
        let path = std::env::temp_dir().join(format!("peep-turn-secret-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").expect("write");
        let c =
            parse(&["--turn-url", "turn:h:3478", "--turn-secret-file", path.to_str().expect("utf-8")]).expect("config");
        assert_eq!(c.ice.secret.as_ref().map(Secret::expose), Some("from-file"));
        let _ = std::fs::remove_file(path);
    }
}
