//! The Linux system calls the forwarder needs: AF_PACKET sockets bound to
//! one interface, `ppoll` with a nanosecond timeout, entering a network
//! namespace, and real-time scheduling for the forwarding thread.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

const ETH_P_ALL: u16 = 0x0003;
/// `PACKET_IGNORE_OUTGOING` (Linux ≥ 4.20): do not see our own transmissions.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

/// A raw AF_PACKET socket bound to one interface: reads every frame the
/// interface receives, writes whole Ethernet frames out of it.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifname: String,
}

impl PacketSocket {
    /// Opens a non-blocking packet socket on `ifname` (in the calling
    /// thread's network namespace). Needs CAP_NET_RAW.
    pub fn open(ifname: &str) -> io::Result<Self> {
        let name = CString::new(ifname).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {ifname:?} in this namespace")));
        }
        // SAFETY: plain socket(2) call; the result is checked before use.
        let ret = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(ETH_P_ALL.to_be()),
            )
        };
        let raw = check(ret, "socket(AF_PACKET) (needs root)")?;
        // SAFETY: socket(2) returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a valid sockaddr_ll and the length matches it.
        let ret = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        check(ret, "bind(AF_PACKET)")?;
        let socket = Self { fd, ifname: ifname.to_owned() };
        // Older kernels lack it; `recv` also filters outgoing frames itself.
        let _ = socket.set_int(libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
        // Room for bursts (a 300 KB keyframe arrives at once).
        let _ = socket.set_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20);
        let _ = socket.set_int(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 8 << 20);
        Ok(socket)
    }

    fn set_int(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
        // SAFETY: `value` lives across the call and the length is its size.
        let ret = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        check(ret, "setsockopt").map(drop)
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Reads one received frame into `buf`. `Ok(None)`: nothing waiting.
    /// The length returned is the frame's real length, which may exceed
    /// `buf` (the frame was truncated: offloads are on). Frames this host
    /// sent itself are skipped.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` is valid for `buf.len()` bytes and `from` for `from_len`.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                    std::ptr::from_mut(&mut from).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(n as usize));
        }
    }

    /// Writes one whole Ethernet frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: `frame` is valid for its length; the socket is bound,
            // so send(2) needs no address.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// The raw descriptor, for polling.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout` passes; returns which
/// are readable.
pub fn poll_readable(fds: &[RawFd], timeout: Duration, ready: &mut [bool]) -> io::Result<()> {
    let mut polls: [libc::pollfd; 4] = [libc::pollfd { fd: -1, events: 0, revents: 0 }; 4];
    assert!(fds.len() <= polls.len() && ready.len() >= fds.len(), "at most 4 descriptors");
    for (p, &fd) in polls.iter_mut().zip(fds) {
        *p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    }
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `polls` holds `fds.len()` initialised entries; `ts` is valid;
    // a null signal mask leaves the mask unchanged.
    let n = unsafe { libc::ppoll(polls.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            ready.iter_mut().for_each(|r| *r = false);
            return Ok(());
        }
        return Err(e);
    }
    for (r, p) in ready.iter_mut().zip(&polls[..fds.len()]) {
        *r = p.revents & (libc::POLLIN | libc::POLLERR) != 0;
    }
    Ok(())
}

/// Moves the calling thread into the network namespace `name` (as created
/// by `ip netns add`, i.e. `/run/netns/NAME`). Other threads are unaffected;
/// sockets the thread opens afterwards live in that namespace.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let path = format!("/run/netns/{name}");
    let file = std::fs::File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    // SAFETY: `file` is an open namespace file for the duration of the call.
    check(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, "setns")?;
    Ok(())
}

/// Gives the calling thread real-time priority (SCHED_FIFO) so the link's
/// timing does not depend on how busy the machine is. Best effort: returns
/// the error when not permitted.
pub fn set_realtime(priority: i32) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: priority };
    // SAFETY: pid 0 is the calling thread; `param` is valid for the call.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) }, "sched_setscheduler").map(drop)
}
