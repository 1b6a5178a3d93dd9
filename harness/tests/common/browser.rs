//! Headless Chromium (Debian's `chromium`, installed by `scripts/install-deps`) for the tests
//! that check pages in a real browser.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn chromium_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FAULTLINE_CHROMIUM") {
        return PathBuf::from(p);
    }
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).is_file() {
            return PathBuf::from(c);
        }
    }
    panic!(
        "Chromium is not installed: the report tests need a real browser \
         (scripts/install-deps installs Debian's `chromium`, or set FAULTLINE_CHROMIUM)"
    );
}

/// One headless Chromium, in its own process group, killed with all its helpers if the test
/// ends (or panics) before it exits, and its throw-away profile removed.
struct Browser {
    child: Option<Child>,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// What one Chromium run printed: standard output, and the page's console messages.
pub struct Page {
    pub stdout: String,
    pub console: Vec<String>,
}

/// Runs headless Chromium on `url` with `extra` arguments until it exits (at most 90 s).
pub fn chromium(url: &str, extra: &[String]) -> Page {
    let profile = std::env::temp_dir().join(format!(
        "faultline-chromium-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let mut cmd = Command::new(chromium_binary());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut browser = Browser {
        child: Some(cmd.spawn().expect("start chromium")),
        profile,
    };
    let child = browser.child.as_mut().expect("child");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(_) => break,
            None if Instant::now() > deadline => panic!("chromium did not finish {url} in 90 s"),
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    // Its helper processes may still hold the pipes: the group is killed on drop.
    drop(browser);
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Page {
        stdout,
        console: stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_string)
            .collect(),
    }
}

/// The DOM after the page's scripts ran.
pub fn dump_dom(file: &Path, fragment: &str) -> Page {
    let page = chromium(
        &format!("file://{}{fragment}", file.display()),
        &[
            "--dump-dom".to_string(),
            "--virtual-time-budget=5000".to_string(),
        ],
    );
    assert!(
        page.stdout.contains("</html>"),
        "no DOM from chromium for {}",
        file.display()
    );
    page
}
