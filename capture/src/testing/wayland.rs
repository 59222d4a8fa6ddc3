//! A private Wayland desktop for tests and benchmarks: a D-Bus session bus,
//! PipeWire and WirePlumber, sway headless (pixman renderer, as `nobody`:
//! sway refuses root), xdg-desktop-portal-wlr (Debian's source with Peep's
//! shared-memory patch, `.ci/xdpw-shm-only.patch`) and xdg-desktop-portal.
//! The portal's picker is a script whose answer the test sets (an output
//! name, or nothing = the user cancelled) and which counts its runs, so a
//! test can tell a dialog from a restored choice.
//!
//! Every process joins one process group. A small guardian process (`sh`)
//! holds the read end of a pipe whose write end only this process has: when
//! the test process ends — normally, by panic or killed — the pipe closes
//! and the guardian kills the group and removes the directory. So a fixture
//! kept in a `static` (which Rust never drops) leaves nothing behind either.
//! `PEEP_KEEP_TEST_DIRS=1` keeps the directory (with every component's log).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where `.ci/build-xdpw` installs the patched portal backend.
pub const XDPW_INSTALLED: &str = "/usr/local/libexec/peep/xdg-desktop-portal-wlr";
/// The output sway's headless backend creates first.
pub const OUTPUT: &str = "HEADLESS-1";
/// How long each component may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

type Result<T> = std::result::Result<T, String>;

/// Processes that live and die together (see the module docs).
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: Option<i32>,
    guardian: Option<(Child, ChildStdin)>,
    children: Vec<Child>,
    names: Vec<(String, u32)>,
    dir: PathBuf,
}

impl ProcessGroup {
    /// A group whose guardian removes `dir` when it cleans up.
    pub fn new(dir: &Path) -> Result<Self> {
        let mut guardian = Command::new("sh")
            .args([
                "-c",
                r#"read pgid || exit 0
cat >/dev/null
kill -TERM -"$pgid" 2>/dev/null
i=0
while kill -0 -"$pgid" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL -"$pgid" 2>/dev/null
[ -n "$PEEP_KEEP_TEST_DIRS" ] || rm -rf "$1""#,
                "peep-test-guardian",
            ])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the cleanup guardian (sh): {e}"))?;
        let stdin = guardian.stdin.take().ok_or("guardian stdin")?;
        Ok(Self {
            pgid: None,
            guardian: Some((guardian, stdin)),
            children: Vec::new(),
            names: Vec::new(),
            dir: dir.to_owned(),
        })
    }

    /// Spawns `command` into the group (the first one founds it).
    pub fn spawn(&mut self, command: &mut Command) -> std::io::Result<u32> {
        command.process_group(self.pgid.unwrap_or(0));
        let child = command.spawn()?;
        let pid = child.id();
        let program = Path::new(command.get_program()).file_name().map(|n| n.to_string_lossy().into_owned());
        // setpriv execs the program it is given (sway): name it by that.
        let name = match program.as_deref() {
            Some("setpriv") => command.get_args().nth(3).map(|a| a.to_string_lossy().into_owned()),
            other => other.map(str::to_owned),
        };
        self.names.push((name.unwrap_or_default(), pid));
        if self.pgid.is_none() {
            let pgid = pid as i32;
            self.pgid = Some(pgid);
            if let Some((_, stdin)) = &mut self.guardian {
                writeln!(stdin, "{pgid}")?;
                stdin.flush()?;
            }
        }
        self.children.push(child);
        Ok(pid)
    }

    /// Whether a child spawned here has exited (its pid and status).
    pub fn exited(&mut self) -> Option<(u32, std::process::ExitStatus)> {
        self.children.iter_mut().find_map(|c| c.try_wait().ok().flatten().map(|s| (c.id(), s)))
    }

    /// Kills one child (SIGKILL, as a crash would) and reaps it.
    pub fn kill(&mut self, pid: u32) {
        self.names.retain(|(_, p)| *p != pid);
        if let Some(i) = self.children.iter().position(|c| c.id() == pid) {
            let mut child = self.children.swap_remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the group, waits for the guardian to finish and for our children.
    pub fn stop(&mut self) {
        if let Some((mut guardian, stdin)) = self.guardian.take() {
            drop(stdin);
            let _ = guardian.wait();
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var_os("PEEP_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unique_dir(prefix: &str) -> Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir =
        std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    Ok(dir)
}

fn mkdir(path: &Path, mode: u32) -> Result<PathBuf> {
    std::fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
    Ok(path.to_owned())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn require(program: &str, package: &str) -> Result<()> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found { Ok(()) } else { Err(format!("`{program}` is missing: install it with `apt-get install {package}`")) }
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while !ready() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not come up within {} s", START_TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A private D-Bus session bus. Only the services named at start can be
/// activated on it (no document portal, so no FUSE mount to leave behind).
#[derive(Debug)]
pub struct SessionBus {
    address: String,
}

impl SessionBus {
    /// Starts `dbus-daemon` in `group`, with `dir` for its socket and config
    /// and `env` for the services it activates.
    pub fn start(group: &mut ProcessGroup, dir: &Path, activatable: &[&str], env: &[(&str, OsString)]) -> Result<Self> {
        require("dbus-daemon", "dbus")?;
        let services = mkdir(&dir.join("dbus-services"), 0o755)?;
        for name in activatable {
            let file = format!("/usr/share/dbus-1/services/{name}.service");
            std::fs::copy(&file, services.join(format!("{name}.service")))
                .map_err(|e| format!("copying {file}: {e} (is its package installed?)"))?;
        }
        let socket = dir.join("bus");
        let config = dir.join("dbus.conf");
        write(
            &config,
            &format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <servicedir>{}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display(),
                services.display()
            ),
        )?;
        let mut cmd = Command::new("dbus-daemon");
        cmd.arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        group.spawn(&mut cmd).map_err(|e| format!("starting dbus-daemon: {e}"))?;
        let stdout = group.children.last_mut().and_then(|c| c.stdout.take()).ok_or("dbus-daemon stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("reading the bus address: {e}"))?;
        let address = line.trim().to_owned();
        if address.is_empty() {
            return Err("dbus-daemon exited without printing its address".into());
        }
        Ok(Self { address })
    }

    /// The bus address (`unix:path=…`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether `name` has an owner on this bus.
    pub fn has_owner(&self, name: &str) -> bool {
        Command::new("dbus-send")
            .args([
                &format!("--bus={}", self.address),
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                &format!("string:{name}"),
            ])
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
    }
}

/// A bus with no portal on it (for "the portal is missing" tests), and
/// optionally the portal frontend without any backend.
#[derive(Debug)]
pub struct BareBus {
    bus: SessionBus,
    group: ProcessGroup,
}

impl BareBus {
    /// A session bus where nothing provides `org.freedesktop.portal.Desktop`.
    pub fn start() -> Result<Self> {
        let dir = unique_dir("peep-bus")?;
        let mut group = ProcessGroup::new(&dir)?;
        let bus = SessionBus::start(&mut group, &dir, &[], &[])?;
        Ok(Self { bus, group })
    }

    /// A session bus where xdg-desktop-portal runs but finds no backend
    /// that implements the ScreenCast portal.
    pub fn start_with_frontend_only() -> Result<Self> {
        require("/usr/libexec/xdg-desktop-portal", "xdg-desktop-portal")?;
        let dir = unique_dir("peep-bus")?;
        let mut group = ProcessGroup::new(&dir)?;
        let runtime = mkdir(&dir.join("runtime"), 0o700)?;
        let portals = mkdir(&dir.join("no-portals"), 0o755)?;
        let env: Vec<(&str, OsString)> = vec![
            ("XDG_RUNTIME_DIR", runtime.into()),
            ("HOME", dir.clone().into()),
            ("XDG_DESKTOP_PORTAL_DIR", portals.into()),
            ("XDG_CURRENT_DESKTOP", "none".into()),
        ];
        let bus = SessionBus::start(&mut group, &dir, &[], &env)?;
        let mut cmd = Command::new("/usr/libexec/xdg-desktop-portal");
        cmd.arg("-r")
            .env("DBUS_SESSION_BUS_ADDRESS", bus.address())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        group.spawn(&mut cmd).map_err(|e| format!("starting xdg-desktop-portal: {e}"))?;
        wait_until("xdg-desktop-portal", || bus.has_owner("org.freedesktop.portal.Desktop"))?;
        Ok(Self { bus, group })
    }

    /// The bus address.
    pub fn address(&self) -> &str {
        self.bus.address()
    }

    /// Stops everything now.
    pub fn stop(mut self) {
        self.group.stop();
    }
}

/// The whole private desktop (see the module docs).
#[derive(Debug)]
pub struct WaylandDesktop {
    group: ProcessGroup,
    dir: PathBuf,
    runtime: PathBuf,
    bus: SessionBus,
    wayland_socket: PathBuf,
    sway_socket: PathBuf,
    sway_env: Vec<(&'static str, OsString)>,
    xdpw: (String, Vec<(&'static str, OsString)>),
    xdpw_pid: u32,
}

impl WaylandDesktop {
    /// Starts the desktop with one `width`×`height` output showing black.
    /// Fails with what to install when a component is missing.
    pub fn start(width: u32, height: u32) -> Result<Self> {
        for (program, package) in [
            ("sway", "sway"),
            ("swaymsg", "sway"),
            ("swaybg", "swaybg"),
            ("pipewire", "pipewire-bin"),
            ("wireplumber", "wireplumber"),
            ("setpriv", "util-linux"),
            ("dbus-send", "dbus"),
            ("/usr/libexec/xdg-desktop-portal", "xdg-desktop-portal"),
            ("/usr/libexec/xdg-permission-store", "xdg-desktop-portal"),
        ] {
            require(program, package)?;
        }
        let xdpw = std::env::var_os("PEEP_XDPW").map_or_else(|| PathBuf::from(XDPW_INSTALLED), PathBuf::from);
        if !xdpw.exists() {
            return Err(format!(
                "the patched xdg-desktop-portal-wlr is missing at {}: build it with `bash .ci/build-xdpw` \
                 (Debian's 0.7.0 cannot stream without a GPU; the build needs meson ninja-build \
                 wayland-protocols libinih-dev libgbm-dev libdrm-dev libsystemd-dev libpipewire-0.3-dev \
                 libwayland-dev dpkg-dev)",
                xdpw.display()
            ));
        }
        let dir = unique_dir("peep-wayland")?;
        let mut group = ProcessGroup::new(&dir)?;
        let runtime = mkdir(&dir.join("runtime"), 0o700)?;
        let home = mkdir(&dir.join("home"), 0o700)?;
        let config = mkdir(&dir.join("config"), 0o755)?;
        let sway_runtime = mkdir(&dir.join("sway-runtime"), 0o700)?;
        let sway_home = mkdir(&dir.join("sway-home"), 0o700)?;
        for d in [&sway_runtime, &sway_home] {
            let status = Command::new("chown").arg("nobody:nogroup").arg(d).status().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("chown nobody {}", d.display()));
            }
        }
        let base_env: Vec<(&str, OsString)> = vec![
            ("XDG_RUNTIME_DIR", runtime.clone().into()),
            ("HOME", home.clone().into()),
            ("XDG_CONFIG_HOME", config.clone().into()),
            ("XDG_DATA_HOME", home.join("data").into()),
            ("XDG_STATE_HOME", home.join("state").into()),
            ("XDG_CURRENT_DESKTOP", "sway".into()),
            ("XDG_SESSION_TYPE", "wayland".into()),
        ];
        let bus = SessionBus::start(&mut group, &dir, &["org.freedesktop.impl.portal.PermissionStore"], &base_env)?;
        let mut env = base_env.clone();
        env.push(("DBUS_SESSION_BUS_ADDRESS", bus.address().into()));
        let quiet = |cmd: &mut Command, log: &str| -> Result<()> {
            let file = std::fs::File::create(dir.join(log)).map_err(|e| e.to_string())?;
            cmd.stdin(Stdio::null()).stdout(file.try_clone().map_err(|e| e.to_string())?).stderr(file);
            Ok(())
        };
        let spawn = |group: &mut ProcessGroup, program: &str, args: &[&str], env: &[(&str, OsString)], log: &str| {
            let mut cmd = Command::new(program);
            cmd.args(args).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
            quiet(&mut cmd, log)?;
            group.spawn(&mut cmd).map(|_| ()).map_err(|e| format!("starting {program}: {e}"))
        };
        spawn(&mut group, "pipewire", &[], &env, "pipewire.log")?;
        wait_until("pipewire", || runtime.join("pipewire-0").exists())?;
        spawn(&mut group, "wireplumber", &[], &env, "wireplumber.log")?;
        // WirePlumber links the portal's stream to its consumer: wait until
        // both of its connections are up (CI runs saw a first stream that got
        // no buffers; whether WirePlumber's start-up is the cause is not
        // proven).
        let pipewire_env = env.clone();
        wait_until("wireplumber", || {
            let mut dump = Command::new("pw-dump");
            dump.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
            dump.envs(pipewire_env.iter().map(|(k, v)| (k, v))).stderr(Stdio::null());
            dump.output().is_ok_and(|o| {
                let text = String::from_utf8_lossy(&o.stdout);
                text.contains("\"application.name\": \"WirePlumber\"")
                    && text.contains("\"application.name\": \"WirePlumber [export]\"")
            })
        })?;

        // sway, as nobody, with its own runtime dir.
        let sway_config = dir.join("sway.conf");
        write(
            &sway_config,
            &format!(
                "xwayland disable\noutput {OUTPUT} mode --custom {width}x{height} bg #000000 solid_color\n\
                 default_border none\ndefault_floating_border none\nfocus_follows_mouse no\n"
            ),
        )?;
        let sway_env: Vec<(&'static str, OsString)> = vec![
            ("XDG_RUNTIME_DIR", sway_runtime.clone().into()),
            ("HOME", sway_home.clone().into()),
            ("WLR_BACKENDS", "headless".into()),
            ("WLR_RENDERER", "pixman".into()),
            ("WLR_LIBINPUT_NO_DEVICES", "1".into()),
        ];
        let sway_config_arg = sway_config.display().to_string();
        spawn(
            &mut group,
            "setpriv",
            &["--reuid=nobody", "--regid=nogroup", "--clear-groups", "sway", "-c", &sway_config_arg],
            &sway_env,
            "sway.log",
        )?;
        let find = |prefix: &str, suffix: &str| -> Option<PathBuf> {
            std::fs::read_dir(&sway_runtime).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix) && !n.ends_with(".lock"))
            })
        };
        let mut wayland_socket = None;
        let mut sway_socket = None;
        let mut sway_died = None;
        wait_until("sway", || {
            wayland_socket = find("wayland-", "");
            sway_socket = find("sway-ipc.", ".sock");
            sway_died = group.exited();
            (wayland_socket.is_some() && sway_socket.is_some()) || sway_died.is_some()
        })?;
        if let Some((pid, status)) = sway_died {
            let log = std::fs::read_to_string(dir.join("sway.log")).unwrap_or_default();
            return Err(format!("a desktop process ({pid}) exited with {status}; sway's log:\n{log}"));
        }
        let (wayland_socket, sway_socket) = (wayland_socket.ok_or("no socket")?, sway_socket.ok_or("no socket")?);
        env.push(("WAYLAND_DISPLAY", wayland_socket.clone().into()));

        // The portal backend: non-interactive picker script, restore tokens on.
        let chooser = dir.join("chooser.sh");
        write(&chooser, &format!("#!/bin/sh\necho run >> {0}/chooser.log\ncat {0}/chooser.answer\n", dir.display()))?;
        std::fs::set_permissions(&chooser, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        write(&dir.join("chooser.answer"), &format!("{OUTPUT}\n"))?;
        let xdpw_config = mkdir(&config.join("xdg-desktop-portal-wlr"), 0o755)?;
        write(
            &xdpw_config.join("config"),
            &format!("[screencast]\nchooser_type=simple\nchooser_cmd={}\nmax_fps=30\n", chooser.display()),
        )?;
        let mut xdpw_env = env.clone();
        // xdpw issues restore tokens only when told it may (no dialog to ask).
        xdpw_env.push(("XDPW_PERSIST_MODE", "permanent".into()));
        let xdpw = xdpw.display().to_string();
        let xdpw_pid = Self::spawn_xdpw(&mut group, &dir, &bus, &xdpw, &xdpw_env)?;
        spawn(&mut group, "/usr/libexec/xdg-desktop-portal", &["-r"], &env, "xdg-desktop-portal.log")?;
        wait_until("xdg-desktop-portal", || bus.has_owner("org.freedesktop.portal.Desktop"))?;
        let desktop =
            Self { group, dir, runtime, bus, wayland_socket, sway_socket, sway_env, xdpw: (xdpw, xdpw_env), xdpw_pid };
        // The first frame may be grey until swaybg has drawn.
        desktop.swaymsg(&format!("output {OUTPUT} bg #000000 solid_color"))?;
        Ok(desktop)
    }

    fn spawn_xdpw(
        group: &mut ProcessGroup,
        dir: &Path,
        bus: &SessionBus,
        program: &str,
        env: &[(&str, OsString)],
    ) -> Result<u32> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("xdpw.log"))
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(program);
        cmd.args(["-r", "-l", "DEBUG"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let pid = group.spawn(&mut cmd).map_err(|e| format!("starting {program}: {e}"))?;
        wait_until("xdg-desktop-portal-wlr", || bus.has_owner("org.freedesktop.impl.portal.desktop.wlr"))?;
        Ok(pid)
    }

    /// Kills the portal backend (xdg-desktop-portal-wlr) the way a crash or
    /// the compositor ending the cast would: its PipeWire streams vanish.
    /// Then starts a new one for the next test.
    pub fn restart_portal_backend(&mut self) -> Result<()> {
        self.group.kill(self.xdpw_pid);
        wait_until("the old portal backend to leave the bus", || {
            !self.bus.has_owner("org.freedesktop.impl.portal.desktop.wlr")
        })?;
        let (program, env) = &self.xdpw;
        self.xdpw_pid = Self::spawn_xdpw(&mut self.group, &self.dir, &self.bus, program, env)?;
        Ok(())
    }

    /// The variables a client of this desktop needs (`DISPLAY` must be removed).
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("XDG_RUNTIME_DIR", self.runtime.clone().into()),
            ("WAYLAND_DISPLAY", self.wayland_socket.clone().into()),
            ("DBUS_SESSION_BUS_ADDRESS", self.bus.address().into()),
            ("XDG_SESSION_TYPE", "wayland".into()),
            ("XDG_CURRENT_DESKTOP", "sway".into()),
        ]
    }

    /// A command that runs as a client of this desktop.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env()).env_remove("DISPLAY");
        cmd
    }

    /// The compositor's socket (an absolute `WAYLAND_DISPLAY`).
    pub fn wayland_socket(&self) -> &Path {
        &self.wayland_socket
    }

    /// Process ids of the desktop's long-running parts, by name (for
    /// benchmarks that count their CPU time).
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.group.names.clone()
    }

    /// The session bus address.
    pub fn bus_address(&self) -> &str {
        self.bus.address()
    }

    /// The fixture's directory (logs: `sway.log`, `xdpw.log`, …).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs a sway command (`swaymsg`).
    pub fn swaymsg(&self, command: &str) -> Result<String> {
        let out = Command::new("swaymsg")
            .arg("-s")
            .arg(&self.sway_socket)
            .arg(command)
            .output()
            .map_err(|e| format!("swaymsg: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() && !text.contains("\"success\": false") {
            Ok(text)
        } else {
            Err(format!("swaymsg {command:?} failed: {text}"))
        }
    }

    /// Asks sway for a JSON reply (`swaymsg -t TYPE`).
    pub fn sway_query(&self, kind: &str) -> Result<String> {
        let out = Command::new("swaymsg")
            .arg("-s")
            .arg(&self.sway_socket)
            .args(["-r", "-t", kind])
            .output()
            .map_err(|e| format!("swaymsg: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Paints the output's background one colour (0xRRGGBB) and waits
    /// until the screen shows it: sway replaces its swaybg client with one
    /// for the new colour, and a replacement that does not come up leaves
    /// the output sway's grey (seen in some full workspace runs, never
    /// alone). The output's bottom-right pixel is read back with `grim`; if
    /// it does not show the colour within a second the command is given
    /// once more (said on stderr). A window covering that pixel is no
    /// error: the caller's own checks decide.
    pub fn set_background(&self, rgb: u32) -> Result<()> {
        for attempt in 1..=2 {
            self.swaymsg(&format!("output {OUTPUT} bg #{rgb:06x} solid_color"))?;
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                if self.corner_pixel()? == rgb {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("wayland fixture: the screen's corner does not show #{rgb:06x} after 1 s (attempt {attempt})");
        }
        Ok(())
    }

    /// The output's bottom-right pixel as 0xRRGGBB (`grim`, PPM).
    fn corner_pixel(&self) -> Result<u32> {
        let out = self
            .command("grim")
            .args(["-t", "ppm", "-"])
            .output()
            .map_err(|e| format!("grim: {e} (install it with `apt-get install grim`)"))?;
        // P6, width, height, maxval, then the RGB bytes: the last three are
        // the bottom-right pixel.
        let data = out.stdout;
        let pixel = data.len().checked_sub(3).map(|i| &data[i..]).filter(|_| out.status.success());
        let Some(&[r, g, b]) = pixel else {
            return Err(format!("grim failed: {}", String::from_utf8_lossy(&out.stderr)));
        };
        Ok(u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b))
    }

    /// Changes the output's size.
    pub fn set_output_size(&self, width: u32, height: u32) -> Result<()> {
        self.swaymsg(&format!("output {OUTPUT} mode --custom {width}x{height}")).map(|_| ())
    }

    /// What the portal's picker answers next: an output name, or `None` for
    /// "the user cancelled".
    pub fn set_picker_answer(&self, output: Option<&str>) -> Result<()> {
        write(&self.dir.join("chooser.answer"), &output.map(|o| format!("{o}\n")).unwrap_or_default())
    }

    /// How many times the portal's picker has run (each run is a dialog a
    /// user would have seen).
    pub fn picker_runs(&self) -> usize {
        std::fs::read_to_string(self.dir.join("chooser.log")).map(|t| t.lines().count()).unwrap_or(0)
    }

    /// Starts a client program (e.g. a terminal window) in the desktop's
    /// process group; it ends with the desktop.
    pub fn spawn_client(&mut self, command: &mut Command) -> Result<u32> {
        command.envs(self.env()).env_remove("DISPLAY");
        self.group.spawn(command).map_err(|e| format!("starting a client: {e}"))
    }

    /// The variables sway itself runs with (for tools that must run as its user).
    pub fn sway_env(&self) -> &[(&'static str, OsString)] {
        &self.sway_env
    }

    /// A component's log (e.g. `"xdpw.log"`), for failure messages.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Stops everything now (a fixture in a `static` is stopped by its
    /// guardian when the process ends instead).
    pub fn stop(mut self) {
        self.group.stop();
    }
}
