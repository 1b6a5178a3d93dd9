//! TCP links between peers.
//!
//! Each node dials one outbound connection to every peer (at the address *this* node's
//! `--peers` gives for it, which may be a proxy) and only writes to it; it accepts inbound
//! connections and only reads from them. Every connection starts with a handshake frame that
//! says which cluster and which node the dialer is, which node it wants, and the dialer's client
//! address (so followers can redirect clients to the leader). Identity comes from the
//! handshake, never from the socket address, because a userspace proxy may sit in between.
//!
//! A frame is `[len: u32 LE][crc32: u32 LE][payload: len bytes]`; payload byte 0 is the frame
//! type (1 = hello, 2 = Raft message, encoded by [`crate::codec`]). A frame that is too long,
//! fails its checksum, does not decode, or claims to come from another node than the handshake
//! said is logged and the connection dropped; Raft tolerates the lost messages.
//!
//! Sizes: the first frame on a connection, the handshake, may be at most
//! [`MAX_HANDSHAKE_FRAME`] bytes (a handshake is a few dozen bytes; `--cluster-id` is limited to
//! [`MAX_CLUSTER_ID`] bytes so every real one fits), so a client that has not identified
//! itself costs the node at most that much memory, not a 64 MiB buffer (the 256 KiB read buffer,
//! too, is only set up after the handshake). After a valid handshake a frame may be up to
//! [`MAX_FRAME`] (64 MiB), because snapshots travel whole in one frame.
//! Two known limitations follow from that: a peer that completed the handshake (it knows the
//! cluster id, which is not a secret) can still make the node allocate up to 64 MiB per
//! connection, so the peer port must only be reachable by the cluster's members; and a
//! state-machine snapshot larger than 64 MiB cannot be sent at all, so a follower that needs one
//! can never catch up (the cluster stays available as long as a quorum is not in that state).
//!
//! Outbound links reconnect with exponential backoff (50 ms doubling to 1 s). Messages queued
//! while a link is down are dropped on reconnect (stale Raft messages are useless), and a full
//! queue drops new messages rather than block the Raft loop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::codec::{self, DecodeError, Reader, Writer};
use crate::core::{Message, NodeId};

/// Largest frame accepted after the handshake (snapshots travel whole).
pub const MAX_FRAME: usize = 64 << 20;
/// Largest first frame (the handshake) accepted on an inbound connection.
pub const MAX_HANDSHAKE_FRAME: usize = 1024;
/// Longest `--cluster-id`, in bytes: with it, a handshake stays far below
/// [`MAX_HANDSHAKE_FRAME`] (the rest is four integers and a socket address).
pub const MAX_CLUSTER_ID: usize = 256;
const FRAME_HELLO: u8 = 1;
const FRAME_MESSAGE: u8 = 2;
const PROTOCOL_VERSION: u32 = 1;
const QUEUE: usize = 8192;

/// The handshake a dialing node sends first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub cluster: String,
    pub from: NodeId,
    pub to: NodeId,
    pub client_addr: String,
}

/// Encodes one frame of `kind` with `payload` into `out`.
pub fn put_frame(out: &mut BytesMut, kind: u8, payload: &[u8]) {
    out.put_u32_le(payload.len() as u32 + 1);
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(payload);
    out.put_u32_le(h.finalize());
    out.put_u8(kind);
    out.put_slice(payload);
}

pub fn hello_frame(h: &Hello) -> BytesMut {
    let mut p = BytesMut::new();
    let mut w = Writer(&mut p);
    w.u32(PROTOCOL_VERSION);
    w.str(&h.cluster);
    w.u64(h.from);
    w.u64(h.to);
    w.str(&h.client_addr);
    let mut out = BytesMut::new();
    put_frame(&mut out, FRAME_HELLO, &p);
    out
}

fn decode_hello(payload: Bytes) -> Result<Hello, DecodeError> {
    let mut r = Reader::new(payload);
    let version = r.u32("protocol version")?;
    if version != PROTOCOL_VERSION {
        return Err(r.err(format!(
            "peer speaks protocol version {version}, this node {PROTOCOL_VERSION}"
        )));
    }
    let cluster = r.string("cluster id")?;
    let from = r.u64("from")?;
    let to = r.u64("to")?;
    let client_addr = r.string("client address")?;
    r.finish("hello")?;
    Ok(Hello {
        cluster,
        from,
        to,
        client_addr,
    })
}

/// Reads one frame of at most `max` bytes (checked before anything is allocated); returns its
/// type and payload. `what` names the frame in errors.
async fn read_frame<R: AsyncReadExt + Unpin>(
    r: &mut R,
    max: usize,
    what: &str,
) -> Result<(u8, Bytes), String> {
    let mut header = [0u8; 8];
    r.read_exact(&mut header)
        .await
        .map_err(|e| format!("reading frame header: {e}"))?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > max {
        return Err(format!("{what} length {len} outside 1..={max}"));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)
        .await
        .map_err(|e| format!("reading a {len}-byte frame: {e}"))?;
    if crc32fast::hash(&buf) != crc {
        return Err("frame checksum mismatch".into());
    }
    let buf = Bytes::from(buf);
    Ok((buf[0], buf.slice(1..)))
}

/// Where inbound traffic goes.
pub enum Inbound {
    Message(Message),
    /// A peer told us its client address in its handshake.
    PeerClientAddr(NodeId, String),
}

/// Sends messages to peers.
#[derive(Clone)]
pub struct Transport {
    links: Arc<HashMap<NodeId, mpsc::Sender<Message>>>,
}

impl Transport {
    /// Queues `m` for its recipient; drops it if the link's queue is full (Raft retransmits).
    pub fn send(&self, m: Message) {
        if let Some(tx) = self.links.get(&m.to) {
            let _ = tx.try_send(m);
        }
    }
}

/// Static identity of this node on the peer network.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cluster: String,
    pub id: NodeId,
    pub client_addr: String,
}

/// Starts one outbound link per peer; returns the sending side.
pub fn start_outbound(me: &Identity, peers: &HashMap<NodeId, String>) -> Transport {
    let mut links = HashMap::new();
    for (&peer, addr) in peers {
        let (tx, rx) = mpsc::channel(QUEUE);
        links.insert(peer, tx);
        let hello = Hello {
            cluster: me.cluster.clone(),
            from: me.id,
            to: peer,
            client_addr: me.client_addr.clone(),
        };
        tokio::spawn(outbound(hello, addr.clone(), rx));
    }
    Transport {
        links: Arc::new(links),
    }
}

async fn outbound(hello: Hello, addr: String, mut rx: mpsc::Receiver<Message>) {
    let mut backoff = Duration::from_millis(50);
    let mut failures = 0u64;
    loop {
        let stream = match TcpStream::connect(&addr).await {
            Ok(s) => s,
            Err(e) => {
                failures += 1;
                // Log the first failure and then every 20th, not every retry.
                if failures == 1 || failures % 20 == 0 {
                    tracing::warn!(peer = hello.to, addr = %addr.escape_debug(), error = %e, failures, "cannot connect to peer; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if failures > 0 {
            tracing::info!(peer = hello.to, addr = %addr.escape_debug(), "connected to peer");
        }
        failures = 0;
        backoff = Duration::from_millis(50);
        // Whatever queued up while the link was down is stale.
        while rx.try_recv().is_ok() {}
        let mut stream = stream;
        if let Err(e) = stream.write_all(&hello_frame(&hello)).await {
            tracing::warn!(peer = hello.to, error = %e, "handshake failed");
            continue;
        }
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut body = BytesMut::new();
        loop {
            let Some(m) = rx.recv().await else { return };
            buf.clear();
            body.clear();
            codec::encode_message(&m, &mut body);
            put_frame(&mut buf, FRAME_MESSAGE, &body);
            // Batch whatever else is queued into the same write.
            while buf.len() < (1 << 20) {
                let Ok(m) = rx.try_recv() else { break };
                body.clear();
                codec::encode_message(&m, &mut body);
                put_frame(&mut buf, FRAME_MESSAGE, &body);
            }
            if let Err(e) = stream.write_all(&buf).await {
                tracing::warn!(peer = hello.to, error = %e, "peer link broke; reconnecting");
                break;
            }
        }
    }
}

/// Accepts inbound peer connections on `listener` forever.
pub async fn serve_inbound(
    listener: TcpListener,
    me: Identity,
    members: Vec<NodeId>,
    tx: mpsc::UnboundedSender<Inbound>,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a peer connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let me = me.clone();
        let members = members.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = inbound(stream, &me, &members, &tx).await {
                tracing::error!(remote = %remote, error = %e.escape_debug(), "dropping peer connection");
            }
        });
    }
}

async fn inbound(
    mut stream: TcpStream,
    me: &Identity,
    members: &[NodeId],
    tx: &mpsc::UnboundedSender<Inbound>,
) -> Result<(), String> {
    // The handshake is tiny: a client that has not said who it is gets no big buffer, neither
    // for the frame nor for reading (it is read unbuffered: exactly its own bytes).
    let handshake = read_frame(&mut stream, MAX_HANDSHAKE_FRAME, "handshake frame");
    let (kind, payload) = tokio::time::timeout(Duration::from_secs(10), handshake)
        .await
        .map_err(|_| "no handshake within 10 s".to_string())??;
    if kind != FRAME_HELLO {
        return Err(format!(
            "expected a handshake frame (type {FRAME_HELLO}), got type {kind}"
        ));
    }
    let hello = decode_hello(payload).map_err(|e| format!("malformed handshake: {e}"))?;
    if hello.cluster != me.cluster {
        return Err(format!(
            "peer belongs to cluster {:?}, this node to {:?}",
            hello.cluster, me.cluster
        ));
    }
    if hello.to != me.id {
        return Err(format!(
            "peer wants node {}, this is node {}",
            hello.to, me.id
        ));
    }
    if hello.from == me.id || !members.contains(&hello.from) {
        return Err(format!(
            "peer claims to be node {}, which is not another member of this cluster",
            hello.from
        ));
    }
    let from = hello.from;
    let _ = tx.send(Inbound::PeerClientAddr(from, hello.client_addr));
    let mut r = BufReader::with_capacity(256 * 1024, stream);
    loop {
        let (kind, payload) = match read_frame(&mut r, MAX_FRAME, "frame").await {
            Ok(x) => x,
            Err(e) if e.contains("early eof") || e.contains("reading frame header") => {
                tracing::debug!(peer = from, reason = %e, "peer connection closed");
                return Ok(());
            }
            Err(e) => return Err(format!("from node {from}: {e}")),
        };
        if kind != FRAME_MESSAGE {
            return Err(format!("from node {from}: unexpected frame type {kind}"));
        }
        let m = codec::decode_message(payload)
            .map_err(|e| format!("from node {from}: malformed message: {e}"))?;
        if m.from != from || m.to != me.id {
            return Err(format!(
                "from node {from}: message claims to be from {} to {}",
                m.from, m.to
            ));
        }
        if tx.send(Inbound::Message(m)).is_err() {
            return Ok(());
        }
    }
}

/// The local address a listener is bound to (for logs).
pub fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a: SocketAddr| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], max: usize) -> Result<(u8, Bytes), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut r = bytes;
        rt.block_on(read_frame(&mut r, max, "handshake frame"))
    }

    /// The largest handshake this node can send (longest cluster id, longest IPv6 socket
    /// address) fits in what a peer accepts as a first frame.
    #[test]
    fn every_handshake_a_node_can_send_fits_the_handshake_limit() {
        let h = Hello {
            cluster: "c".repeat(MAX_CLUSTER_ID),
            from: u64::MAX,
            to: u64::MAX,
            client_addr: "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535".into(),
        };
        let frame = hello_frame(&h);
        assert!(frame.len() - 8 <= MAX_HANDSHAKE_FRAME, "{}", frame.len());
        let (kind, payload) = read(&frame, MAX_HANDSHAKE_FRAME).unwrap();
        assert_eq!(kind, FRAME_HELLO);
        assert_eq!(decode_hello(payload).unwrap(), h);
    }

    /// A first frame claiming 32 MiB (under the 64 MiB general limit) is refused from its
    /// header alone, before the node allocates or waits for the body.
    #[test]
    fn an_oversized_first_frame_is_refused_from_its_header() {
        let header = [(32u32 << 20).to_le_bytes(), 0u32.to_le_bytes()].concat();
        let err = read(&header, MAX_HANDSHAKE_FRAME).unwrap_err();
        assert!(
            err.contains("handshake frame length 33554432 outside 1..=1024"),
            "{err}"
        );
    }
}
