//! The binary encoding of Raft messages and log entries, used on the wire between peers and in
//! the write-ahead log.
//!
//! Hand-written rather than derived (serde + postcard/bincode) on purpose: these bytes are a
//! compatibility contract (a WAL written today must be read by tomorrow's build, and a frame must
//! mean the same thing to both ends), so the layout is spelled out here field by field instead of
//! following whatever a derive macro and a format crate's version produce; and every length read
//! from untrusted input is checked against the bytes actually present before anything is
//! allocated, so a hostile or corrupt frame costs an error, never a huge allocation or a panic.
//! Payloads are `Bytes` slices of the received buffer (no copies).
//!
//! Layout: integers are little-endian fixed width; a byte string is a `u32` length then the
//! bytes; an optional node id is a `u64` with 0 meaning none.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::core::{Entry, EntryKind, HardState, Message, MessageBody, Snapshot};

/// Why bytes could not be decoded; `offset` is where in the buffer the problem starts.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{what} at byte {offset}")]
pub struct DecodeError {
    pub what: String,
    pub offset: usize,
}

/// Appends encoded values to a buffer.
pub struct Writer<'a>(pub &'a mut BytesMut);

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.put_u8(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.put_u32_le(v);
    }
    pub fn u64(&mut self, v: u64) {
        self.0.put_u64_le(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.0.put_u8(u8::from(v));
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.0.put_u32_le(v.len() as u32);
        self.0.put_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

/// Reads encoded values from a buffer, checking every length.
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn err(&self, what: impl Into<String>) -> DecodeError {
        DecodeError {
            what: what.into(),
            offset: self.pos,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(self.err(format!(
                "truncated {what}: need {n} bytes, {} left",
                self.remaining()
            )));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn bool(&mut self, what: &str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError {
                what: format!("{what}: invalid boolean {v}"),
                offset: self.pos - 1,
            }),
        }
    }
    pub fn bytes(&mut self, what: &str) -> Result<Bytes, DecodeError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    pub fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let start = self.pos;
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError {
            what: format!("{what} is not UTF-8"),
            offset: start,
        })
    }
    /// Fails unless every byte was consumed (trailing garbage means a framing error).
    pub fn finish(&self, what: &str) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(self.err(format!(
                "{} unexpected trailing bytes after {what}",
                self.remaining()
            )));
        }
        Ok(())
    }
}

const ENTRY_MIN_LEN: usize = 8 + 8 + 1 + 4;

/// How many bytes [`put_entry`] writes for `e`.
pub fn entry_len(e: &Entry) -> usize {
    ENTRY_MIN_LEN + e.data.len()
}

pub fn put_entry(w: &mut Writer<'_>, e: &Entry) {
    w.u64(e.term);
    w.u64(e.index);
    w.u8(match e.kind {
        EntryKind::Noop => 0,
        EntryKind::Command => 1,
    });
    w.bytes(&e.data);
}

pub fn get_entry(r: &mut Reader) -> Result<Entry, DecodeError> {
    let term = r.u64("entry term")?;
    let index = r.u64("entry index")?;
    let kind = match r.u8("entry kind")? {
        0 => EntryKind::Noop,
        1 => EntryKind::Command,
        k => return Err(r.err(format!("unknown entry kind {k}"))),
    };
    let data = r.bytes("entry data")?;
    Ok(Entry {
        term,
        index,
        kind,
        data,
    })
}

pub fn put_entries(w: &mut Writer<'_>, entries: &[Entry]) {
    w.u32(entries.len() as u32);
    for e in entries {
        put_entry(w, e);
    }
}

pub fn get_entries(r: &mut Reader) -> Result<Vec<Entry>, DecodeError> {
    let n = r.u32("entry count")? as usize;
    if n > r.remaining() / ENTRY_MIN_LEN {
        return Err(r.err(format!(
            "entry count {n} exceeds what the remaining bytes can hold"
        )));
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(get_entry(r)?);
    }
    Ok(v)
}

pub fn put_hard_state(w: &mut Writer<'_>, hs: &HardState) {
    w.u64(hs.term);
    w.u64(hs.vote.unwrap_or(0));
}

pub fn get_hard_state(r: &mut Reader) -> Result<HardState, DecodeError> {
    let term = r.u64("term")?;
    let vote = r.u64("vote")?;
    Ok(HardState {
        term,
        vote: (vote != 0).then_some(vote),
    })
}

pub fn put_snapshot(w: &mut Writer<'_>, s: &Snapshot) {
    w.u64(s.index);
    w.u64(s.term);
    w.bytes(&s.data);
}

pub fn get_snapshot(r: &mut Reader) -> Result<Snapshot, DecodeError> {
    let index = r.u64("snapshot index")?;
    let term = r.u64("snapshot term")?;
    let data = r.bytes("snapshot data")?;
    Ok(Snapshot { index, term, data })
}

/// Encodes a message (without framing).
pub fn encode_message(m: &Message, out: &mut BytesMut) {
    let mut w = Writer(out);
    w.u64(m.from);
    w.u64(m.to);
    w.u64(m.term);
    match &m.body {
        MessageBody::PreVote {
            last_index,
            last_term,
        } => {
            w.u8(1);
            w.u64(*last_index);
            w.u64(*last_term);
        }
        MessageBody::PreVoteResp { reject } => {
            w.u8(2);
            w.bool(*reject);
        }
        MessageBody::Vote {
            last_index,
            last_term,
        } => {
            w.u8(3);
            w.u64(*last_index);
            w.u64(*last_term);
        }
        MessageBody::VoteResp { reject } => {
            w.u8(4);
            w.bool(*reject);
        }
        MessageBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
            read_seq,
        } => {
            w.u8(5);
            w.u64(*prev_index);
            w.u64(*prev_term);
            w.u64(*commit);
            w.u64(*read_seq);
            put_entries(&mut w, entries);
        }
        MessageBody::AppendResp {
            reject,
            index,
            hint_index,
            hint_term,
            read_seq,
        } => {
            w.u8(6);
            w.bool(*reject);
            w.u64(*index);
            w.u64(*hint_index);
            w.u64(*hint_term);
            w.u64(*read_seq);
        }
        MessageBody::Heartbeat { commit, read_seq } => {
            w.u8(7);
            w.u64(*commit);
            w.u64(*read_seq);
        }
        MessageBody::HeartbeatResp { read_seq } => {
            w.u8(8);
            w.u64(*read_seq);
        }
        MessageBody::Snapshot { snapshot, read_seq } => {
            w.u8(9);
            w.u64(*read_seq);
            put_snapshot(&mut w, snapshot);
        }
    }
}

/// Decodes one message that fills `buf` exactly.
pub fn decode_message(buf: Bytes) -> Result<Message, DecodeError> {
    let mut r = Reader::new(buf);
    let from = r.u64("from")?;
    let to = r.u64("to")?;
    let term = r.u64("term")?;
    let body = match r.u8("message type")? {
        1 => MessageBody::PreVote {
            last_index: r.u64("last_index")?,
            last_term: r.u64("last_term")?,
        },
        2 => MessageBody::PreVoteResp {
            reject: r.bool("reject")?,
        },
        3 => MessageBody::Vote {
            last_index: r.u64("last_index")?,
            last_term: r.u64("last_term")?,
        },
        4 => MessageBody::VoteResp {
            reject: r.bool("reject")?,
        },
        5 => {
            let prev_index = r.u64("prev_index")?;
            let prev_term = r.u64("prev_term")?;
            let commit = r.u64("commit")?;
            let read_seq = r.u64("read_seq")?;
            let entries = get_entries(&mut r)?;
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                read_seq,
            }
        }
        6 => MessageBody::AppendResp {
            reject: r.bool("reject")?,
            index: r.u64("index")?,
            hint_index: r.u64("hint_index")?,
            hint_term: r.u64("hint_term")?,
            read_seq: r.u64("read_seq")?,
        },
        7 => MessageBody::Heartbeat {
            commit: r.u64("commit")?,
            read_seq: r.u64("read_seq")?,
        },
        8 => MessageBody::HeartbeatResp {
            read_seq: r.u64("read_seq")?,
        },
        9 => {
            let read_seq = r.u64("read_seq")?;
            let snapshot = get_snapshot(&mut r)?;
            MessageBody::Snapshot { snapshot, read_seq }
        }
        t => {
            return Err(DecodeError {
                what: format!("unknown message type {t}"),
                offset: 24,
            })
        }
    };
    r.finish("message")?;
    Ok(Message {
        from,
        to,
        term,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        let e = |i: u64| Entry {
            term: 2,
            index: i,
            kind: EntryKind::Command,
            data: Bytes::from(vec![i as u8; 3]),
        };
        let bodies = vec![
            MessageBody::PreVote {
                last_index: 5,
                last_term: 2,
            },
            MessageBody::PreVoteResp { reject: true },
            MessageBody::Vote {
                last_index: 5,
                last_term: 2,
            },
            MessageBody::VoteResp { reject: false },
            MessageBody::Append {
                prev_index: 4,
                prev_term: 1,
                entries: vec![e(5), e(6)],
                commit: 3,
                read_seq: 9,
            },
            MessageBody::AppendResp {
                reject: true,
                index: 4,
                hint_index: 2,
                hint_term: 1,
                read_seq: 9,
            },
            MessageBody::Heartbeat {
                commit: 3,
                read_seq: 10,
            },
            MessageBody::HeartbeatResp { read_seq: 10 },
            MessageBody::Snapshot {
                snapshot: Snapshot {
                    index: 7,
                    term: 2,
                    data: Bytes::from_static(b"state"),
                },
                read_seq: 11,
            },
        ];
        bodies
            .into_iter()
            .map(|body| Message {
                from: 1,
                to: 2,
                term: 3,
                body,
            })
            .collect()
    }

    #[test]
    fn every_message_kind_round_trips() {
        for m in samples() {
            let mut buf = BytesMut::new();
            encode_message(&m, &mut buf);
            assert_eq!(decode_message(buf.freeze()).unwrap(), m);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_an_error_not_a_panic() {
        for m in samples() {
            let mut buf = BytesMut::new();
            encode_message(&m, &mut buf);
            let full = buf.freeze();
            for cut in 0..full.len() {
                assert!(
                    decode_message(full.slice(..cut)).is_err(),
                    "{} cut at {cut}",
                    m.body.kind()
                );
            }
            let mut longer = BytesMut::from(&full[..]);
            longer.put_u8(0);
            assert!(decode_message(longer.freeze()).is_err());
        }
    }

    #[test]
    fn a_huge_entry_count_is_refused_before_allocating() {
        let mut buf = BytesMut::new();
        let mut w = Writer(&mut buf);
        for v in [1u64, 2, 3] {
            w.u64(v);
        }
        w.u8(5);
        for _ in 0..4 {
            w.u64(0);
        }
        w.u32(u32::MAX);
        let err = decode_message(buf.freeze()).unwrap_err();
        assert!(err.what.contains("entry count"), "{err}");
    }
}
