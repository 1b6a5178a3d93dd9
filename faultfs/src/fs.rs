//! The FUSE side: a pass-through filesystem over a backing directory that tells the
//! [`Journal`] about every change before making it, and about every fsync.
//!
//! Inode numbers are faultline's own (1 is the root), mapped to backing paths; a rename moves
//! the paths of everything under it, a remove moves the inode's path into the trash (a process
//! that still holds the file open keeps reading and writing it, as on a real disk). One mutex
//! guards everything: the session runs one thread, and a power loss must see no operation
//! half done.
//!
//! Not modelled, refused: hard links and symlinks (`EPERM`), device files, FIFOs and unix
//! sockets (`mknod`: `ENOSYS`), `fallocate` modes other than plain allocation (`EOPNOTSUPP`).
//! File attributes (mode, owner, times) are always durable.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use nix::libc;

use crate::journal::Journal;

/// How long the kernel may cache names and attributes. Every change goes through this
/// filesystem, so the kernel's caches never go stale while it is mounted; a power loss mounts
/// a new one, whose caches start empty.
const TTL: Duration = Duration::from_secs(1);

/// An open file.
struct Handle {
    file: File,
    ino: u64,
    /// Opened with `O_SYNC` or `O_DSYNC`: every write is durable when it returns.
    sync_writes: bool,
}

/// Everything the filesystem knows, behind one mutex.
pub(crate) struct State {
    root: PathBuf,
    /// Set by a power loss: from then on every request fails, so nothing reaches the backing
    /// directory while it is being rolled back.
    pub(crate) frozen: bool,
    paths: HashMap<u64, PathBuf>,
    inos: HashMap<PathBuf, u64>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    pub(crate) journal: Journal,
}

impl State {
    pub(crate) fn new(root: &Path, trash: &Path) -> State {
        let mut s = State {
            root: root.to_path_buf(),
            frozen: false,
            paths: HashMap::new(),
            inos: HashMap::new(),
            next_ino: 2,
            handles: HashMap::new(),
            next_fh: 1,
            journal: Journal::new(trash),
        };
        s.paths.insert(1, root.to_path_buf());
        s.inos.insert(root.to_path_buf(), 1);
        s
    }

    /// The backing path of `ino` now (in the trash if it was removed).
    pub(crate) fn path_of(&self, ino: u64) -> Option<PathBuf> {
        self.paths.get(&ino).cloned()
    }

    /// `fsync` of a file: its data is durable, and so is its creation if it is new.
    fn file_synced(&mut self, ino: u64) {
        self.journal.file_synced(ino);
        self.sync_new_parents(ino);
    }

    /// What ext4 does when it fsyncs an inode whose creation is not durable yet: it syncs the
    /// directory the inode is in, and so on up while that directory is new too. Syncing a
    /// directory makes all of its pending changes durable (a rename done there before the
    /// new file was created, say), as one journal commit does. Programs that create, write
    /// and fsync a file or directory without syncing its parent depend on it.
    fn sync_new_parents(&mut self, ino: u64) {
        // The directory the inode was created in and the one it is in now (a rename may have
        // moved it), then theirs while they are new too.
        let mut work = vec![ino];
        let mut seen = std::collections::HashSet::new();
        while let Some(current) = work.pop() {
            if !seen.insert(current) || seen.len() > 4096 {
                continue;
            }
            if !self.journal.creation_pending(current) {
                continue;
            }
            let mut dirs = self.journal.creation_durable(current);
            let now_in = self
                .paths
                .get(&current)
                .and_then(|p| p.parent())
                .and_then(|p| self.inos.get(p))
                .copied();
            dirs.extend(now_in);
            for dir in dirs {
                self.journal.dir_synced(dir);
                work.push(dir);
            }
        }
    }

    fn ino_of(&mut self, path: &Path) -> u64 {
        if let Some(ino) = self.inos.get(path) {
            return *ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.paths.insert(ino, path.to_path_buf());
        self.inos.insert(path.to_path_buf(), ino);
        ino
    }

    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        if name.is_empty() || name == "." || name == ".." || name.as_encoded_bytes().contains(&b'/')
        {
            return Err(Errno::EINVAL);
        }
        Ok(self.path(parent)?.join(name))
    }

    /// `from` (and everything under it) is now at `to`.
    fn moved(&mut self, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, u64)> = self
            .inos
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            self.inos.remove(&old);
            let new = match old.strip_prefix(from) {
                Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
                Ok(rest) => to.join(rest),
                Err(_) => continue,
            };
            self.paths.insert(ino, new.clone());
            self.inos.insert(new, ino);
        }
    }

    fn attr(&mut self, path: &Path) -> Result<FileAttr, Errno> {
        let meta = fs::symlink_metadata(path).map_err(errno)?;
        let ino = self.ino_of(path);
        Ok(attr_of(ino, &meta))
    }
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn time(secs: i64, nanos: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos.clamp(0, 999_999_999) as u32)
    } else {
        UNIX_EPOCH
    }
}

fn attr_of(ino: u64, m: &fs::Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.size(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: time(m.ctime(), m.ctime_nsec()),
        kind: FileType::from_std(m.file_type()).unwrap_or(FileType::RegularFile),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

/// The filesystem fuser serves.
pub(crate) struct FaultFs {
    pub(crate) state: Arc<Mutex<State>>,
}

impl FaultFs {
    /// The state, unless a power loss froze it.
    fn live(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let state = self.state.lock().map_err(|_| Errno::EIO)?;
        if state.frozen {
            return Err(Errno::EIO);
        }
        Ok(state)
    }

    fn new_entry(
        &self,
        parent: INodeNo,
        name: &OsStr,
        make: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<FileAttr, Errno> {
        let mut s = self.live()?;
        let path = s.child(parent, name)?;
        if fs::symlink_metadata(&path).is_ok() {
            return Err(Errno::EEXIST);
        }
        make(&path).map_err(errno)?;
        let attr = s.attr(&path)?;
        s.journal.created(&path, attr.ino.0, parent.0);
        Ok(attr)
    }

    /// Moves `path` into the trash instead of deleting it (see the journal).
    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let mut s = self.live()?;
        let path = s.child(parent, name)?;
        let meta = fs::symlink_metadata(&path).map_err(errno)?;
        if dir != meta.is_dir() {
            return Err(if dir { Errno::ENOTDIR } else { Errno::EISDIR });
        }
        if dir && fs::read_dir(&path).map_err(errno)?.next().is_some() {
            return Err(Errno::ENOTEMPTY);
        }
        let trash = s.journal.trash_path();
        fs::rename(&path, &trash).map_err(errno)?;
        s.moved(&path, &trash);
        s.journal.removed(&path, trash, parent.0);
        Ok(())
    }

    fn open_file(&self, path: &Path, ino: u64, flags: i32) -> Result<u64, Errno> {
        let mut s = self.live()?;
        // Always readable: before a write the journal reads the bytes it overwrites.
        let mut opts = OpenOptions::new();
        opts.read(true);
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            opts.write(true);
        }
        // Writes come with their offset (the kernel resolves O_APPEND), and the journal must
        // see every change: no O_APPEND, O_TRUNC or O_SYNC on the backing file.
        let file = opts
            .custom_flags(flags & libc::O_NOFOLLOW)
            .open(path)
            .map_err(errno)?;
        if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
            let len = file.metadata().map_err(errno)?.len();
            s.journal
                .before_change(ino, &file, len, 0, len)
                .map_err(errno)?;
            file.set_len(0).map_err(errno)?;
        }
        let fh = s.next_fh;
        s.next_fh += 1;
        s.handles.insert(
            fh,
            Handle {
                file,
                ino,
                sync_writes: flags & (libc::O_SYNC | libc::O_DSYNC) != 0,
            },
        );
        Ok(fh)
    }
}

impl Filesystem for FaultFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self.live().and_then(|mut s| {
            let path = s.child(parent, name)?;
            s.attr(&path)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let result = self.live().and_then(|s| {
            // An open file may have been removed: ask its handle.
            if let Some(h) = fh.and_then(|fh| s.handles.get(&fh.0)) {
                return h.file.metadata().map(|m| attr_of(ino.0, &m)).map_err(errno);
            }
            let path = s.path(ino)?;
            fs::symlink_metadata(&path)
                .map(|m| attr_of(ino.0, &m))
                .map_err(errno)
        });
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = (|| {
            let mut s = self.live()?;
            let path = s.path(ino)?;
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(errno)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid).map_err(errno)?;
            }
            if let Some(size) = size {
                let file = match fh.and_then(|fh| s.handles.get(&fh.0)) {
                    Some(h) => h.file.try_clone().map_err(errno)?,
                    None => OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        .map_err(errno)?,
                };
                let len = file.metadata().map_err(errno)?.len();
                if size < len {
                    s.journal
                        .before_change(ino.0, &file, len, size, len)
                        .map_err(errno)?;
                } else {
                    // Growing only adds zeros past the current end: cutting back undoes it.
                    s.journal
                        .before_change(ino.0, &file, len, len, len)
                        .map_err(errno)?;
                }
                file.set_len(size).map_err(errno)?;
            }
            if atime.is_some() || mtime.is_some() {
                let to_time = |t: TimeOrNow| match t {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                };
                let mut times = fs::FileTimes::new();
                if let Some(t) = atime {
                    times = times.set_accessed(to_time(t));
                }
                if let Some(t) = mtime {
                    times = times.set_modified(to_time(t));
                }
                let file = File::open(&path).map_err(errno)?;
                file.set_times(times).map_err(errno)?;
            }
            let meta = match fh.and_then(|fh| s.handles.get(&fh.0)) {
                Some(h) => h.file.metadata(),
                None => fs::symlink_metadata(&path),
            };
            meta.map(|m| attr_of(ino.0, &m)).map_err(errno)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.new_entry(parent, name, |path| {
            fs::create_dir(path)?;
            fs::set_permissions(path, fs::Permissions::from_mode(mode & !umask & 0o7777))
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.remove(parent, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            if flags.contains(RenameFlags::RENAME_EXCHANGE)
                || flags.contains(RenameFlags::RENAME_WHITEOUT)
            {
                return Err(Errno::EINVAL);
            }
            let mut s = self.live()?;
            let from = s.child(parent, name)?;
            let to = s.child(newparent, newname)?;
            let source = fs::symlink_metadata(&from).map_err(errno)?;
            if from == to {
                return Ok(());
            }
            if to.starts_with(&from) {
                return Err(Errno::EINVAL);
            }
            let displaced = match fs::symlink_metadata(&to) {
                Ok(target) => {
                    if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                        return Err(Errno::EEXIST);
                    }
                    if target.is_dir() != source.is_dir() {
                        return Err(if target.is_dir() {
                            Errno::EISDIR
                        } else {
                            Errno::ENOTDIR
                        });
                    }
                    if target.is_dir() && fs::read_dir(&to).map_err(errno)?.next().is_some() {
                        return Err(Errno::ENOTEMPTY);
                    }
                    let trash = s.journal.trash_path();
                    fs::rename(&to, &trash).map_err(errno)?;
                    s.moved(&to, &trash);
                    Some(trash)
                }
                Err(_) => None,
            };
            if let Err(e) = fs::rename(&from, &to) {
                if let Some(trash) = &displaced {
                    let _ = fs::rename(trash, &to);
                    s.moved(trash, &to);
                }
                return Err(errno(e));
            }
            let ino = s.ino_of(&from);
            s.moved(&from, &to);
            s.journal
                .renamed(&from, &to, ino, displaced, [parent.0, newparent.0]);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let result = self
            .live()
            .and_then(|s| s.path(ino))
            .and_then(|path| self.open_file(&path, ino.0, flags.0));
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let result = (|| {
            let attr = self.new_entry(parent, name, |path| {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode & !umask & 0o7777)
                    .open(path)
                    .map(drop)
            })?;
            self.live()?.journal.created_file(attr.ino.0);
            let path = self.live()?.path(attr.ino)?;
            let fh = self.open_file(&path, attr.ino.0, flags & !libc::O_TRUNC)?;
            Ok((attr, fh))
        })();
        match result {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = (|| {
            let s = self.live()?;
            let h = s.handles.get(&fh.0).ok_or(Errno::EBADF)?;
            let mut buf = vec![0u8; size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                match h.file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(errno(e)),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        })();
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = (|| {
            let mut s = self.live()?;
            let State {
                handles, journal, ..
            } = &mut *s;
            let h = handles.get(&fh.0).ok_or(Errno::EBADF)?;
            let len = h.file.metadata().map_err(errno)?.len();
            journal
                .before_change(h.ino, &h.file, len, offset, offset + data.len() as u64)
                .map_err(errno)?;
            h.file.write_all_at(data, offset).map_err(errno)?;
            let (ino, sync) = (h.ino, h.sync_writes);
            if sync {
                s.file_synced(ino);
            }
            Ok(data.len() as u32)
        })();
        match result {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Ok(mut s) = self.state.lock() {
            s.handles.remove(&fh.0);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // The backing directory is not the durable medium (the journal is the difference
        // between it and what a disk would hold), so it is not synced: fsync costs what it
        // costs in the kernel round trip, not a disk flush.
        match self.live() {
            Ok(mut s) => {
                s.file_synced(ino.0);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.live().and_then(|s| s.path(ino)) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = (|| {
            let mut s = self.live()?;
            let dir = s.path(ino)?;
            let mut names: Vec<(std::ffi::OsString, FileType)> = fs::read_dir(&dir)
                .map_err(errno)?
                .flatten()
                .map(|e| {
                    let kind = e
                        .file_type()
                        .ok()
                        .and_then(FileType::from_std)
                        .unwrap_or(FileType::RegularFile);
                    (e.file_name(), kind)
                })
                .collect();
            // A stable order, so offsets mean the same between calls.
            names.sort_by(|a, b| a.0.cmp(&b.0));
            let mut entries = vec![
                (ino.0, FileType::Directory, std::ffi::OsString::from(".")),
                (ino.0, FileType::Directory, std::ffi::OsString::from("..")),
            ];
            for (name, kind) in names {
                let child = s.ino_of(&dir.join(&name));
                entries.push((child, kind, name));
            }
            Ok(entries)
        })();
        match result {
            Ok(entries) => {
                for (i, (child, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(*child), (i + 1) as u64, *kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.live() {
            Ok(mut s) => {
                s.journal.dir_synced(ino.0);
                s.sync_new_parents(ino.0);
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let root = match self.live() {
            Ok(s) => s.root.clone(),
            Err(e) => return reply.error(e),
        };
        match nix::sys::statvfs::statvfs(&root) {
            Ok(v) => reply.statfs(
                v.blocks(),
                v.blocks_free(),
                v.blocks_available(),
                v.files(),
                v.files_free(),
                v.block_size() as u32,
                255,
                v.fragment_size() as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e as i32)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = (|| {
            if mode != 0 {
                return Err(Errno::from_i32(libc::EOPNOTSUPP));
            }
            let mut s = self.live()?;
            let State {
                handles, journal, ..
            } = &mut *s;
            let h = handles.get(&fh.0).ok_or(Errno::EBADF)?;
            let len = h.file.metadata().map_err(errno)?.len();
            // Allocation changes no byte below the current end; growing is undone by cutting
            // the file back to its durable length.
            journal
                .before_change(h.ino, &h.file, len, len, len)
                .map_err(errno)?;
            let end = offset.checked_add(length).ok_or(Errno::EINVAL)?;
            if end > len {
                h.file.set_len(end).map_err(errno)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
