//! A Wayland window showing Peep's synthetic scene (with frame marks) in
//! shared-memory buffers: the Wayland twin of [`super::DemoWindow`], so
//! tests and benchmarks show the same content on both capture paths.

use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use wayland_client::protocol::{wl_buffer, wl_compositor, wl_registry, wl_shm, wl_shm_pool, wl_surface};
use wayland_client::{Connection, Dispatch, EventQueue, QueueHandle, delegate_noop};
use wayland_protocols::xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base};

use crate::marks::FrameMark;
use crate::synthetic::{Scene, SyntheticScene};

type Result<T> = std::result::Result<T, String>;

#[derive(Default)]
struct App {
    compositor: Option<wl_compositor::WlCompositor>,
    shm: Option<wl_shm::WlShm>,
    wm_base: Option<xdg_wm_base::XdgWmBase>,
    configured: bool,
    size: (i32, i32),
    closed: bool,
    free: [bool; 2],
}

impl Dispatch<wl_registry::WlRegistry, ()> for App {
    fn event(
        app: &mut Self,
        registry: &wl_registry::WlRegistry,
        event: wl_registry::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        if let wl_registry::Event::Global { name, interface, .. } = event {
            match interface.as_str() {
                "wl_compositor" => app.compositor = Some(registry.bind(name, 4, qh, ())),
                "wl_shm" => app.shm = Some(registry.bind(name, 1, qh, ())),
                "xdg_wm_base" => app.wm_base = Some(registry.bind(name, 1, qh, ())),
                _ => {}
            }
        }
    }
}

impl Dispatch<xdg_wm_base::XdgWmBase, ()> for App {
    fn event(
        _: &mut Self,
        base: &xdg_wm_base::XdgWmBase,
        event: xdg_wm_base::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_wm_base::Event::Ping { serial } = event {
            base.pong(serial);
        }
    }
}

impl Dispatch<xdg_surface::XdgSurface, ()> for App {
    fn event(
        app: &mut Self,
        surface: &xdg_surface::XdgSurface,
        event: xdg_surface::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_surface::Event::Configure { serial } = event {
            surface.ack_configure(serial);
            app.configured = true;
        }
    }
}

impl Dispatch<xdg_toplevel::XdgToplevel, ()> for App {
    fn event(
        app: &mut Self,
        _: &xdg_toplevel::XdgToplevel,
        event: xdg_toplevel::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            xdg_toplevel::Event::Configure { width, height, .. } if width > 0 && height > 0 => {
                app.size = (width, height);
            }
            xdg_toplevel::Event::Close => app.closed = true,
            _ => {}
        }
    }
}

impl Dispatch<wl_buffer::WlBuffer, usize> for App {
    fn event(
        app: &mut Self,
        _: &wl_buffer::WlBuffer,
        event: wl_buffer::Event,
        index: &usize,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_buffer::Event::Release = event {
            app.free[*index] = true;
        }
    }
}

delegate_noop!(App: ignore wl_compositor::WlCompositor);
delegate_noop!(App: ignore wl_surface::WlSurface);
delegate_noop!(App: ignore wl_shm::WlShm);
delegate_noop!(App: ignore wl_shm_pool::WlShmPool);

/// Shared memory for the window's two buffers.
struct Mapping {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Result<Self> {
        // SAFETY: the name is NUL-terminated; no other preconditions.
        let raw = unsafe { libc::memfd_create(c"peep-demo".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: valid fd; plain size change.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(format!("ftruncate: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: mapping a memfd of exactly `len` bytes, shared with the compositor.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast()).ok_or("mmap returned null")?;
        Ok(Self { fd, ptr, len })
    }

    fn slice(&mut self, offset: usize, len: usize) -> &mut [u8] {
        assert!(offset + len <= self.len, "slice within the mapping");
        // SAFETY: within the mapping (checked), and &mut self makes it exclusive
        // on our side; the compositor reads a buffer only between attach and release.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Two buffers of one size and the scene drawn into them.
struct Frame {
    size: (i32, i32),
    frame_len: usize,
    memory: Mapping,
    pool: wl_shm_pool::WlShmPool,
    buffers: Vec<wl_buffer::WlBuffer>,
    content: SyntheticScene,
}

impl Frame {
    fn new(shm: &wl_shm::WlShm, qh: &QueueHandle<App>, size: (i32, i32), scene: Scene) -> Result<Self> {
        let (w, h) = size;
        let frame_len = w as usize * h as usize * 4;
        let memory = Mapping::new(2 * frame_len)?;
        let pool = shm.create_pool(memory.fd.as_fd(), (2 * frame_len) as i32, qh, ());
        let buffers = (0..2)
            .map(|i| pool.create_buffer((i * frame_len) as i32, w, h, w * 4, wl_shm::Format::Xrgb8888, qh, i))
            .collect();
        let content = SyntheticScene::new(w as usize, h as usize, scene);
        Ok(Self { size, frame_len, memory, pool, buffers, content })
    }

    fn destroy(self) {
        for b in &self.buffers {
            b.destroy();
        }
        self.pool.destroy();
    }
}

/// Waits up to `timeout` for events, then dispatches them.
fn pump(queue: &mut EventQueue<App>, app: &mut App, timeout: Duration) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| format!("wayland: {e}");
    queue.flush().map_err(|e| err(&e))?;
    queue.dispatch_pending(app).map_err(|e| err(&e))?;
    if let Some(guard) = queue.prepare_read() {
        let mut pfd = libc::pollfd { fd: guard.connection_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } > 0 {
            guard.read().map_err(|e| err(&e))?;
        }
    }
    queue.dispatch_pending(app).map_err(|e| err(&e))?;
    Ok(())
}

/// Shows `scene` in a window titled `title` on the compositor at
/// `socket` (an absolute `WAYLAND_DISPLAY` path), drawing a new frame
/// `fps` times a second (only when the scene changes), for `seconds`
/// (`None`: until the compositor closes the window or the connection).
pub fn run(socket: &Path, title: &str, scene: Scene, fps: f32, seconds: Option<f64>) -> Result<()> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
    let conn = Connection::from_socket(stream).map_err(|e| format!("wayland: {e}"))?;
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    let mut app = App { free: [true; 2], ..App::default() };
    queue.roundtrip(&mut app).map_err(|e| format!("wayland: {e}"))?;
    let (Some(compositor), Some(shm), Some(wm_base)) = (app.compositor.clone(), app.shm.clone(), app.wm_base.clone())
    else {
        return Err("the compositor lacks wl_compositor, wl_shm or xdg_wm_base".into());
    };
    let surface = compositor.create_surface(&qh, ());
    let xdg = wm_base.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_title(title.to_owned());
    toplevel.set_app_id("peep-demo".to_owned());
    surface.commit();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.configured {
        if Instant::now() > deadline {
            return Err("the compositor never configured the window".into());
        }
        pump(&mut queue, &mut app, Duration::from_millis(100))?;
    }
    let mut drawn = None;
    let mut frame = None;
    let period = Duration::from_secs_f32(1.0 / fps.clamp(0.5, 240.0));
    let started = Instant::now();
    let mut next = started;
    for index in 0u64.. {
        if app.closed || seconds.is_some_and(|s| started.elapsed().as_secs_f64() >= s) {
            break;
        }
        // (Re)allocate when the compositor gives the window a new size.
        let size = if app.size.0 > 0 { app.size } else { (640, 480) };
        if frame.as_ref().is_none_or(|f: &Frame| f.size != size) {
            if let Some(old) = frame.take() {
                old.destroy();
            }
            frame = Some(Frame::new(&shm, &qh, size, scene)?);
            app.free = [true; 2];
            drawn = None;
        }
        let f = frame.as_mut().expect("allocated above");
        if drawn.is_none() || f.content.changed(index) {
            // A free buffer (the compositor releases each after use).
            while !app.free.iter().any(|b| *b) {
                pump(&mut queue, &mut app, Duration::from_millis(50))?;
            }
            let i = app.free.iter().position(|b| *b).expect("a free buffer");
            app.free[i] = false;
            let (w, h) = f.size;
            let len = f.frame_len;
            f.content.render(index, f.memory.slice(i * len, len), w as usize * 4, FrameMark::now(index as u32));
            surface.attach(Some(&f.buffers[i]), 0, 0);
            surface.damage_buffer(0, 0, w, h);
            surface.commit();
            drawn = Some(index);
        }
        next += period;
        let now = Instant::now();
        if next > now {
            pump(&mut queue, &mut app, next - now)?;
            // Events may wake us early: sleep the rest.
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        } else {
            next = now;
            pump(&mut queue, &mut app, Duration::ZERO)?;
        }
    }
    if let Some(f) = frame {
        f.destroy();
    }
    toplevel.destroy();
    xdg.destroy();
    surface.destroy();
    let _ = conn.flush();
    Ok(())
}
