//! The replicated state machine: a map from key to JSON value, with put and compare-and-set.
//!
//! Values are stored as *canonical* JSON text (what `serde_json` prints for a parsed value:
//! object keys sorted, no insignificant whitespace), so compare-and-set compares values, not
//! spellings. An unset key and a key set to `null` are the same thing: `null` is what a read of
//! an unset key returns, and putting `null` unsets the key.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use crate::codec::{DecodeError, Reader, Writer};

/// The canonical JSON text of `null`.
pub const NULL: &str = "null";

/// A command carried in a log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Put {
        key: String,
        value: String,
    },
    Cas {
        key: String,
        from: String,
        to: String,
    },
}

impl Command {
    pub fn key(&self) -> &str {
        match self {
            Command::Put { key, .. } | Command::Cas { key, .. } => key,
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        let mut w = Writer(&mut buf);
        match self {
            Command::Put { key, value } => {
                w.u8(1);
                w.str(key);
                w.str(value);
            }
            Command::Cas { key, from, to } => {
                w.u8(2);
                w.str(key);
                w.str(from);
                w.str(to);
            }
        }
        buf.freeze()
    }

    /// The next release's encoding of a put (type 3: key, value, and a `u32` of flags the
    /// next release reserves, 0 here). Only a `next-release` build decodes it; this build and
    /// the ones before reject it as an unknown command type. A correct next release keeps
    /// writing [`Command::encode`]'s format until every member runs it (this sketch never
    /// gets there, so only the `eager-new-format` bug writes it).
    pub fn encode_next(&self) -> Bytes {
        let Command::Put { key, value } = self else {
            return self.encode();
        };
        let mut buf = BytesMut::new();
        let mut w = Writer(&mut buf);
        w.u8(3);
        w.str(key);
        w.str(value);
        w.u32(0);
        buf.freeze()
    }

    pub fn decode(data: &Bytes) -> Result<Command, DecodeError> {
        let mut r = Reader::new(data.clone());
        let cmd = match r.u8("command type")? {
            1 => Command::Put {
                key: r.string("key")?,
                value: r.string("value")?,
            },
            #[cfg(feature = "next-release")]
            3 => {
                let cmd = Command::Put {
                    key: r.string("key")?,
                    value: r.string("value")?,
                };
                r.u32("put flags")?;
                cmd
            }
            2 => Command::Cas {
                key: r.string("key")?,
                from: r.string("from")?,
                to: r.string("to")?,
            },
            t => return Err(r.err(format!("unknown command type {t}"))),
        };
        r.finish("command")?;
        Ok(cmd)
    }
}

/// What applying a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Written,
    CasOk,
    /// The compare-and-set did not match; nothing changed. `current` is the value it saw.
    CasMismatch {
        current: String,
    },
}

/// The key-value map plus the index of the last entry applied to it and a running digest of
/// everything applied (two replicas that applied the same entries have the same digest; one that
/// skipped an entry does not — which is how divergence is detected).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    map: BTreeMap<String, String>,
    applied: u64,
    digest: u64,
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

impl KvState {
    pub fn new() -> KvState {
        KvState {
            map: BTreeMap::new(),
            applied: 0,
            digest: 0xCBF2_9CE4_8422_2325,
        }
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn digest(&self) -> u64 {
        self.digest
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The value of `key` as canonical JSON (`"null"` when unset).
    pub fn get(&self, key: &str) -> &str {
        self.map.get(key).map_or(NULL, String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.map.iter()
    }

    fn mix(&mut self, index: u64, term: u64, data: &[u8]) {
        let h = fnv(self.digest, &index.to_le_bytes());
        let h = fnv(h, &term.to_le_bytes());
        self.digest = fnv(h, data);
    }

    /// Applies a command at `index` (terms and data feed the digest).
    pub fn apply(&mut self, index: u64, term: u64, data: &Bytes, cmd: &Command) -> Applied {
        self.applied = index;
        self.mix(index, term, data);
        match cmd {
            Command::Put { key, value } => {
                self.set(key, value);
                Applied::Written
            }
            Command::Cas { key, from, to } => {
                let current = self.get(key);
                if current == from {
                    self.set(key, to);
                    Applied::CasOk
                } else {
                    Applied::CasMismatch {
                        current: current.to_string(),
                    }
                }
            }
        }
    }

    /// Evaluates a command against the current state without changing anything.
    pub fn evaluate(&self, cmd: &Command) -> Applied {
        match cmd {
            Command::Put { .. } => Applied::Written,
            Command::Cas { key, from, .. } => {
                let current = self.get(key);
                if current == from {
                    Applied::CasOk
                } else {
                    Applied::CasMismatch {
                        current: current.to_string(),
                    }
                }
            }
        }
    }

    fn set(&mut self, key: &str, value: &str) {
        if value == NULL {
            self.map.remove(key);
        } else {
            self.map.insert(key.to_string(), value.to_string());
        }
    }

    /// Marks `index` applied without changing the map (no-op entries; and the
    /// `skip-apply-on-restart` bug, which is why the digest is not updated here for commands).
    pub fn skip(&mut self, index: u64) {
        self.applied = index;
    }

    /// A no-op entry: advances the applied index and the digest.
    pub fn apply_noop(&mut self, index: u64, term: u64) {
        self.applied = index;
        self.mix(index, term, b"");
    }

    /// Serializes the whole state (the snapshot's data).
    pub fn snapshot(&self) -> Bytes {
        let mut buf = BytesMut::new();
        let mut w = Writer(&mut buf);
        w.u8(1);
        w.u64(self.applied);
        w.u64(self.digest);
        w.u32(self.map.len() as u32);
        for (k, v) in &self.map {
            w.str(k);
            w.str(v);
        }
        buf.freeze()
    }

    /// Replaces the state by a snapshot's data.
    pub fn restore(data: &Bytes) -> Result<KvState, DecodeError> {
        let mut r = Reader::new(data.clone());
        let version = r.u8("snapshot format version")?;
        if version != 1 {
            return Err(r.err(format!("unknown snapshot format version {version}")));
        }
        let applied = r.u64("applied index")?;
        let digest = r.u64("digest")?;
        let n = r.u32("key count")? as usize;
        if n > r.remaining() / 8 {
            return Err(r.err(format!(
                "key count {n} exceeds what the remaining bytes can hold"
            )));
        }
        let mut map = BTreeMap::new();
        for _ in 0..n {
            let k = r.string("key")?;
            let v = r.string("value")?;
            map.insert(k, v);
        }
        r.finish("snapshot")?;
        Ok(KvState {
            map,
            applied,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_cas_and_null_semantics() {
        let mut kv = KvState::new();
        let put = Command::Put {
            key: "k".into(),
            value: "1".into(),
        };
        assert_eq!(kv.apply(1, 1, &put.encode(), &put), Applied::Written);
        assert_eq!(kv.get("k"), "1");
        let bad = Command::Cas {
            key: "k".into(),
            from: "2".into(),
            to: "3".into(),
        };
        assert_eq!(
            kv.apply(2, 1, &bad.encode(), &bad),
            Applied::CasMismatch {
                current: "1".into()
            }
        );
        let good = Command::Cas {
            key: "k".into(),
            from: "1".into(),
            to: NULL.into(),
        };
        assert_eq!(kv.apply(3, 1, &good.encode(), &good), Applied::CasOk);
        assert_eq!(kv.get("k"), NULL);
        assert!(kv.is_empty());
        let from_null = Command::Cas {
            key: "k".into(),
            from: NULL.into(),
            to: "\"x\"".into(),
        };
        assert_eq!(
            kv.apply(4, 1, &from_null.encode(), &from_null),
            Applied::CasOk
        );
        let restored = KvState::restore(&kv.snapshot()).unwrap();
        assert_eq!(restored, kv);
    }

    #[test]
    fn commands_round_trip_and_garbage_is_an_error() {
        for c in [
            Command::Put {
                key: "a".into(),
                value: "[1,2]".into(),
            },
            Command::Cas {
                key: "b".into(),
                from: "1".into(),
                to: "2".into(),
            },
        ] {
            assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        }
        assert!(Command::decode(&Bytes::from_static(b"\x09garbage")).is_err());
        assert!(KvState::restore(&Bytes::from_static(b"\x01\x00")).is_err());
    }
}
