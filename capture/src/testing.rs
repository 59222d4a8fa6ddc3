//! Test and benchmark helpers: a private Xvfb server and a window that shows
//! synthetic content, and a private Wayland desktop ([`wayland`]). Used by
//! Peep's own tests, benches and `peep demo-window`.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use x11rb::connection::Connection;
use x11rb::protocol::shm::ConnectionExt as _;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

use crate::error::Result;
use crate::ring::SlotMemory;

pub mod wayland;
pub mod wayland_demo;

/// A private Xvfb server, killed on drop.
#[derive(Debug)]
pub struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    /// Starts `Xvfb` with one screen of `width`×`height`×24 on a free display
    /// number (chosen by the server through `-displayfd`).
    ///
    /// Fails with a message naming the Debian package when Xvfb is missing.
    pub fn start(width: u32, height: u32) -> std::result::Result<Self, String> {
        Self::start_with(width, height, &[])
    }

    /// Like [`Xvfb::start`] with extra server arguments after the defaults
    /// (e.g. `-extension RANDR`: Chromium's screen capturer cannot select
    /// Xvfb's RandR monitor, and captures the whole screen without RandR).
    pub fn start_with(width: u32, height: u32, extra_args: &[&str]) -> std::result::Result<Self, String> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: pipe returned two fresh fds that we now own.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // The read end must not leak into the child; the write end must.
        // SAFETY: valid fd, plain fcntl flag change.
        unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        let child = Command::new("Xvfb")
            .args(["-displayfd", &write.as_raw_fd().to_string(), "-screen", "0", &format!("{width}x{height}x24")])
            .args([
                "-nolisten",
                "tcp",
                "-noreset",
                "+extension",
                "COMPOSITE",
                "+extension",
                "DAMAGE",
                "+extension",
                "RANDR",
            ])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start Xvfb ({e}): install it with `apt-get install xvfb`"))?;
        drop(write);
        let mut line = String::new();
        BufReader::new(std::fs::File::from(read))
            .read_line(&mut line)
            .map_err(|e| format!("reading Xvfb's display number: {e}"))?;
        let number = line.trim();
        if number.is_empty() {
            return Err("Xvfb exited before reporting a display number".into());
        }
        Ok(Self { child, display: format!(":{number}") })
    }

    /// The display name, e.g. `":5"`.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The server's process id (for benchmarks that count its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server at once (SIGKILL, as a crash would) and waits for
    /// it: fault injection for "the display server died".
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain top-level window that can show BGRA content, for tests and the
/// comparison benchmark.
pub struct DemoWindow {
    conn: Arc<RustConnection>,
    /// The window id.
    pub window: xproto::Window,
    gc: xproto::Gcontext,
    shm: Option<(SlotMemory, u32, u32)>,
}

impl std::fmt::Debug for DemoWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoWindow").field("window", &self.window).finish()
    }
}

impl DemoWindow {
    /// Creates and maps a window at (x, y) of `width`×`height` titled `title`.
    pub fn open(conn: Arc<RustConnection>, x: i16, y: i16, width: u16, height: u16, title: &str) -> Result<Self> {
        let screen = &conn.setup().roots[0];
        let (root, visual, black) = (screen.root, screen.root_visual, screen.black_pixel);
        let window = conn.generate_id()?;
        conn.create_window(
            24,
            window,
            root,
            x,
            y,
            width,
            height,
            0,
            xproto::WindowClass::INPUT_OUTPUT,
            visual,
            &xproto::CreateWindowAux::new().background_pixel(black).override_redirect(0),
        )?;
        conn.change_property8(
            xproto::PropMode::REPLACE,
            window,
            xproto::AtomEnum::WM_NAME,
            xproto::AtomEnum::STRING,
            title.as_bytes(),
        )?;
        conn.change_property8(
            xproto::PropMode::REPLACE,
            window,
            xproto::AtomEnum::WM_CLASS,
            xproto::AtomEnum::STRING,
            b"peep-demo\0PeepDemo\0",
        )?;
        let gc = conn.generate_id()?;
        conn.create_gc(gc, window, &xproto::CreateGCAux::new().graphics_exposures(0))?;
        conn.map_window(window)?;
        conn.sync()?;
        Ok(Self { conn, window, gc, shm: None })
    }

    /// Shows a BGRA image (`stride_bytes` per row) at the window's top-left,
    /// through a shared-memory segment reused while the size stays the same.
    pub fn show(&mut self, bgra: &[u8], width: u32, height: u32, stride_bytes: usize) -> Result<()> {
        self.show_region(bgra, width, height, stride_bytes, crate::frame::DamageRect { x: 0, y: 0, width, height })
    }

    /// Like [`DemoWindow::show`], but sends only `region` of the image to
    /// the server (as an application repainting only what changed does), so
    /// the X server's damage covers only that region.
    pub fn show_region(
        &mut self,
        bgra: &[u8],
        width: u32,
        height: u32,
        stride_bytes: usize,
        region: crate::frame::DamageRect,
    ) -> Result<()> {
        let len = width as usize * height as usize * 4;
        if self.shm.as_ref().is_none_or(|(_, w, h)| (*w, *h) != (width, height)) {
            self.shm = None;
            self.shm = Some((super::backend::x11::alloc_shm(&self.conn, len)?, width, height));
        }
        let (memory, _, _) = self.shm.as_mut().expect("just set");
        let dst = memory.as_mut_slice();
        for y in 0..height as usize {
            dst[y * width as usize * 4..(y + 1) * width as usize * 4]
                .copy_from_slice(&bgra[y * stride_bytes..y * stride_bytes + width as usize * 4]);
        }
        let seg = memory.key() as u32;
        let region = crate::frame::DamageRect::clipped(
            region.x.into(),
            region.y.into(),
            region.width.into(),
            region.height.into(),
            width,
            height,
        );
        if region.is_empty() {
            return Ok(());
        }
        self.conn.shm_put_image(
            self.window,
            self.gc,
            width as u16,
            height as u16,
            region.x as u16,
            region.y as u16,
            region.width as u16,
            region.height as u16,
            region.x as i16,
            region.y as i16,
            24,
            xproto::ImageFormat::Z_PIXMAP.into(),
            false,
            seg,
            0,
        )?;
        // Wait until the server has read the segment before it is reused.
        self.conn.sync()?;
        Ok(())
    }

    /// Fills a rectangle with a solid colour (0xRRGGBB).
    pub fn fill(&self, x: i16, y: i16, width: u16, height: u16, rgb: u32) -> Result<()> {
        self.conn.change_gc(self.gc, &xproto::ChangeGCAux::new().foreground(rgb))?;
        self.conn.poly_fill_rectangle(self.window, self.gc, &[xproto::Rectangle { x, y, width, height }])?;
        self.conn.sync()?;
        Ok(())
    }

    /// Moves and resizes the window.
    pub fn configure(&self, x: i32, y: i32, width: u32, height: u32) -> Result<()> {
        self.conn
            .configure_window(self.window, &xproto::ConfigureWindowAux::new().x(x).y(y).width(width).height(height))?;
        self.conn.sync()?;
        Ok(())
    }

    /// Destroys the window.
    pub fn close(self) -> Result<()> {
        self.conn.destroy_window(self.window)?;
        self.conn.sync()?;
        Ok(())
    }
}

/// A separate X client that draws a [`crate::synthetic::SyntheticScene`]
/// into a window at (0, 0) at a fixed rate, on its own thread and
/// connection, stamping each picture's mark with the wall-clock time just
/// before it is sent: what a capture sees as "the screen changed". The
/// latency benchmarks read these marks back. Stops on drop.
#[derive(Debug)]
pub struct Painter {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<u64>>>,
}

impl Painter {
    /// Connects to `display` and starts drawing `scene` at `fps` into a
    /// `width`×`height` window.
    pub fn start(display: &str, width: u32, height: u32, scene: crate::synthetic::Scene, fps: f32) -> Result<Self> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};
        let session = crate::backend::x11::X11Session::connect_to(Some(display))?;
        let mut window = DemoWindow::open(session.connection().clone(), 0, 0, width as u16, height as u16, "painter")?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("peep-painter".into())
                .spawn(move || {
                    let content = crate::synthetic::SyntheticScene::new(width as usize, height as usize, scene);
                    let stride = width as usize * 4;
                    let mut frame = vec![0u8; stride * height as usize];
                    let period = Duration::from_secs_f32(1.0 / fps.clamp(0.1, 240.0));
                    let mut next = Instant::now();
                    let mut drawn = 0u64;
                    for index in 0u64.. {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        if index == 0 || content.changed(index) {
                            content.render_content(index, &mut frame, stride);
                            content.render_mark(&mut frame, stride, crate::marks::FrameMark::now(index as u32));
                            // Repaint only what changed, as applications do.
                            let all = crate::frame::DamageRect { x: 0, y: 0, width, height };
                            window.show_region(&frame, width, height, stride, content.damage(index).unwrap_or(all))?;
                            drawn += 1;
                        }
                        next += period;
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else {
                            next = now;
                        }
                    }
                    Ok(drawn)
                })
                .map_err(|e| crate::CaptureError::X11(format!("spawning the painter thread: {e}")))?
        };
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Stops drawing; returns how many pictures were drawn.
    pub fn stop(mut self) -> Result<u64> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(crate::CaptureError::X11("painter thread panicked".into()))),
            None => Ok(0),
        }
    }
}

impl Drop for Painter {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}
