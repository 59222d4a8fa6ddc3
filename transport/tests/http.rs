//! The signalling server against hostile and malformed HTTP, over real TCP.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use peep_transport::{Share, ShareConfig};

fn share(password: Option<&str>) -> Share {
    Share::start(ShareConfig {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        password: password.map(peep_transport::Secret::from),
        max_viewers: 2,
        ..ShareConfig::default()
    })
    .expect("share")
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write head");
    // The server may answer (413) and close before reading everything.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Reply { status, headers: head.to_ascii_lowercase(), body: body.to_owned() }
}

fn path_of(share: &Share) -> String {
    let link = share.link();
    link[link.find("/s/").expect("path")..].to_owned()
}

/// A minimal but valid recvonly H.264 offer, as a WHEP player would send.
fn offer() -> String {
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=video 9 UDP/TLS/RTP/SAVPF 102",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",
        "a=setup:actpass",
        "a=mid:0",
        "a=recvonly",
        "a=rtcp-mux",
        "a=rtpmap:102 H264/90000",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
        "",
    ]
    .join("\r\n")
}

fn assert_still_serving(share: &Share) {
    let r = request(share.local_addr(), "GET", &path_of(share), &[], b"");
    assert_eq!(r.status, 200, "the server keeps serving the viewer page");
    assert!(r.body.contains("<video"), "{}", r.body);
}

#[test]
fn viewer_page_and_assets_are_served_without_external_resources() {
    let s = share(None);
    let page = request(s.local_addr(), "GET", &path_of(&s), &[], b"");
    assert_eq!(page.status, 200);
    assert!(page.headers.contains("referrer-policy: no-referrer"));
    assert!(page.headers.contains("content-security-policy"));
    for asset in ["/assets/viewer.js", "/assets/viewer.css"] {
        let r = request(s.local_addr(), "GET", asset, &[], b"");
        assert_eq!(r.status, 200, "{asset}");
        assert!(!r.body.contains("http://") && !r.body.contains("https://"), "{asset} loads nothing external");
    }
    assert!(!page.body.contains("http://") && !page.body.contains("https://"));
}

#[test]
fn bad_requests_get_clear_4xx_and_the_server_keeps_serving() {
    let s = share(None);
    let addr = s.local_addr();
    let whep = format!("{}/whep", path_of(&s));
    let sdp = [("Content-Type", "application/sdp")];
    // (method, path, headers, body, expected status, expected text in the body)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("GET", "/nope".into(), vec![], vec![], 404, "not found"),
        ("GET", "/s/0123456789abcdef0123456789abcdef".into(), vec![], vec![], 404, "invalid"),
        ("POST", "/s/0123456789abcdef0123456789abcdef/whep".into(), sdp.to_vec(), offer().into_bytes(), 404, "invalid"),
        ("POST", whep.clone(), vec![("Content-Type", "text/plain")], offer().into_bytes(), 415, "application/sdp"),
        ("POST", whep.clone(), vec![], offer().into_bytes(), 415, "application/sdp"),
        ("POST", whep.clone(), sdp.to_vec(), b"not sdp at all".to_vec(), 400, "bad SDP offer"),
        ("POST", whep.clone(), sdp.to_vec(), b"v=0\r\nm=video 9 RTP/AVP 96\r\n".to_vec(), 400, "bad SDP offer"),
        ("POST", whep.clone(), sdp.to_vec(), vec![0xff, 0xfe, 0x00, 0x41], 400, "not UTF-8"),
        ("POST", whep.clone(), sdp.to_vec(), vec![b'a'; 200 * 1024], 413, ""),
        ("DELETE", format!("{whep}/doesnotexist"), vec![], vec![], 404, "no such session"),
        ("PATCH", format!("{whep}/doesnotexist"), vec![], vec![], 405, ""),
        ("GET", "/assets/../../etc/passwd".into(), vec![], vec![], 404, ""),
    ];
    for (method, path, headers, body, status, text) in cases {
        let r = request(addr, method, &path, &headers, &body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert!(r.body.contains(text), "{method} {path}: {:?} lacks {text:?}", r.body);
    }
    assert_still_serving(&s);
}

#[test]
fn a_plain_whep_client_gets_201_an_answer_and_a_location_it_can_delete() {
    let s = share(None);
    let whep = format!("{}/whep", path_of(&s));
    let r = request(s.local_addr(), "POST", &whep, &[("Content-Type", "application/sdp")], offer().as_bytes());
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.headers.contains("content-type: application/sdp"));
    assert!(r.body.starts_with("v=0"), "{}", r.body);
    assert!(r.body.contains("a=setup:passive"), "we answer as the DTLS server");
    assert!(r.body.contains("profile-level-id=42e01f"), "{}", r.body);
    assert!(r.headers.contains("access-control-allow-origin: *"));
    let location =
        r.headers.lines().find_map(|l| l.strip_prefix("location: ")).map(str::to_owned).expect("a Location header");
    assert!(location.starts_with(&whep), "{location}");
    assert_eq!(s.viewers().len(), 1);
    // CORS preflight for players on other origins.
    let pre = request(s.local_addr(), "OPTIONS", &whep, &[("Origin", "http://player.test")], b"");
    assert_eq!(pre.status, 204);
    assert!(pre.headers.contains("access-control-allow-methods"));
    let d = request(s.local_addr(), "DELETE", &location, &[], b"");
    assert_eq!(d.status, 200);
    assert!(s.viewers().is_empty(), "the session's resources are freed");
}

#[test]
fn an_offer_without_a_common_codec_gets_422_with_the_sentence_the_page_shows() {
    use std::sync::atomic::Ordering::Relaxed;
    let s = share(None);
    let whep = format!("{}/whep", path_of(&s));
    let sdp = [("Content-Type", "application/sdp")];
    // What a browser with only AV1 (and repair formats) would offer.
    let av1 = offer()
        .replace("m=video 9 UDP/TLS/RTP/SAVPF 102", "m=video 9 UDP/TLS/RTP/SAVPF 45 46")
        .replace("a=rtpmap:102 H264/90000", "a=rtpmap:45 AV1/90000\r\na=rtpmap:46 rtx/90000\r\na=fmtp:46 apt=45")
        .replace("a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n", "");
    let r = request(s.local_addr(), "POST", &whep, &sdp, av1.as_bytes());
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.body,
        "This browser offered the video codecs AV1, but Peep sends H.264, VP9 or VP8. Open the link in a browser \
         that plays H.264, VP9 or VP8 over WebRTC (current Firefox, Chrome, Edge or Safari do), or turn H.264, VP9 \
         or VP8 back on in this browser's settings."
    );
    assert!(r.headers.contains("access-control-allow-origin: *"), "WHEP players on other origins can read it");
    // H.264 in a form Peep cannot send (packetization-mode 0 only) is named as such.
    let mode0 = offer().replace("packetization-mode=1", "packetization-mode=0");
    let r = request(s.local_addr(), "POST", &whep, &sdp, mode0.as_bytes());
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.starts_with("This browser offered the video codecs H.264 (in a form Peep cannot send), but"),
        "{}",
        r.body
    );
    assert_eq!(s.stats().offers_refused.load(Relaxed), 2);
    assert!(s.viewers().is_empty(), "no peer connection was kept");
    // The same share still answers a browser it can serve, with its codec.
    let vp8 = offer()
        .replace("a=rtpmap:102 H264/90000", "a=rtpmap:102 VP8/90000")
        .replace("a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n", "");
    let r = request(s.local_addr(), "POST", &whep, &sdp, vp8.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body.contains("VP8/90000") && !r.body.contains("H264"), "answers with VP8 only: {}", r.body);
    assert_eq!(s.viewers().iter().map(|v| v.codec).collect::<Vec<_>>(), [peep_transport::VideoCodec::Vp8]);
    assert_still_serving(&s);
}

#[test]
fn password_is_required_checked_and_throttled_and_viewer_limit_holds() {
    let s = share(Some("hunter2"));
    let whep = format!("{}/whep", path_of(&s));
    let post = |auth: Option<&str>| {
        let mut headers = vec![("Content-Type", "application/sdp")];
        let bearer;
        if let Some(pw) = auth {
            bearer = format!("Bearer {pw}");
            headers.push(("Authorization", bearer.as_str()));
        }
        request(s.local_addr(), "POST", &whep, &headers, offer().as_bytes())
    };
    let r = post(None);
    assert_eq!((r.status, r.body.as_str()), (401, "password required"));
    assert!(r.headers.contains("www-authenticate: bearer"));
    for _ in 0..3 {
        let r = post(Some("wrong"));
        assert_eq!((r.status, r.body.as_str()), (401, "wrong password"));
    }
    // Locked out now, even with the right password.
    let r = post(Some("hunter2"));
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.headers.contains("retry-after: 1"), "{}", r.headers);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(post(Some("hunter2")).status, 201);
    assert_eq!(post(Some("hunter2")).status, 201);
    let full = post(Some("hunter2"));
    assert_eq!((full.status, full.body.as_str()), (503, "the share is full: too many viewers"));
    assert_still_serving(&s);
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let err = Share::start(ShareConfig { bind: IpAddr::V4(Ipv4Addr::LOCALHOST), port, ..ShareConfig::default() })
        .expect_err("port taken");
    let text = err.to_string();
    assert!(text.contains(&format!("cannot listen on 127.0.0.1:{port}")) && text.contains("in use"), "{text}");
}
