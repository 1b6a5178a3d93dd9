//! Durable storage: a write-ahead log for the hard state and log entries, plus a snapshot file.
//!
//! Layout of the data directory:
//! - `wal-GGGGGGGGGGGGGGGG.log` — the write-ahead log, generation `G` (hex). Only the highest
//!   generation is live; a new generation is written whole (to `wal.tmp`, fsynced, renamed,
//!   directory fsynced) when a snapshot makes the old one's prefix obsolete, then older ones are
//!   deleted.
//! - `snapshot` — the newest snapshot, replaced atomically (written to `snapshot.tmp`,
//!   fsynced, renamed, directory fsynced).
//!
//! A WAL record is `[len: u32 LE][crc32: u32 LE][payload: len bytes]`, the CRC-32 (IEEE) being
//! over the payload. Payload byte 0 is the record type: 1 = meta (format version, node id:
//! always the first record), 2 = hard state, 3 = entries (which replace any stored entries from
//! the first one's index on, as Raft's conflict truncation does).
//!
//! No record is longer than [`MAX_RECORD`]: a batch of entries that would make a longer one (a
//! leader can batch thousands of 1 MiB writes into one append), and the whole log written out
//! when a new generation starts, are split into as many entries records as it takes. Recovery
//! reads them back one by one with the same meaning as one big record. A single entry too large
//! for any record is a write error (the node stops), never a record recovery would reject.
//!
//! Recovery reads records in order. A record that is incomplete or fails its checksum *and is
//! followed by no valid record* is the torn tail of a write that was interrupted by a crash: it
//! was never fsynced, so nothing was acknowledged on its strength, and it is truncated away (with
//! a warning). A bad record *followed by a valid one* means the disk lost or corrupted data
//! that had been synced: recovery refuses to start and names the file and offset, because
//! silently dropping it could drop acknowledged writes. A record whose checksum is valid but
//! which does not decode was written whole (a torn write cannot produce a matching checksum,
//! barring a 1-in-4-billion accident), so it is never a torn tail either: it is a bug or a
//! record of a format this build does not know, and recovery refuses to start, naming the file
//! and offset, wherever in the file it is.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::codec::{self, DecodeError, Reader, Writer};
use crate::core::{Entry, HardState, NodeId, Snapshot};
use crate::replica::{Persist, Recovered};

const WAL_VERSION: u32 = 1;
const REC_META: u8 = 1;
const REC_HARD_STATE: u8 = 2;
const REC_ENTRIES: u8 = 3;
/// Largest record payload written or accepted; a length field claiming more is corruption.
/// (Well below `u32::MAX`, so the length field can never wrap.)
pub const MAX_RECORD: usize = 256 << 20;
/// The bytes of an entries record that are not entries: the record type and the entry count.
const ENTRIES_OVERHEAD: usize = 1 + 4;
const SNAPSHOT_MAGIC: &[u8; 8] = b"FLSNAP01";

/// A storage failure, always naming the file involved.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: corrupt WAL record at byte offset {offset} ({why}), followed by a valid record at offset {next}; \
         refusing to start because truncating here would discard data that was already synced. \
         Restore this node's data directory from a backup, or remove it to rejoin the cluster as an empty node"
    )]
    CorruptMiddle {
        path: PathBuf,
        offset: u64,
        why: String,
        next: u64,
    },
    #[error(
        "{path}: the WAL record at byte offset {offset} has a valid checksum but does not decode ({why}); \
         it was written whole, so it is not a torn write: it was written by a bug or by a build with \
         another WAL format. Refusing to start rather than drop it (and whatever follows it). \
         Run the build that wrote this data directory, or remove the directory to rejoin the cluster \
         as an empty node"
    )]
    Undecodable {
        path: PathBuf,
        offset: u64,
        why: String,
    },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The write-ahead log and snapshot of one node.
pub struct Storage {
    dir: PathBuf,
    node_id: NodeId,
    wal_path: PathBuf,
    wal: File,
    generation: u64,
    /// Encoded records not yet written to the file.
    buf: BytesMut,
    /// What is stored, mirrored in memory so that a new WAL generation can be written from it.
    hard_state: HardState,
    snapshot_index: u64,
    entries: Vec<Entry>,
    /// Whether anything was written since the last sync.
    dirty: bool,
    /// Largest record payload ([`MAX_RECORD`]; smaller in tests, to exercise splitting).
    max_record: usize,
    /// The `skip-fsync` bug: [`Storage::sync`] writes but does not fsync.
    pub skip_fsync: bool,
}

fn wal_name(generation: u64) -> String {
    format!("wal-{generation:016x}.log")
}

fn parse_wal_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn encode_record(buf: &mut BytesMut, payload: &[u8]) {
    // Every caller keeps payloads within MAX_RECORD (entries are split by `encode_entries`; the
    // other records are a few bytes), so the length fits the u32 field.
    debug_assert!(payload.len() <= MAX_RECORD);
    let mut w = Writer(buf);
    w.u32(payload.len() as u32);
    w.u32(crc32fast::hash(payload));
    buf.extend_from_slice(payload);
}

fn meta_payload(node_id: NodeId) -> Vec<u8> {
    let mut b = BytesMut::new();
    let mut w = Writer(&mut b);
    w.u8(REC_META);
    w.u32(WAL_VERSION);
    w.u64(node_id);
    b.to_vec()
}

fn hard_state_payload(hs: &HardState) -> Vec<u8> {
    let mut b = BytesMut::new();
    let mut w = Writer(&mut b);
    w.u8(REC_HARD_STATE);
    codec::put_hard_state(&mut w, hs);
    b.to_vec()
}

fn entries_payload(entries: &[Entry]) -> Vec<u8> {
    let mut b = BytesMut::new();
    let mut w = Writer(&mut b);
    w.u8(REC_ENTRIES);
    codec::put_entries(&mut w, entries);
    b.to_vec()
}

/// Appends `entries` to `buf` as entries records of at most `max_record` payload bytes each,
/// consecutive runs in order. Replaying them one after the other has the same effect as one
/// record holding all of them: each replaces the stored entries from its first index on, and
/// each after the first starts right after the one before. An entry too large to fit in a record
/// on its own is an error naming it (`path` is the WAL it was to go to).
fn encode_entries(
    buf: &mut BytesMut,
    entries: &[Entry],
    max_record: usize,
    path: &Path,
) -> Result<(), StorageError> {
    let mut start = 0;
    while start < entries.len() {
        let mut size = ENTRIES_OVERHEAD;
        let mut end = start;
        while end < entries.len() {
            let len = codec::entry_len(&entries[end]);
            if size + len > max_record {
                break;
            }
            size += len;
            end += 1;
        }
        if end == start {
            let e = &entries[start];
            return Err(StorageError::Invalid {
                path: path.to_path_buf(),
                why: format!(
                    "log entry {} (term {}) is {} bytes, more than one WAL record can hold ({max_record} bytes); not writing it",
                    e.index,
                    e.term,
                    codec::entry_len(e)
                ),
            });
        }
        encode_record(buf, &entries_payload(&entries[start..end]));
        start = end;
    }
    Ok(())
}

enum Record {
    Meta { version: u32, node_id: NodeId },
    HardState(HardState),
    Entries(Vec<Entry>),
}

fn decode_record(payload: Bytes) -> Result<Record, DecodeError> {
    let mut r = Reader::new(payload);
    let rec = match r.u8("record type")? {
        REC_META => Record::Meta {
            version: r.u32("version")?,
            node_id: r.u64("node id")?,
        },
        REC_HARD_STATE => Record::HardState(codec::get_hard_state(&mut r)?),
        REC_ENTRIES => Record::Entries(codec::get_entries(&mut r)?),
        t => return Err(r.err(format!("unknown record type {t}"))),
    };
    r.finish("record")?;
    Ok(rec)
}

/// Why no record could be read at some offset.
enum BadRecord {
    /// Incomplete, an impossible length, or a checksum mismatch: what a torn write leaves (at the
    /// end of the file) or what lost or corrupted data looks like (before a valid record).
    Damaged(String),
    /// The checksum matches but the payload does not decode: written whole, yet not a record
    /// this build understands.
    Undecodable(String),
}

/// Tries to read one valid record at `pos`; returns it and the offset after it.
fn record_at(data: &Bytes, pos: usize, max_record: usize) -> Result<(Record, usize), BadRecord> {
    let damaged = BadRecord::Damaged;
    if data.len() - pos < 8 {
        return Err(damaged(format!(
            "incomplete record header ({} bytes)",
            data.len() - pos
        )));
    }
    let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
    let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
    if len == 0 || len > max_record {
        return Err(damaged(format!("invalid record length {len}")));
    }
    if data.len() - pos - 8 < len {
        return Err(damaged(format!(
            "incomplete record: length {len}, {} bytes present",
            data.len() - pos - 8
        )));
    }
    let payload = data.slice(pos + 8..pos + 8 + len);
    if crc32fast::hash(&payload) != crc {
        return Err(damaged("checksum mismatch".into()));
    }
    let rec = decode_record(payload).map_err(|e| BadRecord::Undecodable(e.to_string()))?;
    Ok((rec, pos + 8 + len))
}

/// Whether a record that was written whole (its checksum matches) starts at `pos`.
fn whole_record_at(data: &Bytes, pos: usize, max_record: usize) -> bool {
    !matches!(record_at(data, pos, max_record), Err(BadRecord::Damaged(_)))
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Writes `bytes` to `dir/name` atomically: temp file, fsync, rename, directory fsync.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, &dst).map_err(io(&dst))?;
    sync_dir(dir)
}

fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.extend_from_slice(SNAPSHOT_MAGIC);
    let mut w = Writer(&mut b);
    w.u64(s.index);
    w.u64(s.term);
    w.u64(s.data.len() as u64);
    b.extend_from_slice(&s.data);
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.to_vec()
}

fn decode_snapshot(path: &Path, data: Vec<u8>) -> Result<Snapshot, StorageError> {
    let bad = |why: String| StorageError::Invalid {
        path: path.to_path_buf(),
        why,
    };
    if data.len() < 8 + 24 + 4 || &data[..8] != SNAPSHOT_MAGIC {
        return Err(bad(
            "not a faultline snapshot file (bad magic or too short)".into(),
        ));
    }
    let body = &data[..data.len() - 4];
    let crc = u32::from_le_bytes([
        data[data.len() - 4],
        data[data.len() - 3],
        data[data.len() - 2],
        data[data.len() - 1],
    ]);
    if crc32fast::hash(body) != crc {
        return Err(bad("snapshot checksum mismatch: the file is corrupt".into()));
    }
    let mut r = Reader::new(Bytes::copy_from_slice(&body[8..]));
    let index = r.u64("index").map_err(|e| bad(e.to_string()))?;
    let term = r.u64("term").map_err(|e| bad(e.to_string()))?;
    let len = r.u64("length").map_err(|e| bad(e.to_string()))? as usize;
    if len != r.remaining() {
        return Err(bad(format!(
            "snapshot length {len} does not match the file ({} bytes of data)",
            r.remaining()
        )));
    }
    let start = 8 + 24;
    Ok(Snapshot {
        index,
        term,
        data: Bytes::copy_from_slice(&body[start..start + len]),
    })
}

impl Storage {
    /// Opens (creating if needed) the data directory of node `node_id` and recovers what it
    /// holds. A torn final WAL record is truncated with a warning; anything else that is wrong is
    /// an error naming the file.
    pub fn open(dir: &Path, node_id: NodeId) -> Result<(Storage, Recovered), StorageError> {
        Storage::open_with_record_limit(dir, node_id, MAX_RECORD)
    }

    /// [`Storage::open`] with records limited to `max_record` bytes (tests use a small limit to
    /// exercise record splitting without writing hundreds of megabytes).
    fn open_with_record_limit(
        dir: &Path,
        node_id: NodeId,
        max_record: usize,
    ) -> Result<(Storage, Recovered), StorageError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut generations = Vec::new();
        for ent in fs::read_dir(dir).map_err(io(dir))? {
            let ent = ent.map_err(io(dir))?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                // An interrupted atomic write: never renamed into place, so never relied upon.
                let p = ent.path();
                fs::remove_file(&p).map_err(io(&p))?;
            } else if let Some(g) = parse_wal_name(&name) {
                generations.push(g);
            }
        }
        generations.sort_unstable();

        let snap_path = dir.join("snapshot");
        let snapshot = match fs::read(&snap_path) {
            Ok(data) => Some(decode_snapshot(&snap_path, data)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&snap_path)(e)),
        };
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.index);

        let Some(&generation) = generations.last() else {
            if snapshot.is_some() {
                return Err(StorageError::Invalid {
                    path: dir.to_path_buf(),
                    why:
                        "a snapshot exists but no write-ahead log; the data directory is incomplete"
                            .into(),
                });
            }
            let storage = Storage::create_generation(
                dir,
                node_id,
                1,
                HardState::default(),
                0,
                Vec::new(),
                max_record,
            )?;
            return Ok((storage, Recovered::default()));
        };
        for &old in &generations[..generations.len() - 1] {
            let p = dir.join(wal_name(old));
            fs::remove_file(&p).map_err(io(&p))?;
        }

        let wal_path = dir.join(wal_name(generation));
        let mut data = Vec::new();
        File::open(&wal_path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(io(&wal_path))?;
        let data = Bytes::from(data);
        let mut hard_state = HardState::default();
        let mut entries: Vec<Entry> = Vec::new();
        let mut pos = 0usize;
        let mut first = true;
        while pos < data.len() {
            let (rec, next) = match record_at(&data, pos, max_record) {
                Ok(x) => x,
                Err(BadRecord::Undecodable(why)) => {
                    return Err(StorageError::Undecodable {
                        path: wal_path,
                        offset: pos as u64,
                        why,
                    })
                }
                Err(BadRecord::Damaged(why)) => {
                    if let Some(valid) =
                        (pos + 1..data.len()).find(|&p| whole_record_at(&data, p, max_record))
                    {
                        return Err(StorageError::CorruptMiddle {
                            path: wal_path,
                            offset: pos as u64,
                            why,
                            next: valid as u64,
                        });
                    }
                    tracing::warn!(
                        file = %wal_path.display(),
                        offset = pos,
                        reason = %why,
                        "truncating the torn final record of the write-ahead log (an interrupted, never-synced write)"
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&wal_path)
                        .map_err(io(&wal_path))?;
                    f.set_len(pos as u64).map_err(io(&wal_path))?;
                    f.sync_all().map_err(io(&wal_path))?;
                    break;
                }
            };
            match rec {
                Record::Meta {
                    version,
                    node_id: id,
                } => {
                    if !first {
                        return Err(StorageError::Invalid {
                            path: wal_path,
                            why: format!("unexpected meta record at offset {pos}"),
                        });
                    }
                    if version != WAL_VERSION {
                        return Err(StorageError::Invalid {
                            path: wal_path,
                            why: format!("WAL format version {version}, this build reads version {WAL_VERSION}"),
                        });
                    }
                    if id != node_id {
                        return Err(StorageError::Invalid {
                            path: wal_path,
                            why: format!("this data directory belongs to node {id}, not node {node_id}; check --id and --data-dir"),
                        });
                    }
                }
                _ if first => {
                    return Err(StorageError::Invalid {
                        path: wal_path,
                        why: "the first record is not a meta record; not a faultline WAL".into(),
                    })
                }
                Record::HardState(hs) => hard_state = hs,
                Record::Entries(es) => {
                    if let Some(f) = es.first() {
                        let expected_max = entries.last().map_or(f.index, |e| e.index + 1);
                        if !entries.is_empty() && f.index > expected_max {
                            return Err(StorageError::Invalid {
                                path: wal_path,
                                why: format!("entries record at offset {pos} starts at index {} after index {}: gap", f.index, expected_max - 1),
                            });
                        }
                        entries.retain(|e| e.index < f.index);
                        entries.extend(es);
                    }
                }
            }
            first = false;
            pos = next;
        }
        if first {
            // Even the meta record was torn: the file was being created. Start it again.
            let storage = Storage::create_generation(
                dir,
                node_id,
                generation + 1,
                hard_state,
                snapshot_index,
                Vec::new(),
                max_record,
            )?;
            let p = dir.join(wal_name(generation));
            fs::remove_file(&p).map_err(io(&p))?;
            return Ok((
                storage,
                Recovered {
                    hard_state,
                    snapshot,
                    entries: Vec::new(),
                },
            ));
        }
        entries.retain(|e| e.index > snapshot_index);
        if let Some(f) = entries.first() {
            if f.index != snapshot_index + 1 {
                return Err(StorageError::Invalid {
                    path: wal_path,
                    why: format!("log entries start at index {} but the snapshot ends at {snapshot_index}: gap", f.index),
                });
            }
        }
        let wal = OpenOptions::new()
            .append(true)
            .open(&wal_path)
            .map_err(io(&wal_path))?;
        let storage = Storage {
            dir: dir.to_path_buf(),
            node_id,
            wal_path,
            wal,
            generation,
            buf: BytesMut::new(),
            hard_state,
            snapshot_index,
            entries: entries.clone(),
            dirty: false,
            max_record,
            skip_fsync: false,
        };
        Ok((
            storage,
            Recovered {
                hard_state,
                snapshot,
                entries,
            },
        ))
    }

    /// Writes a complete new WAL generation holding `hard_state` and `entries` and makes it the
    /// live one.
    fn create_generation(
        dir: &Path,
        node_id: NodeId,
        generation: u64,
        hard_state: HardState,
        snapshot_index: u64,
        entries: Vec<Entry>,
        max_record: usize,
    ) -> Result<Storage, StorageError> {
        let name = wal_name(generation);
        let mut buf = BytesMut::new();
        encode_record(&mut buf, &meta_payload(node_id));
        encode_record(&mut buf, &hard_state_payload(&hard_state));
        encode_entries(&mut buf, &entries, max_record, &dir.join(&name))?;
        write_atomic(dir, &name, &buf)?;
        let wal_path = dir.join(&name);
        let wal = OpenOptions::new()
            .append(true)
            .open(&wal_path)
            .map_err(io(&wal_path))?;
        Ok(Storage {
            dir: dir.to_path_buf(),
            node_id,
            wal_path,
            wal,
            generation,
            buf: BytesMut::new(),
            hard_state,
            snapshot_index,
            entries,
            dirty: false,
            max_record,
            skip_fsync: false,
        })
    }

    /// Replaces the live WAL by a new generation built from the in-memory mirror, then deletes
    /// the old one. Durable when it returns.
    fn rotate(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        let old = self.wal_path.clone();
        let next = Storage::create_generation(
            &self.dir,
            self.node_id,
            self.generation + 1,
            self.hard_state,
            self.snapshot_index,
            std::mem::take(&mut self.entries),
            self.max_record,
        )?;
        let skip_fsync = self.skip_fsync;
        *self = next;
        self.skip_fsync = skip_fsync;
        fs::remove_file(&old).map_err(io(&old))?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        if !self.buf.is_empty() {
            self.wal.write_all(&self.buf).map_err(io(&self.wal_path))?;
            self.buf.clear();
            self.dirty = true;
        }
        Ok(())
    }

    /// Stages one [`Persist`]'s writes (see its documentation for the order). Snapshots are
    /// written and synced at once; WAL records become durable at the next [`Storage::sync`].
    pub fn write(&mut self, p: &Persist) -> Result<(), StorageError> {
        if let Some(s) = &p.snapshot {
            write_atomic(&self.dir, "snapshot", &encode_snapshot(s))?;
            self.snapshot_index = s.index;
            self.entries.clear();
            self.rotate()?;
        }
        if let Some(first) = p.entries.first() {
            encode_entries(&mut self.buf, &p.entries, self.max_record, &self.wal_path)?;
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(p.entries.iter().cloned());
        }
        if let Some(hs) = p.hard_state {
            encode_record(&mut self.buf, &hard_state_payload(&hs));
            self.hard_state = hs;
        }
        if let Some(s) = &p.compact {
            self.flush()?;
            write_atomic(&self.dir, "snapshot", &encode_snapshot(s))?;
            self.snapshot_index = s.index;
            self.entries.retain(|e| e.index > s.index);
            self.rotate()?;
        }
        Ok(())
    }

    /// Makes everything staged durable (one `fdatasync` for any number of staged writes: this is
    /// where concurrent proposals share a sync).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        if self.dirty && !self.skip_fsync {
            self.wal.sync_data().map_err(io(&self.wal_path))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// The live WAL file (for tests and diagnostics).
    pub fn wal_path(&self) -> &Path {
        &self.wal_path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::EntryKind;

    fn tmpdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("faultline-storage-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Command,
            data: Bytes::from(format!("e{index}")),
        }
    }

    fn persist(entries: Vec<Entry>, hs: Option<HardState>) -> Persist {
        Persist {
            entries,
            hard_state: hs,
            ..Persist::default()
        }
    }

    #[test]
    fn entries_and_hard_state_survive_reopen_with_truncation_semantics() {
        let d = tmpdir("reopen");
        let (mut s, rec) = Storage::open(&d, 1).unwrap();
        assert_eq!(rec, Recovered::default());
        let hs = HardState {
            term: 3,
            vote: Some(2),
        };
        s.write(&persist((1..=5).map(|i| entry(i, 1)).collect(), Some(hs)))
            .unwrap();
        // A conflicting suffix from a new leader replaces 4 and 5.
        s.write(&persist(vec![entry(4, 3)], None)).unwrap();
        s.sync().unwrap();
        drop(s);
        let (_, rec) = Storage::open(&d, 1).unwrap();
        assert_eq!(rec.hard_state, hs);
        let got: Vec<(u64, u64)> = rec.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(got, vec![(1, 1), (2, 1), (3, 1), (4, 3)]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn compaction_writes_a_snapshot_and_a_new_generation() {
        let d = tmpdir("compact");
        let (mut s, _) = Storage::open(&d, 7).unwrap();
        s.write(&persist(
            (1..=10).map(|i| entry(i, 2)).collect(),
            Some(HardState {
                term: 2,
                vote: None,
            }),
        ))
        .unwrap();
        s.sync().unwrap();
        let snap = Snapshot {
            index: 8,
            term: 2,
            data: Bytes::from_static(b"state"),
        };
        s.write(&Persist {
            compact: Some(snap.clone()),
            ..Persist::default()
        })
        .unwrap();
        s.sync().unwrap();
        drop(s);
        let wals: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("wal-"))
            .collect();
        assert_eq!(wals.len(), 1, "old generation deleted");
        let (_, rec) = Storage::open(&d, 7).unwrap();
        assert_eq!(rec.snapshot, Some(snap));
        assert_eq!(
            rec.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![9, 10]
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_final_record_is_truncated_and_earlier_records_kept() {
        let d = tmpdir("torn");
        let (mut s, _) = Storage::open(&d, 1).unwrap();
        s.write(&persist(vec![entry(1, 1), entry(2, 1)], None))
            .unwrap();
        s.sync().unwrap();
        s.write(&persist(vec![entry(3, 1)], None)).unwrap();
        s.sync().unwrap();
        let path = s.wal_path().to_path_buf();
        drop(s);
        let len = fs::metadata(&path).unwrap().len();
        for cut in 1..20 {
            let copy = tmpdir(&format!("torn-{cut}"));
            fs::create_dir_all(&copy).unwrap();
            let target = copy.join(path.file_name().unwrap());
            fs::copy(&path, &target).unwrap();
            OpenOptions::new()
                .write(true)
                .open(&target)
                .unwrap()
                .set_len(len - cut)
                .unwrap();
            let (_, rec) = Storage::open(&copy, 1).unwrap();
            assert_eq!(
                rec.entries.len(),
                2,
                "cut {cut}: entries 1 and 2 survive, 3 was torn"
            );
            // Recovery truncated the file to the last good record: appending works again.
            assert!(fs::metadata(&target).unwrap().len() < len - cut + 1);
            let _ = fs::remove_dir_all(&copy);
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_corrupt_record_in_the_middle_is_a_startup_error_naming_file_and_offset() {
        let d = tmpdir("middle");
        let (mut s, _) = Storage::open(&d, 1).unwrap();
        s.write(&persist(vec![entry(1, 1)], None)).unwrap();
        s.sync().unwrap();
        let path = s.wal_path().to_path_buf();
        let offset = fs::metadata(&path).unwrap().len();
        s.write(&persist(vec![entry(2, 1)], None)).unwrap();
        s.write(&persist(vec![entry(3, 1)], None)).unwrap();
        s.sync().unwrap();
        drop(s);
        let mut data = fs::read(&path).unwrap();
        data[offset as usize + 12] ^= 0xFF; // inside entry 2's payload
        fs::write(&path, &data).unwrap();
        let err = Storage::open(&d, 1)
            .err()
            .expect("must refuse to start")
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(&format!("offset {offset}")), "{err}");
        assert!(err.contains("checksum"), "{err}");
        // Nothing was truncated.
        assert_eq!(fs::read(&path).unwrap(), data);
        let _ = fs::remove_dir_all(&d);
    }

    fn big_entry(index: u64, term: u64, len: usize) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Command,
            data: Bytes::from(vec![b'a' + (index % 26) as u8; len]),
        }
    }

    /// Walks a WAL file (which must be clean) and returns each record's type and payload length.
    fn records(path: &Path) -> Vec<(u8, usize)> {
        let data = fs::read(path).unwrap();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            out.push((data[pos + 8], len));
            pos += 8 + len;
        }
        assert_eq!(pos, data.len());
        out
    }

    /// One batch (and one rotation) holding more entry bytes than a record may: it is written as
    /// several records, each within the limit, and recovery gets every entry back. (Unsplit, the
    /// record would be over the limit, and recovery would take it for a torn tail and drop it.)
    #[test]
    fn a_batch_larger_than_a_record_is_split_and_recovered_whole() {
        const LIMIT: usize = 4096;
        let d = tmpdir("split");
        let (mut s, _) = Storage::open_with_record_limit(&d, 1, LIMIT).unwrap();
        let hs = HardState {
            term: 2,
            vote: Some(1),
        };
        let batch: Vec<Entry> = (1..=40).map(|i| big_entry(i, 2, 500)).collect();
        let total: usize = batch.iter().map(codec::entry_len).sum();
        assert!(total > 4 * LIMIT);
        s.write(&persist(batch.clone(), Some(hs))).unwrap();
        s.sync().unwrap();
        let path = s.wal_path().to_path_buf();
        drop(s);
        let recs = records(&path);
        let entry_records: Vec<usize> = recs
            .iter()
            .filter(|(t, _)| *t == REC_ENTRIES)
            .map(|&(_, len)| len)
            .collect();
        assert!(entry_records.len() >= 5, "{recs:?}");
        assert!(entry_records.iter().all(|&len| len <= LIMIT), "{recs:?}");

        let (mut s, rec) = Storage::open_with_record_limit(&d, 1, LIMIT).unwrap();
        assert_eq!(
            rec.entries, batch,
            "every entry of the split batch is recovered"
        );
        assert_eq!(rec.hard_state, hs);

        // A snapshot at 5 rotates the WAL: the 35 entries left are written out again, split.
        s.write(&Persist {
            compact: Some(Snapshot {
                index: 5,
                term: 2,
                data: Bytes::from_static(b"state"),
            }),
            ..Persist::default()
        })
        .unwrap();
        s.sync().unwrap();
        let path = s.wal_path().to_path_buf();
        drop(s);
        assert!(records(&path).iter().all(|&(_, len)| len <= LIMIT));
        let (_, rec) = Storage::open_with_record_limit(&d, 1, LIMIT).unwrap();
        assert_eq!(rec.entries, batch[5..].to_vec());
        let _ = fs::remove_dir_all(&d);
    }

    /// An entry that no record can hold is refused when it is written (the node then stops),
    /// instead of becoming a record that recovery would reject.
    #[test]
    fn an_entry_too_large_for_any_record_is_a_write_error() {
        const LIMIT: usize = 4096;
        let d = tmpdir("huge-entry");
        let (mut s, _) = Storage::open_with_record_limit(&d, 1, LIMIT).unwrap();
        let err = s
            .write(&persist(vec![entry(1, 1), big_entry(2, 1, LIMIT)], None))
            .expect_err("an entry over the record limit must not be written")
            .to_string();
        assert!(err.contains("log entry 2"), "{err}");
        assert!(err.contains(&s.wal_path().display().to_string()), "{err}");
        let _ = fs::remove_dir_all(&d);
    }

    /// A record with a valid checksum that does not decode was written whole: wherever it is,
    /// recovery refuses to start and names the file and offset; it never truncates it away as
    /// a torn tail.
    #[test]
    fn a_checksum_valid_record_that_does_not_decode_is_an_error_at_the_end_or_in_the_middle() {
        let d = tmpdir("undecodable");
        let (mut s, _) = Storage::open(&d, 1).unwrap();
        s.write(&persist(vec![entry(1, 1), entry(2, 1)], None))
            .unwrap();
        s.sync().unwrap();
        let path = s.wal_path().to_path_buf();
        drop(s);
        let good = fs::read(&path).unwrap();
        let mut bad = BytesMut::new();
        encode_record(&mut bad, &[9, 1, 2, 3]); // record type 9 does not exist
        let mut valid = BytesMut::new();
        encode_record(
            &mut valid,
            &hard_state_payload(&HardState {
                term: 1,
                vote: None,
            }),
        );
        for (place, tail) in [
            ("at the end", Vec::new()),
            ("in the middle", valid.to_vec()),
        ] {
            let data = [good.clone(), bad.to_vec(), tail].concat();
            fs::write(&path, &data).unwrap();
            let err = Storage::open(&d, 1)
                .err()
                .unwrap_or_else(|| panic!("{place}: must refuse to start"))
                .to_string();
            assert!(err.contains(&path.display().to_string()), "{place}: {err}");
            assert!(
                err.contains(&format!("offset {}", good.len())),
                "{place}: {err}"
            );
            assert!(err.contains("does not decode"), "{place}: {err}");
            assert!(err.contains("unknown record type 9"), "{place}: {err}");
            assert_eq!(fs::read(&path).unwrap(), data, "{place}: nothing truncated");
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_data_directory_of_another_node_or_a_corrupt_snapshot_is_refused() {
        let d = tmpdir("other");
        let (mut s, _) = Storage::open(&d, 1).unwrap();
        s.write(&persist(vec![entry(1, 1)], None)).unwrap();
        s.sync().unwrap();
        drop(s);
        let err = Storage::open(&d, 2).err().unwrap().to_string();
        assert!(err.contains("belongs to node 1"), "{err}");
        fs::write(
            d.join("snapshot"),
            b"FLSNAP01garbage-garbage-garbage-garbage",
        )
        .unwrap();
        let err = Storage::open(&d, 1).err().unwrap().to_string();
        assert!(err.contains("snapshot"), "{err}");
        let _ = fs::remove_dir_all(&d);
    }
}
