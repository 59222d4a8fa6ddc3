//! `peep share`'s console: the status line's relay and per-viewer parts,
//! and the commands typed while sharing (admit / refuse viewers who ask to
//! join, kick, list).

use std::time::Duration;

use peep_transport::{Knock, RelayStatus, ViewerSnapshot, ViewerState};

/// A command typed on stdin while sharing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleCommand {
    /// Let a waiting viewer in.
    Admit(u64),
    /// Turn a waiting viewer away.
    Refuse(u64),
    /// Remove a viewer (by the start of its id).
    Kick(String),
    /// List viewers and who waits.
    List,
    /// Say what can be typed.
    Help,
}

/// What can be typed.
pub const HELP: &str = "commands: `a N` let viewer #N in, `r N` turn #N away, `k ID` kick a viewer, `v` list viewers";

/// Parses one typed line.
pub fn parse(line: &str) -> Result<ConsoleCommand, String> {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("").to_ascii_lowercase();
    let arg = words.next();
    let number = || {
        arg.and_then(|a| a.trim_start_matches('#').parse().ok())
            .ok_or_else(|| format!("`{verb}` needs the number of a waiting viewer, e.g. `{verb} 1`"))
    };
    match verb.as_str() {
        "a" | "admit" | "y" | "yes" => number().map(ConsoleCommand::Admit),
        "r" | "refuse" | "n" | "no" => number().map(ConsoleCommand::Refuse),
        "k" | "kick" => arg
            .filter(|a| !a.is_empty())
            .map(|a| ConsoleCommand::Kick(a.to_owned()))
            .ok_or_else(|| "`k` needs a viewer id from `v`".to_owned()),
        "v" | "viewers" | "l" | "list" => Ok(ConsoleCommand::List),
        "" | "h" | "help" | "?" => Ok(ConsoleCommand::Help),
        other => Err(format!("unknown command `{other}`; {HELP}")),
    }
}

/// Reads stdin lines on a named thread. Channel of 16 lines; when full the
/// reader waits (typing is slow).
pub fn spawn_stdin_reader() -> crossbeam_channel::Receiver<String> {
    let (tx, rx) = crossbeam_channel::bounded(16);
    let spawned = std::thread::Builder::new().name("peep-stdin".into()).spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("no console commands: {e}");
    }
    rx
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".to_owned(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
}

/// The connected viewers' paths and round-trip times: `direct 12 ms, relay 48 ms`.
pub fn viewer_paths(viewers: &[ViewerSnapshot]) -> String {
    viewers
        .iter()
        .filter(|v| v.state == ViewerState::Connected)
        .map(|v| format!("{} {}", v.path.map_or("…", |p| p.as_str()), ms(v.rtt)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The relay connection in a few words for the status line.
pub fn relay_words(status: &RelayStatus) -> String {
    match status {
        RelayStatus::Connecting => "relay: connecting".into(),
        RelayStatus::Connected { reconnects: 0, .. } => "relay: connected".into(),
        RelayStatus::Connected { reconnects, .. } => format!("relay: connected (room reclaimed {reconnects}×)"),
        RelayStatus::Reconnecting { attempt, error, .. } => format!("relay: reconnecting (attempt {attempt}: {error})"),
        RelayStatus::Failed(why) => why.clone(),
    }
}

/// A line announcing a viewer who asks to join.
pub fn knock_line(k: &Knock) -> String {
    format!("peep: viewer #{} from {} asks to join: type `a {0}` to let it in, `r {0}` to turn it away", k.id, k.remote)
}

/// The viewer list for `v`.
pub fn list(viewers: &[ViewerSnapshot], knocks: &[Knock]) -> String {
    let mut out = String::new();
    for v in viewers {
        out.push_str(&format!(
            "  {}  {:<15} {:<12} {:<6} rtt {}\n",
            v.id,
            v.remote.ip(),
            format!("{:?}", v.state).to_lowercase(),
            v.path.map_or("…", |p| p.as_str()),
            ms(v.rtt)
        ));
    }
    for k in knocks {
        out.push_str(&format!("  #{} {} waiting for {} s\n", k.id, k.remote, k.waiting.as_secs()));
    }
    if out.is_empty() {
        out.push_str("  no viewers\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use peep_transport::ViewerPath;

    #[test]
    fn commands_parse() {
        assert_eq!(parse("a 3"), Ok(ConsoleCommand::Admit(3)));
        assert_eq!(parse("admit #12"), Ok(ConsoleCommand::Admit(12)));
        assert_eq!(parse("r 1"), Ok(ConsoleCommand::Refuse(1)));
        assert_eq!(parse("  k  ab12 "), Ok(ConsoleCommand::Kick("ab12".into())));
        assert_eq!(parse("v"), Ok(ConsoleCommand::List));
        assert_eq!(parse(""), Ok(ConsoleCommand::Help));
        assert!(parse("a").expect_err("no number").contains("needs the number"));
        assert!(parse("a x").is_err());
        assert!(parse("launch").expect_err("unknown").contains("unknown command"));
    }

    #[test]
    fn status_words() {
        let viewer = |path, rtt_ms: Option<u64>| ViewerSnapshot {
            id: "v".into(),
            remote: "192.0.2.1:0".parse().expect("addr"),
            codec: peep_transport::VideoCodec::H264,
            state: ViewerState::Connected,
            connected_for: Duration::ZERO,
            rtt: rtt_ms.map(Duration::from_millis),
            path,
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
        let paths = viewer_paths(&[viewer(Some(ViewerPath::Direct), Some(12)), viewer(Some(ViewerPath::Relay), None)]);
        assert_eq!(paths, "direct 12 ms, relay – ms".replace("– ms", "–"));
        let reconnecting =
            RelayStatus::Reconnecting { link: "x".into(), attempt: 2, error: "connection refused".into() };
        assert_eq!(relay_words(&reconnecting), "relay: reconnecting (attempt 2: connection refused)");
        let k = Knock { id: 4, remote: "192.0.2.9".parse().expect("ip"), waiting: Duration::from_secs(3) };
        assert!(knock_line(&k).contains("#4 from 192.0.2.9") && knock_line(&k).contains("`a 4`"));
        assert!(list(&[], &[k]).contains("#4 192.0.2.9 waiting for 3 s"));
    }
}
