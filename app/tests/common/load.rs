//! Load and soak helpers: a `peep share` child process with its metrics
//! listener, the figures of that process (RSS, open fds, threads from
//! `/proc`, tokio tasks from its `/metrics`), and viewer churn with the
//! light WHEP viewers of `whep.rs`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::whep::{Viewer, http, http_blocking};

/// A running `peep share` (a child process) with `--metrics`.
pub struct SharingPeep {
    child: Child,
    stderr: std::path::PathBuf,
    /// The viewers' link.
    pub link: String,
    /// The metrics listener.
    pub metrics: SocketAddr,
}

impl SharingPeep {
    /// Starts `peep share --bind 127.0.0.1 --port 0 --metrics 127.0.0.1:0`
    /// with `args` (source, size, fps…) and waits for its link.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(args, &[])
    }

    /// [`SharingPeep::start`] with environment variables (`DISPLAY`, …).
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let stderr = std::env::temp_dir().join(format!(
            "peep-share-{}-{}.stderr",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut child = super::peep()
            .args(["share", "--bind", "127.0.0.1", "--port", "0", "--metrics", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start peep share");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut link, mut metrics) = (None, None);
        while link.is_none() || metrics.is_none() {
            let line = lines.next().expect("peep share printed its link and metrics address").expect("stdout");
            if let Some(l) = line.strip_prefix("Link: ") {
                link = Some(l.to_owned());
            } else if let Some(m) = line.strip_prefix("Metrics: http://") {
                metrics = Some(m.trim_end_matches("/metrics").parse().expect("metrics address"));
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, stderr, link: link.expect("link"), metrics: metrics.expect("metrics") }
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits up to `timeout` for it to exit by itself; its exit status
    /// (`None`: still running).
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/metrics`, as text.
    pub fn scrape(&self) -> String {
        let (status, _, body) = http_blocking(self.metrics, "GET", "/metrics", &[], b"").expect("scrape");
        assert_eq!(status, 200, "GET /metrics");
        String::from_utf8(body).expect("UTF-8 metrics")
    }

    /// The process's figures now.
    pub fn figures(&self) -> Figures {
        let metrics = self.scrape();
        Figures::of(self.pid(), &metrics)
    }

    /// Waits until no viewer is left and the figures stop changing (tasks
    /// and fds the same over two readings 500 ms apart), at most `timeout`.
    pub fn settle(&self, timeout: Duration) -> Figures {
        let deadline = Instant::now() + timeout;
        let mut last = self.figures();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.figures();
            let viewers: f64 = ["connecting", "connected", "disconnected"]
                .iter()
                .filter_map(|s| metric(&self.scrape(), &format!("peep_viewers{{path=\"direct\",state=\"{s}\"}}")))
                .sum();
            if (viewers == 0.0 && now.tasks == last.tasks && now.fds == last.fds) || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    /// Stops it with SIGINT (as Ctrl-C) and returns whether it exited cleanly.
    pub fn stop(mut self) -> bool {
        let _ = std::process::Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SharingPeep {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// One sample's value from Prometheus text: `name{labels}` exactly as
/// rendered (labels sorted by name), or a bare name.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// What a process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// Resident memory, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: usize,
    /// Threads.
    pub threads: usize,
    /// Alive tasks on the share's tokio runtime (`peep_tokio_tasks`).
    pub tasks: u64,
}

impl Figures {
    /// Reads `/proc/PID` and the tasks from a scrape of its metrics.
    pub fn of(pid: u32, metrics: &str) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
        let tasks =
            metric(metrics, "peep_tokio_tasks{runtime=\"share\"}").expect("peep_tokio_tasks in /metrics") as u64;
        Self { rss_kib: field("VmRSS:"), fds, threads: field("Threads:") as usize, tasks }
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB, {} fds, {} threads, {} tokio tasks",
            self.rss_kib as f64 / 1024.0,
            self.fds,
            self.threads,
            self.tasks
        )
    }
}

/// What a churn run did.
#[derive(Debug, Default, Clone)]
pub struct Churn {
    /// Viewers that joined, received media and left.
    pub cycles: usize,
    /// Of those, viewers that left with a WHEP DELETE (the others just closed).
    pub deleted: usize,
    /// Failures (refused, no media, errors), in words.
    pub failures: Vec<String>,
    /// Most viewers connected at once, as `/metrics` saw it.
    pub peak_connected: f64,
}

/// `cycles` viewer join → media → leave cycles against `peep`, by
/// `concurrency` viewers coming and going independently; every other
/// viewer leaves with a WHEP DELETE, the others just close. The viewers
/// run on `runtime` in this process.
pub fn churn(runtime: &tokio::runtime::Runtime, peep: &SharingPeep, cycles: usize, concurrency: usize) -> Churn {
    let next = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(std::sync::Mutex::new(0.0f64));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, link, metrics, peak) = (next.clone(), peep.link.clone(), peep.metrics, peak.clone());
            runtime.spawn(async move {
                let mut done = Churn::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cycles {
                        return done;
                    }
                    let delete = i % 2 == 0;
                    let cycle = async {
                        let mut v = Viewer::join(&link, "127.0.0.1", None).await?;
                        v.wait_for_media(Duration::from_secs(20)).await?;
                        if let Ok((200, _, body)) = http(metrics, "GET", "/metrics", &[], b"").await {
                            let text = String::from_utf8_lossy(&body);
                            let connected =
                                metric(&text, "peep_viewers{path=\"direct\",state=\"connected\"}").unwrap_or(0.0);
                            let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                            *p = p.max(connected);
                        }
                        // Stay a moment, as viewers do.
                        tokio::time::sleep(Duration::from_millis(50 + (i as u64 * 37) % 250)).await;
                        v.leave(delete).await
                    };
                    match cycle.await {
                        Ok(()) => {
                            done.cycles += 1;
                            done.deleted += usize::from(delete);
                        }
                        Err(e) => done.failures.push(format!("viewer {i}: {e}")),
                    }
                }
            })
        })
        .collect();
    let mut total = Churn::default();
    for w in workers {
        let part = runtime.block_on(w).expect("churn worker");
        total.cycles += part.cycles;
        total.deleted += part.deleted;
        total.failures.extend(part.failures);
    }
    total.peak_connected = *peak.lock().unwrap_or_else(|e| e.into_inner());
    total
}
