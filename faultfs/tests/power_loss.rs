//! The filesystem itself, mounted for real through /dev/fuse (CI runs as root): what survives a
//! power loss and what does not, with ordinary file operations from this process.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use faultline_faultfs::Disk;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faultfs-{name}-{}", std::process::id()));
    if dir.exists() {
        let _ = faultline_faultfs::force_unmount(&dir.join("mnt"));
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn mounted(name: &str) -> (PathBuf, Disk) {
    faultline_faultfs::check_available().expect("FUSE is needed (CI runs as root)");
    let dir = scratch(name);
    let mnt = dir.join("mnt");
    let disk = Disk::mount(&dir.join("disk"), &mnt, name).expect("mount");
    (mnt, disk)
}

fn is_mounted(path: &Path) -> bool {
    let canonical = path.canonicalize().unwrap_or(path.to_path_buf());
    faultline_faultfs::mounted()
        .iter()
        .any(|m| m.mountpoint == canonical)
}

fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

#[test]
fn unsynced_data_is_lost_and_synced_data_survives() {
    let (mnt, mut disk) = mounted("data");
    // Created and its directory synced, so the name survives; the data is the question.
    let synced = mnt.join("synced");
    let unsynced = mnt.join("unsynced");
    let mut a = File::create(&synced).unwrap();
    let mut b = File::create(&unsynced).unwrap();
    sync_dir(&mnt);
    a.write_all(b"durable").unwrap();
    a.sync_all().unwrap();
    a.write_all(b" and then not").unwrap();
    b.write_all(b"never synced").unwrap();
    // fdatasync counts as much as fsync.
    let c_path = mnt.join("datasynced");
    let mut c = File::create(&c_path).unwrap();
    c.write_all(b"data-synced").unwrap();
    c.sync_data().unwrap();
    // Overwrite part of synced data without syncing: the old bytes come back.
    a.write_all_at(b"DUR", 0).unwrap();
    assert_eq!(fs::read(&synced).unwrap(), b"DURable and then not");
    drop((a, b, c));

    let loss = disk.power_loss().expect("power loss");
    assert!(is_mounted(&mnt), "mounted again after the power loss");
    assert_eq!(fs::read(&synced).unwrap(), b"durable");
    assert_eq!(
        fs::read(&unsynced).unwrap(),
        b"",
        "the name was synced, the data not"
    );
    assert_eq!(fs::read(&c_path).unwrap(), b"data-synced");
    assert_eq!(loss.files, 2, "{loss:?}");
    assert_eq!(
        loss.bytes,
        (" and then not".len() + "never synced".len() + 3) as u64
    );

    // O_DSYNC writes are durable when they return.
    let mut d = OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(nix::libc::O_DSYNC)
        .open(mnt.join("dsync"))
        .unwrap();
    d.write_all(b"at once").unwrap();
    drop(d);
    disk.power_loss().unwrap();
    assert_eq!(fs::read(mnt.join("dsync")).unwrap(), b"at once");
    disk.unmount().unwrap();
    assert!(!is_mounted(&mnt));
}

#[test]
fn a_rename_without_a_directory_fsync_is_undone() {
    let (mnt, mut disk) = mounted("rename");
    // The usual atomic replace: old version durable, new one written to a temp file, synced,
    // renamed over it, but the directory never synced. Beside it, a durable file removed and a
    // new directory, neither synced either.
    fs::write(mnt.join("current"), b"v1").unwrap();
    File::open(mnt.join("current")).unwrap().sync_all().unwrap();
    fs::write(mnt.join("doomed"), b"still here").unwrap();
    File::open(mnt.join("doomed")).unwrap().sync_all().unwrap();
    sync_dir(&mnt);
    let mut tmp = File::create(mnt.join("current.tmp")).unwrap();
    tmp.write_all(b"v2").unwrap();
    tmp.sync_all().unwrap();
    drop(tmp);
    fs::rename(mnt.join("current.tmp"), mnt.join("current")).unwrap();
    fs::remove_file(mnt.join("doomed")).unwrap();
    fs::create_dir(mnt.join("newdir")).unwrap();
    fs::write(mnt.join("newdir/inside"), b"x").unwrap();
    assert_eq!(fs::read(mnt.join("current")).unwrap(), b"v2");

    let loss = disk.power_loss().unwrap();
    assert_eq!(fs::read(mnt.join("current")).unwrap(), b"v1");
    // The temp file was fsynced: its creation is durable, so it is back under its old name.
    assert_eq!(fs::read(mnt.join("current.tmp")).unwrap(), b"v2");
    assert_eq!(fs::read(mnt.join("doomed")).unwrap(), b"still here");
    assert!(!mnt.join("newdir").exists());
    assert!(loss.namespace_ops >= 3, "{loss:?}");
    assert!(loss.skipped.is_empty(), "{loss:?}");

    // The same with the directory synced: the rename stays.
    fs::rename(mnt.join("current.tmp"), mnt.join("current")).unwrap();
    sync_dir(&mnt);
    disk.power_loss().unwrap();
    assert_eq!(fs::read(mnt.join("current")).unwrap(), b"v2");
    assert!(!mnt.join("current.tmp").exists());
    disk.unmount().unwrap();
}

#[test]
fn a_new_file_survives_if_it_or_its_directory_was_synced_and_not_otherwise() {
    let (mnt, mut disk) = mounted("create");
    fs::write(mnt.join("dir-synced"), b"").unwrap();
    sync_dir(&mnt);
    let f = File::create(mnt.join("file-synced")).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::write(mnt.join("neither"), b"abc").unwrap();
    disk.power_loss().unwrap();
    assert!(mnt.join("dir-synced").exists());
    assert!(mnt.join("file-synced").exists());
    assert!(!mnt.join("neither").exists());
    disk.unmount().unwrap();
}

#[test]
fn concurrent_writers_keep_exactly_what_each_synced() {
    let (mnt, mut disk) = mounted("concurrent");
    sync_dir(&mnt);
    // Eight threads append numbered records to their own file and to one shared file,
    // fsyncing their own file after every 10th record.
    let shared = OpenOptions::new()
        .create(true)
        .append(true)
        .open(mnt.join("shared"))
        .unwrap();
    shared.sync_all().unwrap();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let mnt = mnt.clone();
            let shared = shared.try_clone().unwrap();
            scope.spawn(move || {
                let mut own = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(mnt.join(format!("w{t}")))
                    .unwrap();
                own.sync_all().unwrap();
                for i in 0..95 {
                    own.write_all(format!("{t}:{i:03}\n").as_bytes()).unwrap();
                    (&shared)
                        .write_all(format!("{t}:{i:03}\n").as_bytes())
                        .unwrap();
                    if i % 10 == 9 {
                        own.sync_data().unwrap();
                    }
                }
            });
        }
    });
    let shared_len = fs::metadata(mnt.join("shared")).unwrap().len();
    assert_eq!(shared_len, 8 * 95 * 6);
    drop(shared);
    disk.power_loss().unwrap();
    for t in 0..8 {
        let text = fs::read_to_string(mnt.join(format!("w{t}"))).unwrap();
        let expected: String = (0..90).map(|i| format!("{t}:{i:03}\n")).collect();
        assert_eq!(text, expected, "writer {t} keeps its 90 synced records");
    }
    assert_eq!(fs::read(mnt.join("shared")).unwrap(), b"", "never synced");
    disk.unmount().unwrap();
}

#[test]
fn a_kill_without_power_loss_keeps_everything() {
    // What `kill` is: the process goes, the page cache (here: the backing directory) stays.
    let (mnt, disk) = mounted("remount");
    fs::write(mnt.join("unsynced"), b"kept by the page cache").unwrap();
    let backing = disk.backing_dir().to_path_buf();
    disk.unmount().unwrap();
    assert_eq!(
        fs::read(backing.join("unsynced")).unwrap(),
        b"kept by the page cache"
    );
}

/// ext4 syncs the new parents of an inode it fsyncs, and a directory sync commits all of that
/// directory's changes: a log rotated by a rename, then a new log created and fsynced, keeps
/// both (the rename is not undone over the fsynced new file).
#[test]
fn fsyncing_a_new_file_makes_its_directory_s_earlier_changes_durable() {
    let (mnt, mut disk) = mounted("rotate");
    fs::write(mnt.join("log"), b"old").unwrap();
    File::open(mnt.join("log")).unwrap().sync_all().unwrap();
    fs::rename(mnt.join("log"), mnt.join("log.1")).unwrap();
    let mut new = File::create(mnt.join("log")).unwrap();
    new.write_all(b"new").unwrap();
    new.sync_all().unwrap();
    drop(new);
    disk.power_loss().unwrap();
    assert_eq!(fs::read(mnt.join("log")).unwrap(), b"new");
    assert_eq!(fs::read(mnt.join("log.1")).unwrap(), b"old");

    // A file fsynced in a new directory that was then renamed: the directory, its new name
    // and the file all stay.
    fs::create_dir(mnt.join("d")).unwrap();
    fs::write(mnt.join("d/f"), b"").unwrap();
    fs::rename(mnt.join("d"), mnt.join("e")).unwrap();
    let mut f = OpenOptions::new()
        .write(true)
        .open(mnt.join("e/f"))
        .unwrap();
    f.write_all(b"synced").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let loss = disk.power_loss().unwrap();
    assert_eq!(fs::read(mnt.join("e/f")).unwrap(), b"synced");
    assert!(!mnt.join("d").exists());
    assert!(loss.skipped.is_empty(), "{loss:?}");
    disk.unmount().unwrap();
}
