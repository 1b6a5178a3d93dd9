//! The userspace network: the controller relays every peer link of the bundled Raft, so it can
//! partition, delay and drop messages without root and without kernel features (`tc netem` is
//! missing on some kernels).
//!
//! Node `i` is told to reach node `j` at a proxy listener of its own (`listen_addr(i, j)`);
//! every byte from `i` to `j` flows through it. A link `i→j` is *cut* when `j` cannot hear
//! `i` (the grudge): its connections are closed and new ones are closed on accept, which is
//! what a node sees when packets vanish and its TCP connection times out — only faster.
//!
//! The bundled Raft speaks length-prefixed frames (`[len u32][crc u32][len bytes]`, the first
//! being a handshake); the proxy forwards whole frames, so it can delay each one (keeping
//! their order) and drop some (never the handshake) without corrupting the stream.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::net::Grudge;

/// Largest frame the proxy relays (the bundled Raft's own limit is 64 MiB).
const MAX_FRAME: usize = 128 << 20;

/// Network conditions, shared by every link.
#[derive(Clone, Debug, Default, PartialEq)]
struct Conditions {
    /// (from, to) links that are cut.
    cut: HashSet<(usize, usize)>,
    latency: Duration,
    jitter: Duration,
    loss: f64,
}

/// The proxies of one run.
pub struct Proxy {
    nodes: Vec<String>,
    /// listen[i][j]: where node i reaches node j.
    listen: Vec<Vec<Option<SocketAddr>>>,
    conditions: watch::Sender<Conditions>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Binds a listener on 127.0.0.1 for every ordered pair of nodes, relaying to
    /// `peer_addrs[j]`.
    pub async fn start(
        nodes: &[String],
        peer_addrs: &[SocketAddr],
        seed: u64,
    ) -> Result<Proxy, String> {
        let (tx, rx) = watch::channel(Conditions::default());
        let n = nodes.len();
        let mut listen = vec![vec![None; n]; n];
        let mut tasks = Vec::new();
        for (i, row) in listen.iter_mut().enumerate() {
            for j in (0..n).filter(|&j| j != i) {
                let listener = TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .map_err(|e| format!("cannot start a proxy listener: {e}"))?;
                row[j] = Some(
                    listener
                        .local_addr()
                        .map_err(|e| format!("cannot read a proxy address: {e}"))?,
                );
                let rng = ChaCha8Rng::seed_from_u64(seed ^ ((i as u64) << 32 | j as u64));
                tasks.push(tokio::spawn(serve_link(
                    i,
                    j,
                    listener,
                    peer_addrs[j],
                    rx.clone(),
                    Arc::new(Mutex::new(rng)),
                )));
            }
        }
        Ok(Proxy {
            nodes: nodes.to_vec(),
            listen,
            conditions: tx,
            tasks,
        })
    }

    /// Where node `from` must dial to reach node `to`.
    pub fn listen_addr(&self, from: usize, to: usize) -> Option<SocketAddr> {
        self.listen.get(from)?.get(to).copied().flatten()
    }

    /// Applies a grudge: link i→j is cut iff j cannot hear i. Replaces any partition in force.
    pub fn partition(&self, grudge: &Grudge) {
        let index = |name: &str| self.nodes.iter().position(|n| n == name);
        let mut cut = HashSet::new();
        for (listener, deaf_to) in grudge {
            let Some(j) = index(listener) else { continue };
            for talker in deaf_to {
                if let Some(i) = index(talker) {
                    cut.insert((i, j));
                }
            }
        }
        self.conditions.send_modify(|c| c.cut = cut);
    }

    /// Delays every frame by `latency` ± `jitter` and drops a fraction `loss` of them.
    pub fn degrade(&self, latency: Duration, jitter: Duration, loss: f64) {
        self.conditions.send_modify(|c| {
            c.latency = latency;
            c.jitter = jitter;
            c.loss = loss.clamp(0.0, 1.0);
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn serve_link(
    from: usize,
    to: usize,
    listener: TcpListener,
    target: SocketAddr,
    conditions: watch::Receiver<Conditions>,
    rng: Arc<Mutex<ChaCha8Rng>>,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // Out of file descriptors, most likely: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if conditions.borrow().cut.contains(&(from, to)) {
            drop(inbound); // cut: the dialer sees its connection die
            continue;
        }
        let conditions = conditions.clone();
        let rng = rng.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            relay(from, to, inbound, outbound, conditions, rng).await;
        });
    }
}

/// A frame waiting for its release time: (release, header, payload).
type Delayed = (tokio::time::Instant, [u8; 8], Vec<u8>);

/// Frames a link may hold back at once before its reader waits: bounds how far reading runs
/// ahead of delivery (Raft's heartbeats and appends are small; a snapshot is one frame).
const DELAY_QUEUE_FRAMES: usize = 1024;

/// Relays one connection until either side closes or the link is cut.
async fn relay(
    from: usize,
    to: usize,
    inbound: TcpStream,
    outbound: TcpStream,
    conditions: watch::Receiver<Conditions>,
    rng: Arc<Mutex<ChaCha8Rng>>,
) {
    let mut cut_watch = conditions.clone();
    let (mut in_read, mut in_write) = inbound.into_split();
    let (mut out_read, mut out_write) = outbound.into_split();
    // Reading and delaying are separate, so a delay holds back only the frames behind it in
    // time, not the reading of the next one: a link under `latency` still carries as many
    // frames per second as without it (sleeping between reads would cap a link at one frame
    // per delay, which behaves like a partition, not like a slow network).
    let (queue, mut delayed) = tokio::sync::mpsc::channel::<Delayed>(DELAY_QUEUE_FRAMES);
    let read_side = async move {
        let mut first = true;
        let mut release = tokio::time::Instant::now();
        loop {
            let mut header = [0u8; 8];
            if in_read.read_exact(&mut header).await.is_err() {
                return;
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            if len > MAX_FRAME {
                return;
            }
            let mut payload = vec![0u8; len];
            if in_read.read_exact(&mut payload).await.is_err() {
                return;
            }
            let c = conditions.borrow().clone();
            let (drop_it, delay) = {
                let mut rng = match rng.lock() {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                let drop_it = !first && c.loss > 0.0 && rng.random_bool(c.loss);
                let jitter = if c.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    c.jitter.mul_f64(rng.random_range(0.0..2.0))
                };
                (drop_it, (c.latency + jitter).saturating_sub(c.jitter))
            };
            first = false;
            if drop_it {
                continue;
            }
            // Frames keep their order: each leaves no earlier than the one before it.
            release = release.max(tokio::time::Instant::now() + delay);
            if queue.send((release, header, payload)).await.is_err() {
                return;
            }
        }
    };
    let write_side = async {
        while let Some((release, header, payload)) = delayed.recv().await {
            tokio::time::sleep_until(release).await;
            if out_write.write_all(&header).await.is_err()
                || out_write.write_all(&payload).await.is_err()
            {
                return;
            }
        }
    };
    // The reader ending (EOF) lets the writer deliver what is queued; the writer ending (the
    // far side closed) makes the reader's next send fail.
    let forward = async {
        tokio::join!(read_side, write_side);
    };
    // The bundled Raft sends nothing back on a dialed link; relay whatever comes anyway.
    let backward = async {
        let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
    };
    let cut = async {
        let _ = cut_watch.wait_for(|c| c.cut.contains(&(from, to))).await;
    };
    tokio::select! {
        _ = forward => {}
        _ = backward => {}
        _ = cut => {}
    }
}
