//! # faultline-faultfs
//!
//! A FUSE filesystem that serves a node's data directory from a backing directory and keeps,
//! beside it, what a power loss would take back: [`Disk::power_loss`] drops every write and
//! directory change that was not made durable, the way a disk with a volatile cache loses them
//! when the power goes (LazyFS's idea; this is faultline's own implementation). A plain
//! `kill` of a node keeps them all, because the kernel's page cache survives a process: only a
//! lost power supply tests whether a system fsyncs what it acknowledges.
//!
//! ## Durability rules modelled
//!
//! * **File data** (`write`, `pwrite`, truncation, `fallocate` growth) is durable once the file
//!   is `fsync`ed or `fdatasync`ed (through any descriptor), or when written through a
//!   descriptor opened with `O_SYNC` or `O_DSYNC` (such a write also makes the file's earlier
//!   unsynced writes durable, as it does on ext4 and xfs). Until then a power loss puts back the
//!   file's length and bytes as of its last sync.
//! * **A new file or directory** (`creat`, `open(O_CREAT)`, `mkdir`) exists after a power loss
//!   once its directory is fsynced, *or it is fsynced itself, or anything created under it is*:
//!   ext4 syncs the new parents of a new inode it fsyncs, and programs that create a file or
//!   directory, write and fsync it without syncing its parent (bbolt, etcd's `member`
//!   directory) depend on it.
//! * **A rename or a remove** (`rename`, `unlink`, `rmdir`) is durable once the directory it
//!   changed is fsynced (both directories for a rename between two), the rule of POSIX that
//!   atomic-replace code must follow. Until then a power loss undoes it: the renamed file is
//!   back under its old name, and the file a rename replaced is back too.
//! * Syncing a directory, by `fsync` or on behalf of a new inode in it, makes *all* of its
//!   pending changes durable (one journal commit): a rename there followed by a new file that
//!   is fsynced keeps both.
//! * Undo runs newest change first; a rename made durable moves the older pending changes
//!   under it along, so they are undone where they now are. Not followed: a rename made
//!   durable inside a directory whose own (older) rename is not; the older changes under it
//!   are then undone where they were, and an undo that finds nothing there is skipped (and
//!   logged).
//!
//! Renames follow POSIX strictly while creations follow ext4: a program that renames without
//! syncing the directory can fail here where ext4, committing its journal every few seconds,
//! would usually not lose the rename. That is still a durability bug (on any filesystem a power
//! loss inside that window loses it), but it is worth knowing when reading a failure.
//!
//! ## Not modelled
//!
//! * Torn or reordered writes inside what was not synced: everything unsynced is lost, all of
//!   it (the harshest outcome of one power loss, not every possible one).
//! * `sync`/`syncfs` of the whole filesystem, and `msync` of writable shared mappings (FUSE
//!   does not pass them on reliably); attribute changes (mode, owner, times) are durable at
//!   once.
//! * Hard links and symlinks are refused (`EPERM`); device files, FIFOs and unix sockets
//!   cannot be made (`mknod` answers `ENOSYS`); `fallocate` modes other than plain allocation
//!   answer `EOPNOTSUPP`, which programs treat as "not supported here".
//!
//! The backing directory is not synced to the real disk: it is not the durable medium, the
//! journal is the difference between it and what a disk would hold.

mod fs;
pub mod journal;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

pub use journal::Loss;

/// The filesystem types `/proc/mounts` shows for it: `fuse` when mounted with mount(2) (as
/// root), `fuse.faultline` through fusermount. Its source, `faultline:<pid>:<label>`, is what
/// tells it apart from other FUSE filesystems.
pub const FS_TYPES: &[&str] = &["fuse", "fuse.faultline"];

/// Why this machine cannot serve the filesystem, if it cannot.
pub fn check_available() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "mounting a FUSE filesystem over each node's data directory needs root: \
                    run faultline as root"
                .into(),
        );
    }
    let dev = Path::new("/dev/fuse");
    if !dev.exists() {
        return Err(
            "/dev/fuse is missing: load the fuse module (modprobe fuse), or give the \
                    container the device (docker run --device /dev/fuse --cap-add SYS_ADMIN)"
                .into(),
        );
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map(drop)
        .map_err(|e| format!("/dev/fuse cannot be opened ({e}): FUSE is not usable here"))
}

/// One mounted data directory.
pub struct Disk {
    source: String,
    root: PathBuf,
    trash: PathBuf,
    mountpoint: PathBuf,
    state: Arc<Mutex<fs::State>>,
    session: Option<BackgroundSession>,
    /// The kernel's number for the FUSE connection (to abort it if it hangs).
    connection: u64,
    /// Set when a power loss could not finish (the old session would not stop, or the new
    /// mount failed): the directory is not served, and must not be used or mounted again.
    broken: Option<String>,
}

impl Disk {
    /// Serves `mountpoint` (created if missing; refused if not empty: what is in it would be
    /// hidden) from `disk_dir/data`, with `disk_dir/trash` beside it. `label` names the disk in `/proc/mounts` together with this
    /// process's id, so `faultline clean` can tell a dead run's mounts (see [`leftovers`]).
    pub fn mount(disk_dir: &Path, mountpoint: &Path, label: &str) -> Result<Disk, String> {
        let root = disk_dir.join("data");
        let trash = disk_dir.join("trash");
        for dir in [&root, &trash, &mountpoint.to_path_buf()] {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let occupied = std::fs::read_dir(mountpoint)
            .map_err(|e| format!("cannot read {}: {e}", mountpoint.display()))?
            .next()
            .is_some();
        if occupied {
            return Err(format!(
                "{} is not empty: the filesystem mounted over it would hide what is there",
                mountpoint.display()
            ));
        }
        // Leftovers of an earlier mount of this disk are nothing to undo now.
        journal::empty_dir(&trash);
        let safe: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut disk = Disk {
            source: format!("faultline:{}:{safe}", std::process::id()),
            root: root.clone(),
            trash: trash.clone(),
            mountpoint: mountpoint.to_path_buf(),
            state: Arc::new(Mutex::new(fs::State::new(&root, &trash))),
            session: None,
            connection: 0,
            broken: None,
        };
        disk.start()?;
        Ok(disk)
    }

    fn start(&mut self) -> Result<(), String> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(self.source.clone()),
            MountOption::Subtype("faultline".into()),
            MountOption::NoAtime,
        ];
        // Nodes may run as another user than the controller.
        config.acl = SessionACL::All;
        let filesystem = fs::FaultFs {
            state: self.state.clone(),
        };
        let session = fuser::spawn_mount(filesystem, &self.mountpoint, &config).map_err(|e| {
            format!(
                "cannot mount the FUSE filesystem on {}: {e}",
                self.mountpoint.display()
            )
        })?;
        self.connection = std::fs::metadata(&self.mountpoint)
            .map(|m| nix::sys::stat::minor(m.dev()))
            .unwrap_or(0);
        self.session = Some(session);
        Ok(())
    }

    /// Whether the directory is served now (`Err` says why not, after a failed power loss). A
    /// node must not start on a disk that is not: it would find an empty directory, the
    /// mountpoint underneath, and look like a node that lost everything.
    pub fn serving(&self) -> Result<(), String> {
        match (&self.broken, &self.session) {
            (Some(why), _) => Err(why.clone()),
            (None, None) => Err(format!("{} is not mounted", self.mountpoint.display())),
            (None, Some(_)) => Ok(()),
        }
    }

    /// Where the node's data lives between mounts.
    pub fn backing_dir(&self) -> &Path {
        &self.root
    }

    /// Files with unsynced data and directory changes not yet durable, now.
    pub fn pending(&self) -> (usize, usize) {
        self.state
            .lock()
            .map(|s| s.journal.pending())
            .unwrap_or((0, 0))
    }

    /// Loses power: whatever was not made durable is gone, then the directory is mounted
    /// again (a fresh mount: no page cache of the old contents survives). The node using it
    /// must already be dead: its requests would fail from here on.
    pub fn power_loss(&mut self) -> Result<Loss, String> {
        self.serving()?;
        let journal = {
            let mut state = self.state.lock().map_err(|_| "faultfs state poisoned")?;
            state.frozen = true;
            let fresh = journal::Journal::new(&self.trash);
            let journal = std::mem::replace(&mut state.journal, fresh);
            let paths = |ino| state.path_of(ino);
            journal.roll_back(paths)
        };
        let restarted = self.stop().and_then(|()| {
            self.state = Arc::new(Mutex::new(fs::State::new(&self.root, &self.trash)));
            self.start()
        });
        if let Err(e) = restarted {
            // Never mounted again: a session that would not stop may still unmount by path
            // when it finally ends, taking a new mount with it.
            let why = format!("the power loss could not finish: {e}");
            self.broken = Some(why.clone());
            return Err(why);
        }
        Ok(journal)
    }

    /// Unmounts, and waits for the session to end (aborting the connection if something
    /// still holds it after a few seconds), so no late request of the old mount can race
    /// the next one at the same path.
    fn stop(&mut self) -> Result<(), String> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        if let Ok(mut state) = self.state.lock() {
            state.frozen = true;
        }
        let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(session.join());
        });
        if let Ok(joined) = ended.recv_timeout(Duration::from_secs(3)) {
            if let Err(e) = joined {
                tracing::warn!(
                    "faultfs: the session of {} ended with {e}",
                    self.mountpoint.display()
                );
            }
            return Ok(());
        }
        abort_connection(self.connection);
        ended
            .recv_timeout(Duration::from_secs(3))
            .map(drop)
            .map_err(|_| {
                format!(
                    "the filesystem of {} did not stop: a process still uses it",
                    self.mountpoint.display()
                )
            })
    }

    /// Unmounts for good (what was not synced stays in the backing directory: the run is over).
    pub fn unmount(mut self) -> Result<(), String> {
        self.stop()
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!("faultfs: {e}");
        }
    }
}

/// Aborts FUSE connection `n` through the fusectl filesystem (mounted for the moment if it
/// is not, and unmounted again: the host is left as it was).
fn abort_connection(n: u64) {
    let dir = Path::new("/sys/fs/fuse/connections");
    let mounted_here = !dir.join(n.to_string()).exists()
        && nix::mount::mount(
            Some("fusectl"),
            dir,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .is_ok();
    let _ = std::fs::write(dir.join(n.to_string()).join("abort"), "1");
    if mounted_here {
        let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A faultline filesystem still mounted: where, and the id of the process that served it.
#[derive(Clone, Debug)]
pub struct Mounted {
    pub mountpoint: PathBuf,
    pub owner: i32,
    pub label: String,
}

/// Every faultline filesystem in `/proc/mounts`.
pub fn mounted() -> Vec<Mounted> {
    let Ok(text) = std::fs::read_to_string("/proc/mounts") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let source = fields.next()?;
            let mountpoint = fields.next()?;
            let kind = fields.next()?;
            if !FS_TYPES.contains(&kind) {
                return None;
            }
            let mut parts = source.splitn(3, ':');
            (parts.next()? == "faultline").then_some(())?;
            let owner = parts.next()?.parse().ok()?;
            let label = parts.next().unwrap_or("").to_string();
            Some(Mounted {
                mountpoint: PathBuf::from(unescape_mount_path(mountpoint)),
                owner,
                label,
            })
        })
        .collect()
}

/// `/proc/mounts` writes space, tab, newline and backslash in paths as octal escapes.
fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts a leftover filesystem (its server is gone: the mount only answers errors).
pub fn force_unmount(mountpoint: &Path) -> Result<(), String> {
    nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| format!("cannot unmount {}: {e}", mountpoint.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(super::unescape_mount_path(r"/a\040b/c"), "/a b/c");
        assert_eq!(super::unescape_mount_path("/plain"), "/plain");
        assert_eq!(super::unescape_mount_path(r"/x\"), r"/x\");
    }
}
