//! The relay's decisions, without I/O: rooms and their owners, sharer
//! connections and heartbeats, forwarded requests and their deadlines,
//! expiry, per-address limits and rate limits. Time is an input; the
//! server (`relay::server`) feeds it events and acts on what [`Rooms::poll`]
//! returns.
//!
//! **Rooms survive relay restarts without state.** A room id is the first
//! 128 bits of SHA-256 of its owner secret (256 bits from the OS RNG), so
//! a relay that has never seen a room verifies a reclaim by hashing the
//! secret: only the sharer holding it can take the room back, and a viewer
//! who knows the link (the room id) cannot.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A room: the secret part of a relay link (128 bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomId([u8; 16]);

impl RoomId {
    /// Parses 32 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        parse_hex::<16>(text).map(Self)
    }

    /// A short public tag for TURN user names and logs: it identifies the
    /// room to someone who knows the room, and reveals nothing about it to
    /// anyone else (TURN user names travel in clear text).
    pub fn tag(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &[b"peep-room-tag:".as_slice(), &self.0].concat());
        hex(&digest.as_ref()[..4])
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Room ids are link secrets: `Debug` shows only the public tag.
impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId(tag {})", self.tag())
    }
}

/// The secret that owns a room (256 bits).
#[derive(Clone, PartialEq, Eq)]
pub struct OwnerSecret([u8; 32]);

impl OwnerSecret {
    /// From raw bytes (the OS RNG's).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh secret from the OS RNG.
    pub fn random() -> crate::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| crate::TransportError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// Parses 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        parse_hex::<32>(text).map(Self)
    }

    /// As 64 hex digits (to send to the sharer, never to log).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The room this secret owns.
    pub fn room(&self) -> RoomId {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest.as_ref()[..16]);
        RoomId(id)
    }
}

impl fmt::Debug for OwnerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// A sharer connection, numbered by the server.
pub type ConnId = u64;
/// A forwarded request.
pub type RequestId = u64;

/// A token bucket's rate: `per_minute` on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sustained rate.
    pub per_minute: u32,
    /// Bucket size.
    pub burst: u32,
}

/// The relay's limits. The defaults suit a small public relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Rooms on the relay.
    pub max_rooms: usize,
    /// Rooms owned from one address (an IPv6 /64 counts as one).
    pub rooms_per_ip: u32,
    /// A room whose sharer is gone this long is forgotten (its viewers are told).
    pub room_grace: Duration,
    /// A sharer silent this long (no message, not even a ping) is disconnected.
    pub heartbeat_timeout: Duration,
    /// A forwarded request not answered in this time gets 504.
    pub request_timeout: Duration,
    /// …unless the sharer holds it for admission, up to this long.
    pub admission_timeout: Duration,
    /// Requests in flight per room.
    pub pending_per_room: u32,
    /// Viewer sessions remembered per room (oldest forgotten first).
    pub sessions_per_room: usize,
    /// Room creations per address.
    pub creates: Rate,
    /// WHEP requests per address.
    pub joins: Rate,
    /// Requests for rooms that do not exist, per address.
    pub misses: Rate,
    /// Addresses tracked for rate limits (least recently seen forgotten first).
    pub tracked_ips: usize,
    /// Ended rooms remembered (to tell late viewers in words), and for how long.
    pub gone_remembered: usize,
    /// See `gone_remembered`.
    pub gone_for: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_rooms: 10_000,
            rooms_per_ip: 8,
            room_grace: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(15),
            admission_timeout: Duration::from_secs(120),
            pending_per_room: 16,
            sessions_per_room: 256,
            creates: Rate { per_minute: 10, burst: 5 },
            joins: Rate { per_minute: 120, burst: 30 },
            misses: Rate { per_minute: 30, burst: 10 },
            tracked_ips: 65_536,
            gone_remembered: 10_000,
            gone_for: Duration::from_secs(600),
        }
    }
}

/// Why a room is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneReason {
    /// The sharer ended the share.
    Ended,
    /// The sharer's connection was gone longer than the grace period.
    SharerGone,
}

impl GoneReason {
    /// Words for the viewer.
    pub fn message(self) -> &'static str {
        match self {
            Self::Ended => "The share has ended.",
            Self::SharerGone => "The share has ended: the sharer is gone (no connection for too long).",
        }
    }
}

/// Why the relay refuses a request or a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such room.
    UnknownRoom,
    /// The room existed and is gone.
    Gone(GoneReason),
    /// The sharer's connection dropped; it may come back.
    SharerAway,
    /// Too many requests in flight for this room.
    Busy,
    /// Too many attempts from this address.
    RateLimited {
        /// When to retry.
        retry_after: Duration,
    },
    /// Too many rooms from this address.
    TooManyRoomsFromIp,
    /// The relay holds as many rooms as it may.
    RelayFull,
    /// The owner secret does not own the room.
    WrongOwner,
    /// A hello out of place (twice, or on an unknown connection).
    Protocol(&'static str),
}

impl Refusal {
    /// HTTP status for a viewer.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::UnknownRoom | Self::Gone(_) => 404,
            Self::RateLimited { .. } => 429,
            Self::WrongOwner => 403,
            Self::Protocol(_) => 400,
            Self::SharerAway | Self::Busy | Self::TooManyRoomsFromIp | Self::RelayFull => 503,
        }
    }

    /// Words for a person.
    pub fn message(&self) -> String {
        match self {
            Self::UnknownRoom => "this link is invalid or the share has ended".into(),
            Self::Gone(reason) => reason.message().into(),
            Self::SharerAway => "the sharer's connection to the relay dropped; waiting for it to come back".into(),
            Self::Busy => "too many viewers are joining at once; trying again".into(),
            Self::RateLimited { retry_after } => {
                format!("too many attempts from your address: try again in {} s", retry_after.as_secs().max(1))
            }
            Self::TooManyRoomsFromIp => "too many shares from your address on this relay".into(),
            Self::RelayFull => "the relay is full: too many shares".into(),
            Self::WrongOwner => "wrong owner secret for this room".into(),
            Self::Protocol(what) => (*what).into(),
        }
    }
}

/// What the server must do after [`Rooms::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Answer this request with 504.
    RequestTimedOut(RequestId),
    /// Close this sharer connection: it has been silent too long.
    Silent(ConnId),
    /// The room is gone: tell its viewers.
    Expired(RoomId),
}

/// The outcome of a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The room.
    pub room: RoomId,
    /// Its owner secret.
    pub owner: OwnerSecret,
    /// Whether an existing (or remembered) room was taken back.
    pub reclaimed: bool,
    /// A previous connection of this room's sharer, to close.
    pub replaced: Option<ConnId>,
}

/// A request that was answered (or failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Its room.
    pub room: RoomId,
}

/// How a room looks to a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomView {
    /// The sharer is connected (or reconnecting).
    Open {
        /// Viewers wait to be admitted.
        admit: bool,
        /// The sharer's connection dropped.
        away: bool,
    },
    /// The room existed and is gone.
    Gone(GoneReason),
    /// Never heard of it.
    Unknown,
}

/// Kinds of forwarded requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// WHEP offer.
    Offer,
    /// WHEP DELETE.
    Leave,
}

/// Counters, for `/relay/stats` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Rooms created.
    pub rooms_created: u64,
    /// Rooms taken back by their sharer (after a drop or a relay restart).
    pub rooms_reclaimed: u64,
    /// Rooms forgotten after the grace period.
    pub rooms_expired: u64,
    /// Rooms ended by their sharer.
    pub rooms_ended: u64,
    /// Requests forwarded to sharers.
    pub requests_forwarded: u64,
    /// Forwarded requests answered.
    pub requests_answered: u64,
    /// Forwarded requests that timed out.
    pub requests_timed_out: u64,
    /// Refused: rate limit.
    pub refused_rate_limited: u64,
    /// Refused: room limits.
    pub refused_room_limit: u64,
    /// Refused: wrong owner secret.
    pub refused_wrong_owner: u64,
    /// Refused: unknown or ended room.
    pub refused_unknown_room: u64,
    /// Refused: sharer away.
    pub refused_sharer_away: u64,
    /// Refused: too many requests in flight.
    pub refused_busy: u64,
    /// Sharer connections closed for silence.
    pub connections_silent: u64,
    /// Malformed or out-of-place messages.
    pub bad_messages: u64,
    /// Sharer connections closed because they stopped reading.
    pub connections_stalled: u64,
    /// Rooms now.
    pub rooms: u64,
    /// Sharer connections now.
    pub connections: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f32,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self { tokens: rate.burst as f32, at: now }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let per_sec = rate.per_minute as f32 / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f32();
        self.tokens = (self.tokens + elapsed * per_sec).min(rate.burst as f32);
        self.at = now;
    }

    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let per_sec = (rate.per_minute as f32 / 60.0).max(1e-3);
        Err(Duration::from_secs_f32(((1.0 - self.tokens) / per_sec).clamp(0.0, 3600.0)))
    }
}

#[derive(Debug, Clone, Copy)]
struct IpRecord {
    creates: Bucket,
    joins: Bucket,
    misses: Bucket,
    last: Instant,
}

/// Rate-limit key of an address: IPv6 addresses by /64 (one subscriber).
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug)]
struct Room {
    conn: Option<ConnId>,
    ip: IpAddr,
    away_since: Option<Instant>,
    admit: bool,
    sessions: VecDeque<Box<str>>,
    pending: u32,
    peers: u32,
}

#[derive(Debug)]
struct Conn {
    ip: IpAddr,
    room: Option<RoomId>,
    last_heard: Instant,
}

#[derive(Debug)]
struct Pending {
    room: RoomId,
    conn: ConnId,
    deadline: Instant,
    held: bool,
}

/// The relay's state. See the module docs.
#[derive(Debug)]
pub struct Rooms {
    limits: Limits,
    rooms: HashMap<RoomId, Room>,
    conns: HashMap<ConnId, Conn>,
    pending: HashMap<RequestId, Pending>,
    next_request: RequestId,
    rooms_by_ip: HashMap<IpAddr, u32>,
    ips: HashMap<IpAddr, IpRecord>,
    gone: HashMap<RoomId, (Instant, GoneReason)>,
    gone_order: VecDeque<RoomId>,
    counters: Counters,
}

impl Rooms {
    /// An empty relay.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            rooms: HashMap::new(),
            conns: HashMap::new(),
            pending: HashMap::new(),
            next_request: 1,
            rooms_by_ip: HashMap::new(),
            ips: HashMap::new(),
            gone: HashMap::new(),
            gone_order: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counters, with current room and connection counts.
    pub fn counters(&self) -> Counters {
        Counters { rooms: self.rooms.len() as u64, connections: self.conns.len() as u64, ..self.counters }
    }

    /// Counts a malformed message.
    pub fn count_bad_message(&mut self) {
        self.counters.bad_messages += 1;
    }

    /// Counts a sharer connection closed because it stopped reading.
    pub fn count_stalled(&mut self) {
        self.counters.connections_stalled += 1;
    }

    fn ip_record(&mut self, ip: IpAddr, now: Instant) -> &mut IpRecord {
        let key = ip_key(ip);
        if !self.ips.contains_key(&key) && self.ips.len() >= self.limits.tracked_ips {
            // Forget the least recently seen eighth at once: amortised O(1).
            let mut by_age: Vec<(Instant, IpAddr)> = self.ips.iter().map(|(ip, r)| (r.last, *ip)).collect();
            by_age.sort_unstable_by_key(|(t, _)| *t);
            for (_, ip) in by_age.iter().take((self.limits.tracked_ips / 8).max(1)) {
                self.ips.remove(ip);
            }
        }
        let limits = &self.limits;
        let record = self.ips.entry(key).or_insert_with(|| IpRecord {
            creates: Bucket::full(limits.creates, now),
            joins: Bucket::full(limits.joins, now),
            misses: Bucket::full(limits.misses, now),
            last: now,
        });
        record.last = now;
        record
    }

    /// A sharer connection opened.
    pub fn connect(&mut self, conn: ConnId, ip: IpAddr, now: Instant) {
        self.conns.insert(conn, Conn { ip, room: None, last_heard: now });
    }

    /// A message arrived on `conn`.
    pub fn heard(&mut self, conn: ConnId, now: Instant) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_heard = now;
        }
    }

    /// Creates (`claim` None) or reclaims a room. `fresh` makes a new owner
    /// secret when one is needed (from the OS RNG, in the server).
    pub fn hello(
        &mut self,
        conn: ConnId,
        claim: Option<(RoomId, OwnerSecret)>,
        admit: bool,
        now: Instant,
        fresh: impl FnOnce() -> Option<OwnerSecret>,
    ) -> Result<Welcome, Refusal> {
        let Some(c) = self.conns.get(&conn) else { return Err(Refusal::Protocol("hello on an unknown connection")) };
        if c.room.is_some() {
            return Err(Refusal::Protocol("hello twice on one connection"));
        }
        let ip = c.ip;
        let (room, owner, reclaimed) = match claim {
            Some((room, owner)) => {
                if owner.room() != room {
                    self.counters.refused_wrong_owner += 1;
                    return Err(Refusal::WrongOwner);
                }
                (room, owner, true)
            }
            None => {
                if let Err(retry_after) = {
                    let rate = self.limits.creates;
                    self.ip_record(ip, now).creates.take(rate, now)
                } {
                    self.counters.refused_rate_limited += 1;
                    return Err(Refusal::RateLimited { retry_after });
                }
                let owner = fresh().ok_or(Refusal::Protocol("no randomness for a new room"))?;
                (owner.room(), owner, false)
            }
        };
        let replaced = if let Some(existing) = self.rooms.get_mut(&room) {
            if !reclaimed {
                // 2^-128: a new secret hashed to an existing room.
                return Err(Refusal::Protocol("room collision; try again"));
            }
            let old = existing.conn.replace(conn).filter(|old| *old != conn);
            existing.away_since = None;
            existing.admit = admit;
            old
        } else {
            let key = ip_key(ip);
            if self.rooms.len() >= self.limits.max_rooms {
                self.counters.refused_room_limit += 1;
                return Err(Refusal::RelayFull);
            }
            if self.rooms_by_ip.get(&key).copied().unwrap_or(0) >= self.limits.rooms_per_ip {
                self.counters.refused_room_limit += 1;
                return Err(Refusal::TooManyRoomsFromIp);
            }
            *self.rooms_by_ip.entry(key).or_insert(0) += 1;
            self.gone.remove(&room);
            self.rooms.insert(
                room,
                Room {
                    conn: Some(conn),
                    ip: key,
                    away_since: None,
                    admit,
                    sessions: VecDeque::new(),
                    pending: 0,
                    peers: 0,
                },
            );
            None
        };
        if let Some(old) = replaced
            && let Some(c) = self.conns.get_mut(&old)
        {
            c.room = None;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.room = Some(room);
            c.last_heard = now;
        }
        if reclaimed {
            self.counters.rooms_reclaimed += 1;
        } else {
            self.counters.rooms_created += 1;
        }
        Ok(Welcome { room, owner, reclaimed, replaced })
    }

    /// The room of a connection that said hello.
    pub fn room_of(&self, conn: ConnId) -> Option<RoomId> {
        self.conns.get(&conn).and_then(|c| c.room)
    }

    /// The connection serving a room now.
    pub fn conn_of(&self, room: &RoomId) -> Option<ConnId> {
        self.rooms.get(room).and_then(|r| r.conn)
    }

    /// Sets a room's admission mode.
    pub fn set_admit(&mut self, conn: ConnId, admit: bool) {
        if let Some(room) = self.room_of(conn).and_then(|r| self.rooms.get_mut(&r)) {
            room.admit = admit;
        }
    }

    fn fail_pending_of(&mut self, conn: ConnId) -> Vec<RequestId> {
        let ids: Vec<RequestId> = self.pending.iter().filter(|(_, p)| p.conn == conn).map(|(id, _)| *id).collect();
        for id in &ids {
            self.finish(*id);
        }
        ids
    }

    /// A sharer connection closed. Returns the requests that can no longer
    /// be answered. Its room waits `room_grace` for the sharer to return.
    pub fn disconnected(&mut self, conn: ConnId, now: Instant) -> Vec<RequestId> {
        let failed = self.fail_pending_of(conn);
        if let Some(c) = self.conns.remove(&conn)
            && let Some(room) = c.room.and_then(|r| self.rooms.get_mut(&r))
            && room.conn == Some(conn)
        {
            room.conn = None;
            room.away_since = Some(now);
        }
        failed
    }

    fn remove_room(&mut self, id: RoomId, reason: GoneReason, now: Instant) {
        let Some(room) = self.rooms.remove(&id) else { return };
        if let Some(n) = self.rooms_by_ip.get_mut(&room.ip) {
            *n -= 1;
            if *n == 0 {
                self.rooms_by_ip.remove(&room.ip);
            }
        }
        if let Some(c) = room.conn.and_then(|c| self.conns.get_mut(&c)) {
            c.room = None;
        }
        while self.gone_order.len() >= self.limits.gone_remembered {
            match self.gone_order.pop_front() {
                Some(old) => {
                    self.gone.remove(&old);
                }
                None => break,
            }
        }
        if self.limits.gone_remembered > 0 {
            self.gone.insert(id, (now, reason));
            self.gone_order.push_back(id);
        }
        match reason {
            GoneReason::Ended => self.counters.rooms_ended += 1,
            GoneReason::SharerGone => self.counters.rooms_expired += 1,
        }
    }

    /// The sharer ended its share. Returns the room (to tell its viewers)
    /// and the requests that can no longer be answered.
    pub fn bye(&mut self, conn: ConnId, now: Instant) -> Option<(RoomId, Vec<RequestId>)> {
        let room = self.room_of(conn)?;
        if self.conn_of(&room) != Some(conn) {
            return None;
        }
        let failed = self.fail_pending_of(conn);
        self.remove_room(room, GoneReason::Ended, now);
        Some((room, failed))
    }

    /// How a room looks to a viewer (page, OPTIONS, events).
    pub fn view(&self, room: &RoomId) -> RoomView {
        if let Some(r) = self.rooms.get(room) {
            return RoomView::Open { admit: r.admit, away: r.conn.is_none() };
        }
        match self.gone.get(room) {
            Some((_, reason)) => RoomView::Gone(*reason),
            None => RoomView::Unknown,
        }
    }

    /// Counts a request for a room that does not exist against the
    /// address's miss budget. `Err` when over it.
    pub fn miss(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        self.counters.refused_unknown_room += 1;
        let rate = self.limits.misses;
        match self.ip_record(ip, now).misses.take(rate, now) {
            Ok(()) => Ok(()),
            Err(retry_after) => {
                self.counters.refused_rate_limited += 1;
                Err(Refusal::RateLimited { retry_after })
            }
        }
    }

    /// Starts forwarding a viewer's request to the room's sharer: returns
    /// the request id and the connection to send it on.
    pub fn request(
        &mut self,
        room: &RoomId,
        ip: IpAddr,
        kind: RequestKind,
        now: Instant,
    ) -> Result<(RequestId, ConnId), Refusal> {
        if kind == RequestKind::Offer {
            let rate = self.limits.joins;
            if let Err(retry_after) = self.ip_record(ip, now).joins.take(rate, now) {
                self.counters.refused_rate_limited += 1;
                return Err(Refusal::RateLimited { retry_after });
            }
        }
        let Some(r) = self.rooms.get_mut(room) else {
            let reason = self.gone.get(room).map(|(_, reason)| *reason);
            self.miss(ip, now)?;
            return Err(reason.map_or(Refusal::UnknownRoom, Refusal::Gone));
        };
        let Some(conn) = r.conn else {
            self.counters.refused_sharer_away += 1;
            return Err(Refusal::SharerAway);
        };
        if r.pending >= self.limits.pending_per_room {
            self.counters.refused_busy += 1;
            return Err(Refusal::Busy);
        }
        r.pending += 1;
        let id = self.next_request;
        self.next_request += 1;
        self.pending
            .insert(id, Pending { room: *room, conn, deadline: now + self.limits.request_timeout, held: false });
        self.counters.requests_forwarded += 1;
        Ok((id, conn))
    }

    /// The sharer holds request `id` for admission: its deadline becomes
    /// `admission_timeout`. Only the connection it was sent on may hold it.
    pub fn hold(&mut self, conn: ConnId, id: RequestId, now: Instant) -> bool {
        match self.pending.get_mut(&id) {
            Some(p) if p.conn == conn && !p.held => {
                p.held = true;
                p.deadline = now + self.limits.admission_timeout;
                true
            }
            _ => false,
        }
    }

    fn finish(&mut self, id: RequestId) -> Option<Finished> {
        let p = self.pending.remove(&id)?;
        if let Some(r) = self.rooms.get_mut(&p.room) {
            r.pending = r.pending.saturating_sub(1);
        }
        Some(Finished { room: p.room })
    }

    /// The sharer answered request `id`. `None` if it was not this
    /// connection's to answer (or it timed out already).
    pub fn answer(&mut self, conn: ConnId, id: RequestId) -> Option<Finished> {
        if self.pending.get(&id).is_none_or(|p| p.conn != conn) {
            return None;
        }
        self.counters.requests_answered += 1;
        self.finish(id)
    }

    /// Gives up on a request (the viewer went away before the answer).
    pub fn abandon(&mut self, id: RequestId) {
        self.finish(id);
    }

    /// Remembers a viewer session created through the room.
    pub fn session_opened(&mut self, room: &RoomId, session: &str) {
        let max = self.limits.sessions_per_room;
        if let Some(r) = self.rooms.get_mut(room)
            && !r.sessions.iter().any(|s| &**s == session)
        {
            if r.sessions.len() >= max {
                r.sessions.pop_front();
            }
            r.sessions.push_back(session.into());
            r.peers += 1;
        }
    }

    /// Forgets a viewer session.
    pub fn session_closed(&mut self, room: &RoomId, session: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.sessions.retain(|s| &**s != session);
        }
    }

    /// Whether the room knows this viewer session.
    pub fn has_session(&self, room: &RoomId, session: &str) -> bool {
        self.rooms.get(room).is_some_and(|r| r.sessions.iter().any(|s| &**s == session))
    }

    /// A number for the next TURN user name in this room.
    pub fn next_peer(&mut self, room: &RoomId) -> u32 {
        self.rooms.get_mut(room).map_or(0, |r| {
            r.peers = r.peers.wrapping_add(1);
            r.peers
        })
    }

    /// Periodic work: deadlines, silent sharers, expired rooms, old tombstones.
    pub fn poll(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let late: Vec<RequestId> = self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
        for id in late {
            self.finish(id);
            self.counters.requests_timed_out += 1;
            events.push(Event::RequestTimedOut(id));
        }
        let timeout = self.limits.heartbeat_timeout;
        for (id, c) in &self.conns {
            if now.saturating_duration_since(c.last_heard) >= timeout {
                events.push(Event::Silent(*id));
            }
        }
        // Silent connections are reported until the server closes them;
        // count each once.
        let silent: Vec<ConnId> =
            events.iter().filter_map(|e| if let Event::Silent(c) = e { Some(*c) } else { None }).collect();
        for c in silent {
            if let Some(conn) = self.conns.get_mut(&c) {
                // Report again only after another full timeout.
                conn.last_heard = now;
                self.counters.connections_silent += 1;
            }
        }
        let grace = self.limits.room_grace;
        let expired: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.away_since.is_some_and(|t| now.saturating_duration_since(t) >= grace))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.remove_room(id, GoneReason::SharerGone, now);
            events.push(Event::Expired(id));
        }
        let keep = self.limits.gone_for;
        while let Some(oldest) = self.gone_order.front() {
            match self.gone.get(oldest) {
                Some((at, _)) if now.saturating_duration_since(*at) < keep => break,
                _ => {
                    if let Some(old) = self.gone_order.pop_front() {
                        self.gone.remove(&old);
                    }
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn owner(n: u8) -> OwnerSecret {
        OwnerSecret::from_bytes([n; 32])
    }

    fn rooms() -> Rooms {
        Rooms::new(Limits::default())
    }

    /// Connects `conn` from `from` and creates a room with owner `n`.
    fn create(r: &mut Rooms, conn: ConnId, from: IpAddr, n: u8, now: Instant) -> Welcome {
        r.connect(conn, from, now);
        r.hello(conn, None, false, now, || Some(owner(n))).expect("created")
    }

    #[test]
    fn ids_are_hex_and_derived_from_the_owner() {
        let o = owner(1);
        let room = o.room();
        let text = room.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(RoomId::parse(&text), Some(room));
        assert_eq!(OwnerSecret::parse(&o.to_hex()), Some(o.clone()));
        assert_ne!(owner(2).room(), room);
        for bad in ["", "00", &text.to_uppercase(), &format!("{text}0"), &"g".repeat(32)] {
            assert_eq!(RoomId::parse(bad), None, "{bad}");
        }
        assert_eq!(format!("{o:?}"), "***");
        let debug = format!("{room:?}");
        assert!(!debug.contains(&text) && debug.contains(&room.tag()), "{debug}");
        assert_eq!(room.tag().len(), 8);
        assert!(OwnerSecret::random().expect("rng") != OwnerSecret::random().expect("rng"));
    }

    #[test]
    fn create_reclaim_and_takeover() {
        let t0 = Instant::now();
        let mut r = rooms();
        let w = create(&mut r, 1, ip(1), 1, t0);
        assert!(!w.reclaimed && w.replaced.is_none());
        assert_eq!(w.room, owner(1).room());
        assert_eq!(r.view(&w.room), RoomView::Open { admit: false, away: false });
        // A second hello on the same connection is out of place.
        assert_eq!(
            r.hello(1, None, false, t0, || Some(owner(9))),
            Err(Refusal::Protocol("hello twice on one connection"))
        );
        // The sharer's connection drops; it comes back on a new one.
        assert!(r.disconnected(1, t0).is_empty());
        assert_eq!(r.view(&w.room), RoomView::Open { admit: false, away: true });
        r.connect(2, ip(1), t0);
        let back = r.hello(2, Some((w.room, owner(1))), true, t0, || None).expect("reclaimed");
        assert!(back.reclaimed && back.replaced.is_none());
        assert_eq!(r.view(&w.room), RoomView::Open { admit: true, away: false });
        // A half-open old connection is replaced by a newer one.
        r.connect(3, ip(2), t0);
        let again = r.hello(3, Some((w.room, owner(1))), false, t0, || None).expect("takeover");
        assert_eq!(again.replaced, Some(2));
        assert_eq!(r.conn_of(&w.room), Some(3));
        assert_eq!(r.room_of(2), None, "the replaced connection no longer serves the room");
        // Its close does not make the room look away.
        r.disconnected(2, t0);
        assert_eq!(r.view(&w.room), RoomView::Open { admit: false, away: false });
        assert_eq!((r.counters().rooms_created, r.counters().rooms_reclaimed), (1, 2));
    }

    #[test]
    fn a_restarted_relay_verifies_reclaims_by_hash() {
        let t0 = Instant::now();
        let mut fresh = rooms();
        fresh.connect(1, ip(1), t0);
        let room = owner(5).room();
        let w = fresh.hello(1, Some((room, owner(5))), false, t0, || None).expect("restored");
        assert!(w.reclaimed);
        // Someone who knows only the link cannot take the room.
        fresh.connect(2, ip(66), t0);
        assert_eq!(fresh.hello(2, Some((room, owner(6))), false, t0, || None), Err(Refusal::WrongOwner));
        assert_eq!(fresh.counters().refused_wrong_owner, 1);
        assert_eq!(fresh.conn_of(&room), Some(1));
    }

    #[test]
    fn rooms_expire_after_the_grace_period_and_viewers_hear_why() {
        let t0 = Instant::now();
        let mut r = rooms();
        let w = create(&mut r, 1, ip(1), 1, t0);
        r.session_opened(&w.room, "v1");
        r.disconnected(1, t0);
        let grace = r.limits().room_grace;
        assert!(r.poll(t0 + grace - Duration::from_millis(1)).is_empty());
        assert_eq!(r.poll(t0 + grace), vec![Event::Expired(w.room)]);
        assert_eq!(r.view(&w.room), RoomView::Gone(GoneReason::SharerGone));
        assert!(!r.has_session(&w.room, "v1"));
        r.connect(2, ip(3), t0 + grace);
        assert_eq!(
            r.request(&w.room, ip(3), RequestKind::Offer, t0 + grace),
            Err(Refusal::Gone(GoneReason::SharerGone))
        );
        // Tombstones are forgotten after a while; the room id becomes unknown.
        let later = t0 + grace + r.limits().gone_for;
        r.poll(later);
        assert_eq!(r.view(&w.room), RoomView::Unknown);
        // The sharer may still come back and reclaim it (same owner secret).
        r.connect(3, ip(1), later);
        assert!(r.hello(3, Some((w.room, owner(1))), false, later, || None).is_ok());
    }

    #[test]
    fn bye_ends_the_room_at_once() {
        let t0 = Instant::now();
        let mut r = rooms();
        let w = create(&mut r, 1, ip(1), 1, t0);
        let (id, _) = r.request(&w.room, ip(9), RequestKind::Offer, t0).expect("forwarded");
        assert_eq!(r.bye(7, t0), None, "not this connection's room");
        assert_eq!(r.bye(1, t0), Some((w.room, vec![id])));
        assert_eq!(r.view(&w.room), RoomView::Gone(GoneReason::Ended));
        assert_eq!(r.counters().rooms_ended, 1);
        assert_eq!(r.counters().rooms, 0);
    }

    #[test]
    fn requests_are_answered_once_by_their_connection_or_time_out() {
        let t0 = Instant::now();
        let mut r = rooms();
        let w = create(&mut r, 1, ip(1), 1, t0);
        let (a, conn) = r.request(&w.room, ip(9), RequestKind::Offer, t0).expect("a");
        assert_eq!(conn, 1);
        assert_eq!(r.answer(2, a), None, "another connection cannot answer");
        assert_eq!(r.answer(1, a), Some(Finished { room: w.room }));
        assert_eq!(r.answer(1, a), None, "answered once");
        let (b, _) = r.request(&w.room, ip(9), RequestKind::Offer, t0).expect("b");
        let (c, _) = r.request(&w.room, ip(9), RequestKind::Leave, t0).expect("c");
        assert!(r.hold(1, c, t0 + Duration::from_secs(1)));
        assert!(!r.hold(1, c, t0 + Duration::from_secs(2)), "held once");
        r.heard(1, t0 + Duration::from_secs(14));
        let timeout = r.limits().request_timeout;
        assert_eq!(r.poll(t0 + timeout), vec![Event::RequestTimedOut(b)]);
        assert_eq!(r.answer(1, b), None, "too late");
        let held_until = t0 + Duration::from_secs(1) + r.limits().admission_timeout;
        r.heard(1, held_until - Duration::from_secs(1));
        assert!(r.poll(held_until - Duration::from_millis(1)).is_empty());
        assert_eq!(r.poll(held_until), vec![Event::RequestTimedOut(c)]);
        assert_eq!(r.counters().requests_timed_out, 2);
    }

    #[test]
    fn a_dropped_sharer_fails_its_requests_and_refuses_new_ones() {
        let t0 = Instant::now();
        let mut r = rooms();
        let w = create(&mut r, 1, ip(1), 1, t0);
        let (a, _) = r.request(&w.room, ip(9), RequestKind::Offer, t0).expect("a");
        assert_eq!(r.disconnected(1, t0), vec![a]);
        assert_eq!(r.request(&w.room, ip(9), RequestKind::Offer, t0), Err(Refusal::SharerAway));
    }

    #[test]
    fn silent_sharers_are_reported_once_per_timeout() {
        let t0 = Instant::now();
        let mut r = rooms();
        create(&mut r, 1, ip(1), 1, t0);
        let timeout = r.limits().heartbeat_timeout;
        r.heard(1, t0 + Duration::from_secs(10));
        assert!(r.poll(t0 + timeout).is_empty());
        assert_eq!(r.poll(t0 + Duration::from_secs(10) + timeout), vec![Event::Silent(1)]);
        assert!(r.poll(t0 + Duration::from_secs(11) + timeout).is_empty());
        assert_eq!(r.counters().connections_silent, 1);
    }

    #[test]
    fn limits_per_address_and_for_the_relay() {
        let t0 = Instant::now();
        let limits = Limits { max_rooms: 5, rooms_per_ip: 2, ..Limits::default() };
        let mut r = Rooms::new(limits);
        create(&mut r, 1, ip(1), 1, t0);
        create(&mut r, 2, ip(1), 2, t0);
        r.connect(3, ip(1), t0);
        assert_eq!(r.hello(3, None, false, t0, || Some(owner(3))), Err(Refusal::TooManyRoomsFromIp));
        // IPv6 addresses in one /64 count as one.
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        create(&mut r, 4, v6(1), 4, t0);
        create(&mut r, 5, v6(2), 5, t0);
        r.connect(6, v6(3), t0);
        assert_eq!(r.hello(6, None, false, t0, || Some(owner(6))), Err(Refusal::TooManyRoomsFromIp));
        create(&mut r, 7, ip(7), 7, t0);
        r.connect(8, ip(8), t0);
        assert_eq!(r.hello(8, None, false, t0, || Some(owner(8))), Err(Refusal::RelayFull));
        assert_eq!(r.counters().refused_room_limit, 3);
        // An ended room frees its place.
        r.bye(1, t0);
        create(&mut r, 9, ip(1), 9, t0);
    }

    #[test]
    fn floods_of_creations_joins_and_guesses_are_rate_limited_per_address() {
        let t0 = Instant::now();
        let mut r = Rooms::new(Limits { rooms_per_ip: 100, ..Limits::default() });
        let burst = r.limits().creates.burst;
        for n in 0..burst {
            create(&mut r, u64::from(n), ip(1), n as u8, t0);
        }
        r.connect(99, ip(1), t0);
        let Err(Refusal::RateLimited { retry_after }) = r.hello(99, None, false, t0, || Some(owner(200))) else {
            panic!("rate limited")
        };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(6), "{retry_after:?}");
        assert!(r.hello(99, None, false, t0 + retry_after, || Some(owner(201))).is_ok(), "refilled");
        // Another address is not affected.
        create(&mut r, 100, ip(2), 202, t0);
        // Joins.
        let room = owner(0).room();
        let joins = r.limits().joins.burst;
        for _ in 0..joins {
            let (id, _) = r.request(&room, ip(50), RequestKind::Offer, t0).expect("join");
            r.answer(0, id);
        }
        assert!(matches!(r.request(&room, ip(50), RequestKind::Offer, t0), Err(Refusal::RateLimited { .. })));
        assert!(r.request(&room, ip(51), RequestKind::Offer, t0).is_ok());
        // Guessing room ids.
        let misses = r.limits().misses.burst;
        for _ in 0..misses {
            assert_eq!(r.request(&owner(250).room(), ip(60), RequestKind::Leave, t0), Err(Refusal::UnknownRoom));
        }
        assert!(matches!(
            r.request(&owner(250).room(), ip(60), RequestKind::Leave, t0),
            Err(Refusal::RateLimited { .. })
        ));
        let c = r.counters();
        assert_eq!((c.refused_rate_limited, c.refused_unknown_room), (3, u64::from(misses) + 1));
    }

    #[test]
    fn pending_requests_per_room_are_bounded() {
        let t0 = Instant::now();
        let mut r = rooms();
        let w = create(&mut r, 1, ip(1), 1, t0);
        let max = r.limits().pending_per_room;
        let ids: Vec<_> = (0..max)
            .map(|i| r.request(&w.room, ip(10 + i as u8), RequestKind::Offer, t0).expect("in flight").0)
            .collect();
        assert_eq!(r.request(&w.room, ip(99), RequestKind::Offer, t0), Err(Refusal::Busy));
        r.abandon(ids[0]);
        assert!(r.request(&w.room, ip(99), RequestKind::Offer, t0).is_ok());
    }

    #[test]
    fn sessions_are_bounded_and_tracked() {
        let t0 = Instant::now();
        let mut r = Rooms::new(Limits { sessions_per_room: 2, ..Limits::default() });
        let w = create(&mut r, 1, ip(1), 1, t0);
        for s in ["a", "b", "c"] {
            r.session_opened(&w.room, s);
        }
        assert!(!r.has_session(&w.room, "a") && r.has_session(&w.room, "b") && r.has_session(&w.room, "c"));
        r.session_closed(&w.room, "b");
        assert!(!r.has_session(&w.room, "b"));
        assert_ne!(r.next_peer(&w.room), r.next_peer(&w.room));
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let t0 = Instant::now();
        let mut r = Rooms::new(Limits { tracked_ips: 64, ..Limits::default() });
        let room = owner(1).room();
        for i in 0..1000u32 {
            let _ = r.miss(IpAddr::from(i.to_be_bytes()), t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(r.ips.len() <= 64, "{}", r.ips.len());
        let _ = room;
        let tombstones = Limits { gone_remembered: 3, ..Limits::default() };
        let mut r = Rooms::new(tombstones);
        for n in 0..5 {
            create(&mut r, u64::from(n), ip(n), n, t0);
            r.bye(u64::from(n), t0);
        }
        assert_eq!((r.gone.len(), r.gone_order.len()), (3, 3));
    }
}
