//! Fuzzes the relay protocol's parsing, both directions (a hostile sharer
//! against the relay, a hostile relay against the sharer). Every input must
//! yield a message or a BadMessage error, never a panic; and whatever
//! parses must survive encoding and parsing again unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peep_transport::TransportError;
use peep_transport::relay::protocol::{encode, parse_relay_message, parse_sharer_message};

fuzz_target!(|data: &[u8]| {
    match parse_sharer_message(data) {
        Ok(m) => assert_eq!(parse_sharer_message(encode(&m).as_bytes()).ok(), Some(m), "sharer message round trip"),
        Err(TransportError::BadMessage(_)) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
    }
    match parse_relay_message(data) {
        Ok(m) => assert_eq!(parse_relay_message(encode(&m).as_bytes()).ok(), Some(m), "relay message round trip"),
        Err(TransportError::BadMessage(_)) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
    }
});
