//! What a power loss would take back.
//!
//! The backing directory always holds the *current* state (what a process reading the file
//! sees), so reads pass straight through. Beside it the journal keeps, for everything not yet
//! made durable, what it takes to go back to the *durable* state:
//!
//! * for each file with unsynced data ([`FileUndo`]): its length when it was last made durable
//!   and the old bytes of every range overwritten since (saved on the first overwrite only:
//!   the bytes a disk would still hold). Appends cost nothing to undo: the length is enough.
//! * for the namespace, every create, rename and remove not yet made durable, in order
//!   ([`NsOp`]). A removed file or directory, and a file a rename replaced, are not deleted
//!   but moved to a trash folder beside the backing directory, so they can come back.
//!
//! Power loss ([`Journal::roll_back`]) first puts back each file's durable bytes and length,
//! then undoes the namespace operations newest first. Invariant: between two power losses,
//! `backing state = durable state + (the journal, replayed forwards)`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A file's way back to its durable content.
#[derive(Debug)]
struct FileUndo {
    /// The length the file had when it was last made durable.
    durable_len: u64,
    /// Old bytes of overwritten ranges below `durable_len`, by start offset; ranges never
    /// overlap.
    saved: BTreeMap<u64, Vec<u8>>,
}

impl FileUndo {
    /// The parts of `[start, end)` no saved range covers yet.
    fn gaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = start;
        // A saved range that begins before `start` may still cover it.
        let first = self
            .saved
            .range(..=start)
            .next_back()
            .map(|(s, _)| *s)
            .unwrap_or(start);
        for (s, bytes) in self.saved.range(first..end) {
            let e = s + bytes.len() as u64;
            if e <= at {
                continue;
            }
            if *s > at {
                gaps.push((at, *s));
            }
            at = at.max(e);
        }
        if at < end {
            gaps.push((at, end));
        }
        gaps
    }
}

/// One namespace change that is not durable yet.
#[derive(Debug)]
enum NsChange {
    /// A file or directory was created at `path`. Undo: remove it (and, for a directory,
    /// what is in it).
    Created { path: PathBuf, ino: u64 },
    /// `from` (inode `ino`) was renamed to `to`, replacing what was there (now at
    /// `displaced`, in the trash). Undo: rename it back, and put the replaced entry back at
    /// `restore_at` (`to` as it was then).
    Renamed {
        from: PathBuf,
        to: PathBuf,
        ino: u64,
        displaced: Option<PathBuf>,
        restore_at: PathBuf,
    },
    /// `path` was removed (moved to `trash`). Undo: move it back.
    Removed { path: PathBuf, trash: PathBuf },
}

impl NsChange {
    /// A durable rename moved inode `ino` from `from` to `to`: paths of this (older) change
    /// that lie under `from` follow it, and so does a path that names that very inode. A path
    /// equal to `from` that names another object (the name was vacated and used again, or
    /// where a removed entry goes back) stays.
    fn moved(&mut self, from: &Path, to: &Path, ino: u64) {
        let under = |p: &mut PathBuf| {
            if let Ok(rest) = p.strip_prefix(from) {
                if !rest.as_os_str().is_empty() {
                    *p = to.join(rest);
                }
            }
        };
        match self {
            NsChange::Created { path, ino: i } => {
                if *i == ino && path == from {
                    *path = to.to_path_buf();
                } else {
                    under(path);
                }
            }
            NsChange::Renamed {
                from: f,
                to: t,
                ino: i,
                restore_at,
                ..
            } => {
                under(f);
                if *i == ino && t == from {
                    *t = to.to_path_buf();
                } else {
                    under(t);
                }
                under(restore_at);
            }
            NsChange::Removed { path, .. } => under(path),
        }
    }
}

#[derive(Debug)]
struct NsOp {
    change: NsChange,
    /// Directories (inode numbers) whose fsync this change still waits for.
    waiting_on: Vec<u64>,
}

/// What a power loss dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    /// Files whose content went back to what was last fsynced.
    pub files: usize,
    /// Bytes of unsynced data dropped (appended bytes cut off, plus overwritten bytes restored).
    pub bytes: u64,
    /// Creates, renames and removes undone.
    pub namespace_ops: usize,
    /// Undo steps that could not be done (the path they name is gone), with why.
    pub skipped: Vec<String>,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes of unsynced data in {} files, {} unsynced directory changes",
            self.bytes, self.files, self.namespace_ops
        )
    }
}

/// What is not durable yet, and how to take it back. See the module documentation.
#[derive(Debug)]
pub struct Journal {
    trash: PathBuf,
    next_trash: u64,
    files: HashMap<u64, FileUndo>,
    ops: Vec<NsOp>,
}

impl Journal {
    /// A journal whose removed entries are kept in `trash` (a directory on the same
    /// filesystem as the backing directory, outside it).
    pub fn new(trash: &Path) -> Journal {
        Journal {
            trash: trash.to_path_buf(),
            next_trash: 0,
            files: HashMap::new(),
            ops: Vec::new(),
        }
    }

    /// Files with unsynced data, and directory changes not yet durable.
    pub fn pending(&self) -> (usize, usize) {
        (self.files.len(), self.ops.len())
    }

    /// A fresh path in the trash.
    pub fn trash_path(&mut self) -> PathBuf {
        self.next_trash += 1;
        self.trash.join(format!("{}", self.next_trash))
    }

    /// Before `file` (inode `ino`, currently `current_len` long) is changed in
    /// `[start, end)`: saves the durable bytes of that range that are not saved yet. A file
    /// seen for the first time since its last sync has the durable length `current_len`.
    pub fn before_change(
        &mut self,
        ino: u64,
        file: &File,
        current_len: u64,
        start: u64,
        end: u64,
    ) -> io::Result<()> {
        let undo = self.files.entry(ino).or_insert_with(|| FileUndo {
            durable_len: current_len,
            saved: BTreeMap::new(),
        });
        let end = end.min(undo.durable_len);
        if start >= end {
            return Ok(()); // beyond the durable length: cutting the file back undoes it
        }
        for (s, e) in undo.gaps(start, end) {
            let mut old = vec![0u8; (e - s) as usize];
            file.read_exact_at(&mut old, s)?;
            undo.saved.insert(s, old);
        }
        Ok(())
    }

    /// A file that was created empty: its durable length is 0 from the start.
    pub fn created_file(&mut self, ino: u64) {
        self.files.insert(
            ino,
            FileUndo {
                durable_len: 0,
                saved: BTreeMap::new(),
            },
        );
    }

    /// `fsync`/`fdatasync` of a file (or a write through `O_SYNC`/`O_DSYNC`): its data is
    /// durable. (Its creation, if new, is the filesystem's business: see `sync_new_parents`
    /// in `fs.rs`.)
    pub fn file_synced(&mut self, ino: u64) {
        self.files.remove(&ino);
    }

    /// Whether the creation of inode `ino` is not durable yet.
    pub fn creation_pending(&self, ino: u64) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op.change, NsChange::Created { ino: i, .. } if i == ino))
    }

    /// The creation of inode `ino` is durable (its parent is being synced on its behalf);
    /// returns the directories that creation waited for (the one it was made in).
    pub fn creation_durable(&mut self, ino: u64) -> Vec<u64> {
        let mut parents = Vec::new();
        self.ops.retain(|op| match op.change {
            NsChange::Created { ino: i, .. } if i == ino => {
                parents.extend(op.waiting_on.iter().copied());
                false
            }
            _ => true,
        });
        parents
    }

    /// `fsync` of directory `dir`: the changes of its entries are durable (a change that
    /// touched two directories, a rename between them, needs both). A rename made durable
    /// while older changes under the renamed path are not moves their paths along, so undoing
    /// them later finds what they changed where it now is.
    pub fn dir_synced(&mut self, dir: u64) {
        let mut kept: Vec<NsOp> = Vec::with_capacity(self.ops.len());
        for mut op in std::mem::take(&mut self.ops) {
            op.waiting_on.retain(|d| *d != dir);
            if !op.waiting_on.is_empty() {
                kept.push(op);
                continue;
            }
            // Durable: what it removed or replaced is gone for good.
            match &op.change {
                NsChange::Removed { trash, .. } => remove_all(trash),
                NsChange::Renamed {
                    from,
                    to,
                    ino,
                    displaced,
                    ..
                } => {
                    if let Some(trash) = displaced {
                        remove_all(trash);
                    }
                    for older in &mut kept {
                        older.change.moved(from, to, *ino);
                    }
                }
                NsChange::Created { .. } => {}
            }
        }
        self.ops = kept;
    }

    /// A file or directory was created at `path` (inode `ino`) in directory `parent`.
    pub fn created(&mut self, path: &Path, ino: u64, parent: u64) {
        self.ops.push(NsOp {
            change: NsChange::Created {
                path: path.to_path_buf(),
                ino,
            },
            waiting_on: vec![parent],
        });
    }

    /// `from` (inode `ino`) was renamed to `to`, in directories `parents` (from's, to's);
    /// what `to` named before is at `displaced` in the trash.
    pub fn renamed(
        &mut self,
        from: &Path,
        to: &Path,
        ino: u64,
        displaced: Option<PathBuf>,
        parents: [u64; 2],
    ) {
        let mut waiting_on = vec![parents[0]];
        if parents[1] != parents[0] {
            waiting_on.push(parents[1]);
        }
        self.ops.push(NsOp {
            change: NsChange::Renamed {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
                ino,
                displaced,
                restore_at: to.to_path_buf(),
            },
            waiting_on,
        });
    }

    pub fn removed(&mut self, path: &Path, trash: PathBuf, parent: u64) {
        self.ops.push(NsOp {
            change: NsChange::Removed {
                path: path.to_path_buf(),
                trash,
            },
            waiting_on: vec![parent],
        });
    }

    /// Takes back everything not durable. `path_of` gives each inode's current backing path
    /// (a removed file's is in the trash). Then empties the trash.
    pub fn roll_back(self, path_of: impl Fn(u64) -> Option<PathBuf>) -> Loss {
        let mut loss = Loss::default();
        // File data first, while every path is still where the inode map says it is.
        for (ino, undo) in &self.files {
            let Some(path) = path_of(*ino) else {
                continue; // removed for good: nothing to put back
            };
            match restore_file(&path, undo) {
                Ok(dropped) => {
                    if dropped > 0 {
                        loss.files += 1;
                        loss.bytes += dropped;
                    }
                }
                // Removed for good since (a durable remove emptied its trash).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => loss
                    .skipped
                    .push(format!("restoring {}: {e}", path.display())),
            }
        }
        // Then the namespace, newest change first, so each undo finds the paths its change
        // left behind.
        for op in self.ops.iter().rev() {
            let result = match &op.change {
                NsChange::Created { path, .. } => remove_path(path),
                NsChange::Renamed {
                    from,
                    to,
                    displaced,
                    restore_at,
                    ..
                } => fs::rename(to, from).and_then(|()| match displaced {
                    Some(trash) => fs::rename(trash, restore_at),
                    None => Ok(()),
                }),
                NsChange::Removed { path, trash } => fs::rename(trash, path),
            };
            match result {
                Ok(()) => loss.namespace_ops += 1,
                Err(e) => loss.skipped.push(format!("undoing {:?}: {e}", op.change)),
            }
        }
        empty_dir(&self.trash);
        loss
    }
}

/// Puts back a file's durable length and bytes; returns how many bytes that dropped.
fn restore_file(path: &Path, undo: &FileUndo) -> io::Result<u64> {
    let file = OpenOptions::new().write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut dropped = len.saturating_sub(undo.durable_len);
    file.set_len(undo.durable_len)?;
    for (start, bytes) in &undo.saved {
        file.write_all_at(bytes, *start)?;
        dropped += bytes.len() as u64;
    }
    Ok(dropped)
}

fn remove_path(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    }
}

/// Removes everything in `dir` (not `dir` itself).
pub(crate) fn empty_dir(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            remove_all(&entry.path());
        }
    }
}

fn remove_all(path: &Path) {
    if let Err(e) = remove_path(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("faultfs: could not remove {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("faultfs-journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("root")).unwrap();
        fs::create_dir_all(dir.join("trash")).unwrap();
        dir
    }

    #[test]
    fn gaps_skip_what_is_saved() {
        let mut u = FileUndo {
            durable_len: 100,
            saved: BTreeMap::new(),
        };
        assert_eq!(u.gaps(10, 20), vec![(10, 20)]);
        u.saved.insert(10, vec![0; 10]);
        u.saved.insert(30, vec![0; 5]);
        assert_eq!(u.gaps(0, 40), vec![(0, 10), (20, 30), (35, 40)]);
        assert_eq!(u.gaps(12, 18), vec![]);
        assert_eq!(u.gaps(15, 32), vec![(20, 30)]);
    }

    #[test]
    fn overwrites_and_appends_go_back_to_the_synced_bytes() {
        let dir = scratch("data");
        let path = dir.join("root/f");
        fs::write(&path, b"0123456789").unwrap();
        let mut j = Journal::new(&dir.join("trash"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // Overwrite 2..6 twice (the second save must not replace the durable bytes), append.
        j.before_change(7, &file, 10, 2, 6).unwrap();
        file.write_all_at(b"abcd", 2).unwrap();
        j.before_change(7, &file, 10, 4, 14).unwrap();
        file.write_all_at(b"XXXXXXXXXX", 4).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"01abXXXXXXXXXX");
        let loss = j.roll_back(|ino| (ino == 7).then(|| path.clone()));
        assert_eq!(fs::read(&path).unwrap(), b"0123456789");
        assert_eq!(loss.files, 1);
        assert_eq!(loss.bytes, 4 + 8); // 4 appended, 8 overwritten bytes restored
    }

    #[test]
    fn a_synced_file_keeps_its_data_and_creation_and_a_rename_waits_for_its_directory() {
        let dir = scratch("ns");
        let root = dir.join("root");
        let mut j = Journal::new(&dir.join("trash"));
        // Created, written and fsynced: it stays (and so does its data).
        fs::write(root.join("kept"), b"data").unwrap();
        j.created(&root.join("kept"), 2, 1);
        j.created_file(2);
        // What the filesystem does on its fsync: data durable, and its new parent synced.
        j.file_synced(2);
        assert!(j.creation_pending(2));
        assert_eq!(j.creation_durable(2), vec![1]);
        j.dir_synced(1);
        // Created, never synced: it goes.
        fs::write(root.join("lost"), b"x").unwrap();
        j.created(&root.join("lost"), 3, 1);
        j.created_file(3);
        // A rename over `kept` without a directory fsync: undone, `kept` comes back.
        let displaced = j.trash_path();
        fs::write(root.join("tmp"), b"new").unwrap();
        fs::rename(root.join("kept"), &displaced).unwrap();
        fs::rename(root.join("tmp"), root.join("kept")).unwrap();
        j.renamed(
            &root.join("tmp"),
            &root.join("kept"),
            9,
            Some(displaced),
            [1, 1],
        );
        let loss = j.roll_back(|_| None);
        assert_eq!(fs::read(root.join("kept")).unwrap(), b"data");
        assert!(!root.join("lost").exists());
        // `tmp` was created before the journal started: the undone rename brings it back.
        assert_eq!(fs::read(root.join("tmp")).unwrap(), b"new");
        assert_eq!(loss.namespace_ops, 2);
        assert!(loss.skipped.is_empty(), "{:?}", loss.skipped);
    }

    #[test]
    fn a_directory_fsync_makes_renames_and_removes_durable() {
        let dir = scratch("dirsync");
        let root = dir.join("root");
        let mut j = Journal::new(&dir.join("trash"));
        fs::write(root.join("a"), b"a").unwrap();
        fs::write(root.join("gone"), b"g").unwrap();
        fs::rename(root.join("a"), root.join("b")).unwrap();
        j.renamed(&root.join("a"), &root.join("b"), 9, None, [1, 1]);
        let trash = j.trash_path();
        fs::rename(root.join("gone"), &trash).unwrap();
        j.removed(&root.join("gone"), trash.clone(), 1);
        j.dir_synced(1);
        assert!(!trash.exists(), "a durable remove empties its trash");
        let loss = j.roll_back(|_| None);
        assert!(root.join("b").exists() && !root.join("a").exists());
        assert!(!root.join("gone").exists());
        assert_eq!(loss.namespace_ops, 0);
    }

    #[test]
    fn a_durable_rename_of_a_directory_moves_the_older_changes_under_it() {
        let dir = scratch("moved");
        let root = dir.join("root");
        let mut j = Journal::new(&dir.join("trash"));
        // A/ is durable; A/f is created in it (pending on A), then A is renamed to B and the
        // root synced: the rename is durable, the creation of f is not.
        fs::create_dir(root.join("A")).unwrap();
        fs::write(root.join("A/f"), b"x").unwrap();
        j.created(&root.join("A/f"), 3, 2);
        fs::rename(root.join("A"), root.join("B")).unwrap();
        j.renamed(&root.join("A"), &root.join("B"), 2, None, [1, 1]);
        j.dir_synced(1);
        let loss = j.roll_back(|_| None);
        assert!(root.join("B").is_dir() && !root.join("B/f").exists());
        assert!(loss.skipped.is_empty(), "{:?}", loss.skipped);
    }
}
