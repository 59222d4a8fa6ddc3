//! Replays the `relay_message` fuzz target's seeds (`fuzz/seeds/relay_message`)
//! through the relay protocol's parsers, as the fuzz target does: each seed
//! is a real message, parses in its direction, and round-trips unchanged.

use peep_transport::relay::protocol::{encode, parse_relay_message, parse_sharer_message};

#[test]
fn seeds_parse_and_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/relay_message");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the seeds directory") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("seed");
        let name = path.display().to_string();
        let sharer = parse_sharer_message(&bytes);
        let relay = parse_relay_message(&bytes);
        assert!(sharer.is_ok() || relay.is_ok(), "{name} parses in neither direction: {sharer:?} / {relay:?}");
        if let Ok(m) = sharer {
            assert_eq!(parse_sharer_message(encode(&m).as_bytes()).expect("re-parse"), m, "{name}");
        }
        if let Ok(m) = relay {
            assert_eq!(parse_relay_message(encode(&m).as_bytes()).expect("re-parse"), m, "{name}");
        }
        // Truncations of real messages are refused with reasons, not panics.
        for cut in [1, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            let _ = parse_sharer_message(&bytes[..cut]);
            let _ = parse_relay_message(&bytes[..cut]);
        }
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} seeds in {}", dir.display());
}
