//! The controller's side: one SSH connection (an OpenSSH ControlMaster) per host, and over it
//! one long-lived agent channel per host that every operation of the run goes through.
//!
//! The connections live on a runtime of their own, on a thread of their own: the cluster's
//! operations are synchronous (a node is started or signalled from wherever a fault or a heal
//! happens), and a synchronous call here must never block the runtime the SSH I/O needs.
//!
//! A host that stops answering is marked down (with the time), operations on it fail with a
//! sentence saying so (the fault's record keeps it), and a reconnect is tried every second;
//! once back, the partition in force is applied again and resumes that could not be sent are
//! sent, so nothing stays paused or cut off because the host was away.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use faultline_targets::process::{Launch, NodeProcess};
use nix::sys::signal::Signal;
use openssh::{ControlPersist, KnownHosts as SshKnownHosts, Session, SessionBuilder, Stdio};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::hosts::{Host, HostsConfig, KnownHosts};
use crate::protocol::{nft_partition_script, nft_table, Hello, ListedFile, Message, Request};

/// What the run will ask of the hosts (checked on each before anything starts).
#[derive(Clone, Debug, Default)]
pub struct Needs {
    /// Partitions: nft and root on every host.
    pub nftables: bool,
    /// Clock faults: libfaketime on every host.
    pub faketime: bool,
    /// A node binary to upload (etcd's, a custom target's) when the hosts have none named;
    /// `None`: the bundled Raft, which is faultline itself.
    pub node_binary: Option<PathBuf>,
}

/// One host as the run found it, for results.json and the report.
#[derive(Clone, Debug, Serialize)]
pub struct HostReport {
    pub name: String,
    pub node: String,
    pub kernel: String,
    /// The host's wall clock minus the controller's (half the round trip accounted for), and
    /// the round trip of the best of the samples (the offset is known to ± half of it).
    pub clock_offset_ms: f64,
    pub clock_rtt_ms: f64,
    /// Set when the offset is above the warning bound.
    pub warning: Option<String>,
    /// When (ms since the test's start) the host stopped answering, and when it came back
    /// (`None`: not before the end).
    pub unreachable: Vec<(f64, Option<f64>)>,
}

/// The connected hosts of one run.
pub struct Fleet {
    runtime: tokio::runtime::Handle,
    /// Ends the connections' runtime when dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
    links: Vec<Arc<Link>>,
    exits: Arc<Exits>,
    config: HostsConfig,
    /// The program nodes start as, on the hosts.
    pub node_program: String,
    /// libfaketime on each host (when clock faults are on).
    pub faketime: Vec<Option<String>>,
    /// Each host's addresses (its own interfaces), for partitions.
    pub addresses: Vec<Vec<String>>,
    pub reports: Mutex<Vec<HostReport>>,
    /// The run's folder on the hosts.
    pub run_dir: String,
    /// What the hosts' own node binary says it is (`hosts.binary`), per host.
    pub node_versions: Vec<Option<String>>,
}

/// Where a remote process's exit status lands.
type ExitSlot = Arc<Mutex<Option<ExitStatus>>>;
/// Requests sent to an agent and not answered yet, oldest first.
type Waiting = Arc<Mutex<VecDeque<tokio::sync::oneshot::Sender<Result<Value, String>>>>>;

/// Exit statuses of remote processes, by (host, pid), as the agents report them.
#[derive(Default)]
struct Exits(Mutex<ExitBook>);

#[derive(Default)]
struct ExitBook {
    slots: HashMap<(usize, i32), ExitSlot>,
    /// Exits reported before their process was registered (a node that dies at once).
    early: HashMap<(usize, i32), i32>,
}

impl Exits {
    fn record(&self, host: usize, pid: i32, raw: i32) {
        let Ok(mut book) = self.0.lock() else { return };
        match book.slots.get(&(host, pid)) {
            Some(slot) => {
                if let Ok(mut s) = slot.lock() {
                    s.get_or_insert(ExitStatus::from_raw(raw));
                }
            }
            None => {
                book.early.insert((host, pid), raw);
            }
        }
    }

    /// Under the same lock as `record`: an exit is either early or lands in the slot.
    fn register(&self, host: usize, pid: i32) -> ExitSlot {
        let Ok(mut book) = self.0.lock() else {
            return Arc::new(Mutex::new(None));
        };
        let early = book.early.remove(&(host, pid));
        let slot = Arc::new(Mutex::new(early.map(ExitStatus::from_raw)));
        book.slots.insert((host, pid), slot.clone());
        slot
    }
}

/// One host's connection and agent.
struct Link {
    index: usize,
    host: Host,
    config: HostsConfig,
    /// Commands go through `sudo -n` (decided on connecting when the settings do not say).
    sudo: std::sync::atomic::AtomicBool,
    /// The uploaded faultline on the host.
    agent_binary: String,
    run: String,
    table: String,
    controller: String,
    control_dir: PathBuf,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    agent: tokio::sync::Mutex<Option<AgentChannel>>,
    exits: Arc<Exits>,
    /// What outage times count from (the test's start, once it has one).
    epoch: Mutex<Instant>,
    /// Down since (None: up), and the history of it.
    down: Mutex<Option<Instant>>,
    outages: Mutex<Vec<(Instant, Option<Instant>)>>,
    /// The last offset written to each clock control file (written again after a reconnect).
    clocks: Mutex<HashMap<String, f64>>,
    /// One partition change at a time (a reconnect's reapply must not overtake a newer one).
    nft_lock: tokio::sync::Mutex<()>,
    /// The partition script in force (applied again after a reconnect).
    nft_script: Mutex<Option<String>>,
    /// Process groups whose resume could not be sent (sent after a reconnect).
    unresumed: Mutex<HashSet<i32>>,
    reconnecting: std::sync::atomic::AtomicBool,
    /// Set once the run is over on this host: no more reconnecting.
    closed: std::sync::atomic::AtomicBool,
    /// Which agent channel is current (a reader of an older one must not clear a newer one).
    generation: std::sync::atomic::AtomicU64,
}

struct AgentChannel {
    generation: u64,
    stdin: openssh::ChildStdin,
    pending: Waiting,
    /// Kept so the channel lives as long as this does.
    _child: openssh::Child<Arc<Session>>,
}

/// How long one request may take before the host counts as not answering.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the SSH control sockets of this controller go: `/run/faultline/ssh/<pid>-<what>`
/// (short: a socket path has at most 108 bytes). The pid lets `faultline clean` tell the
/// folders of dead controllers.
fn control_dir(what: &str) -> PathBuf {
    control_root().join(format!("{}-{what}", std::process::id()))
}

/// The parent of every controller's control-socket folder: `/run/faultline/ssh` as root,
/// else `$XDG_RUNTIME_DIR/faultline-ssh` or `/tmp/faultline-ssh-<uid>`.
pub fn control_root() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/faultline/ssh");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("faultline-ssh"),
        None => PathBuf::from(format!("/tmp/faultline-ssh-{uid}")),
    }
}

impl Fleet {
    /// Connects to every host (all at once), uploads faultline (and the node binary) where it
    /// is missing, starts the agents, checks the hosts can do what the run needs and measures
    /// their clocks. Any failure is an error naming the host, before anything starts.
    pub fn connect(
        config: &HostsConfig,
        run_id: &str,
        run_tag: &str,
        nodes: &[String],
        needs: &Needs,
    ) -> Result<Fleet, String> {
        let (handle, stop) = start_runtime()?;
        let agent_local = std::env::current_exe()
            .map_err(|e| format!("cannot find the faultline binary to upload: {e}"))?;
        let agent_upload = Upload::prepare(&agent_local, "faultline")?;
        let node_upload = match (&needs.node_binary, &config.binary) {
            (Some(local), None) => Some(Upload::prepare(local, "node")?),
            _ => None,
        };
        let control_dir = control_dir(run_tag);
        make_private_dir(&control_dir)?;
        let exits = Arc::new(Exits::default());
        let controller = controller_id();
        let table = nft_table(run_tag);
        let mut jobs = Vec::new();
        for (i, host) in config.hosts.iter().enumerate() {
            let link = Arc::new(Link {
                index: i,
                host: host.clone(),
                config: config.clone(),
                sudo: std::sync::atomic::AtomicBool::new(config.sudo_for(host)),
                agent_binary: format!("{}/bin/faultline-{}", config.dir, agent_upload.hash),
                run: run_id.to_string(),
                table: table.clone(),
                controller: controller.clone(),
                control_dir: control_dir.clone(),
                session: tokio::sync::Mutex::new(None),
                agent: tokio::sync::Mutex::new(None),
                exits: exits.clone(),
                epoch: Mutex::new(Instant::now()),
                down: Mutex::new(None),
                outages: Mutex::new(Vec::new()),
                clocks: Mutex::new(HashMap::new()),
                nft_lock: tokio::sync::Mutex::new(()),
                nft_script: Mutex::new(None),
                unresumed: Mutex::new(HashSet::new()),
                reconnecting: std::sync::atomic::AtomicBool::new(false),
                closed: std::sync::atomic::AtomicBool::new(false),
                generation: std::sync::atomic::AtomicU64::new(0),
            });
            let agent_upload = agent_upload.clone();
            let node_upload = node_upload.clone();
            let needs = needs.clone();
            let node = nodes.get(i).cloned().unwrap_or_default();
            jobs.push(handle.spawn(async move {
                let r = link
                    .setup(&agent_upload, node_upload.as_ref(), &needs, &node)
                    .await;
                (link, r)
            }));
        }
        let results = block(&handle, async move {
            let mut out = Vec::new();
            for j in jobs {
                out.push(j.await.map_err(|e| format!("a host's setup failed: {e}")));
            }
            out
        })?;
        let mut links = Vec::new();
        let mut errors = Vec::new();
        let mut setups = Vec::new();
        for r in results {
            match r {
                Ok((link, Ok(setup))) => {
                    links.push(link);
                    setups.push(setup);
                }
                Ok((link, Err(e))) => {
                    errors.push(e);
                    links.push(link);
                }
                Err(e) => errors.push(e),
            }
        }
        let fleet_links = links.clone();
        let close = |handle: &tokio::runtime::Handle| {
            let _ = block(handle, async move {
                // The hosts that were reached get back to how they were.
                for l in fleet_links {
                    let _ = l.request(Request::Finish { keep: false }).await;
                    l.close(true).await;
                }
            });
        };
        if !errors.is_empty() {
            close(&handle);
            let _ = std::fs::remove_dir_all(&control_dir);
            return Err(errors.join("\n"));
        }
        let node_program = match (&config.binary, &node_upload) {
            (Some(b), _) => b.clone(),
            (None, Some(u)) => format!("{}/bin/{}-{}", config.dir, u.name, u.hash),
            (None, None) => format!("{}/bin/faultline-{}", config.dir, agent_upload.hash),
        };
        let mut reports = Vec::new();
        for (i, s) in setups.iter().enumerate() {
            let offset = s.offset_ms;
            let warning = (offset.abs() > config.clock_warn.as_secs_f64() * 1e3).then(|| {
                format!(
                    "host {}'s clock is {offset:+.1} ms off the controller's (more than {} ms): \
                     node logs and lease-based reads on it are skewed by that much",
                    config.hosts[i].name,
                    config.clock_warn.as_millis()
                )
            });
            reports.push(HostReport {
                name: config.hosts[i].name.clone(),
                node: nodes.get(i).cloned().unwrap_or_default(),
                kernel: s.hello.kernel.clone(),
                clock_offset_ms: offset,
                clock_rtt_ms: s.rtt_ms,
                warning,
                unreachable: Vec::new(),
            });
        }
        Ok(Fleet {
            runtime: handle,
            _stop: stop,
            exits,
            config: config.clone(),
            node_program,
            faketime: setups.iter().map(|s| s.hello.faketime.clone()).collect(),
            addresses: setups.iter().map(|s| s.hello.addresses.clone()).collect(),
            reports: Mutex::new(reports),
            run_dir: format!("{}/runs/{run_id}", config.dir),
            node_versions: setups.iter().map(|s| s.version.clone()).collect(),
            links,
        })
    }

    /// Runs `fut` on the connections' runtime and waits for it (from any thread).
    fn call<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        block(&self.runtime, fut)
    }

    /// Outage times are counted from `start` (the test's start) from now on.
    pub fn mark_start(&self, start: Instant) {
        for l in &self.links {
            if let Ok(mut e) = l.epoch.lock() {
                *e = start;
            }
        }
    }

    /// Where node `node`'s files go on its host.
    pub fn node_dir(&self, node: &str) -> String {
        format!("{}/{node}", self.run_dir)
    }

    /// Starts a node on host `host` as `launch` says (its program, arguments, environment and
    /// log are the host's).
    pub fn spawn(&self, host: usize, node: &str, launch: &Launch) -> Result<NodeProcess, String> {
        let link = self.link(host)?;
        let request = Request::Start {
            node: node.to_string(),
            program: launch.program.display().to_string(),
            args: launch.args.clone(),
            env: launch.env.clone(),
            data_dir: format!("{}/data", self.node_dir(node)),
            log: launch.log.display().to_string(),
        };
        let reply = self.call(async move { link.request(request).await })??;
        let pid = reply
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| format!("host {}: the agent sent no pid", self.host_name(host)))?;
        let slot = self.exits.register(host, pid);
        let signaller = self.signaller(host);
        Ok(NodeProcess::remote(pid, slot, signaller))
    }

    /// A function that signals process groups on host `host` (what a remote node's
    /// [`NodeProcess`] signals through).
    fn signaller(&self, host: usize) -> faultline_targets::process::Signaller {
        let runtime = self.runtime.clone();
        let link = self.links.get(host).cloned();
        Arc::new(move |pgid: i32, signal: Signal| {
            let Some(link) = link.clone() else {
                return Err("no such host".to_string());
            };
            block(&runtime, async move { link.signal(pgid, signal).await })?
        })
    }

    fn link(&self, host: usize) -> Result<Arc<Link>, String> {
        self.links
            .get(host)
            .cloned()
            .ok_or_else(|| format!("no host {host}"))
    }

    fn host_name(&self, host: usize) -> String {
        self.config
            .hosts
            .get(host)
            .map(|h| h.name.clone())
            .unwrap_or_default()
    }

    /// Makes each host drop what its `blocked` list names (one list per host; empty heals),
    /// all hosts at once. Every host gets its rules even if another fails.
    pub fn partition(&self, blocked: Vec<Vec<String>>, ports: &[u16]) -> Result<(), String> {
        let links = self.links.clone();
        let ports = ports.to_vec();
        let results = self.call(async move {
            let mut jobs = Vec::new();
            for (link, list) in links.into_iter().zip(blocked) {
                let ports = ports.clone();
                jobs.push(tokio::spawn(async move {
                    let script = nft_partition_script(&link.table, &list, &ports);
                    let _one_change = link.nft_lock.lock().await;
                    if let Ok(mut s) = link.nft_script.lock() {
                        *s = Some(script.clone());
                    }
                    link.request(Request::Nft { script })
                        .await
                        .map_err(|e| format!("{}: {e}", link.host.name))
                }));
            }
            let mut errors = Vec::new();
            for j in jobs {
                match j.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => errors.push(e),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            errors
        })?;
        match results.is_empty() {
            true => Ok(()),
            false => Err(results.join("; ")),
        }
    }

    /// Writes a libfaketime control file on host `host`.
    pub fn set_clock(&self, host: usize, path: &str, offset_ms: f64) -> Result<(), String> {
        let link = self.link(host)?;
        if let Ok(mut c) = link.clocks.lock() {
            c.insert(path.to_string(), offset_ms);
        }
        let path = path.to_string();
        self.call(async move { link.request(Request::Clock { path, offset_ms }).await })?
            .map(|_| ())
    }

    /// The last `bytes` bytes of a file on host `host`.
    pub fn tail(&self, host: usize, path: &str, bytes: u64) -> Result<Vec<u8>, String> {
        let link = self.link(host)?;
        let path = path.to_string();
        let reply =
            self.call(async move { link.request(Request::Tail { path, bytes }).await })??;
        base64::engine::general_purpose::STANDARD
            .decode(reply.as_str().unwrap_or_default())
            .map_err(|e| format!("host {}: a garbled file: {e}", self.host_name(host)))
    }

    /// Ends the run on every host: copies each node's log to `logs[i]` and its data
    /// directory's listing next to it, then kills whatever still runs, deletes the nftables
    /// table and (unless `keep`) removes the run's files and the uploaded binaries. Returns
    /// what could not be done.
    pub fn finish(&self, nodes: &[(String, PathBuf)]) -> Vec<String> {
        let mut problems = Vec::new();
        // A host away right now may be back in a moment: what is left on it is worth the wait.
        let links = self.links.clone();
        let _ = self.call(async move {
            let deadline = Instant::now() + FINISH_PATIENCE;
            for l in &links {
                while l.agent.lock().await.is_none() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        for (i, (node, local_log)) in nodes.iter().enumerate() {
            if let Some(dir) = local_log.parent() {
                if let Err(e) = std::fs::create_dir_all(dir) {
                    problems.push(format!("cannot create {}: {e}", dir.display()));
                }
            }
            let remote_log = format!("{}.log", self.node_dir(node));
            let fetched = self.link(i).and_then(|link| {
                self.call(async move { link.fetch(&remote_log, MAX_LOG_BYTES).await })?
            });
            match fetched {
                Ok(bytes) => {
                    if let Err(e) = std::fs::write(local_log, bytes) {
                        problems.push(format!("cannot write {}: {e}", local_log.display()));
                    }
                }
                Err(e) => problems.push(format!("{node}'s log: {e}")),
            }
            let data = format!("{}/data", self.node_dir(node));
            let listing = self
                .link(i)
                .and_then(|link| {
                    self.call(async move { link.request(Request::Listing { dir: data }).await })?
                })
                .and_then(|v| {
                    serde_json::from_value::<Vec<ListedFile>>(v).map_err(|e| e.to_string())
                });
            match listing {
                Ok(list) => {
                    let path = local_log.with_extension("data.json");
                    let text = serde_json::to_string_pretty(&list).unwrap_or_default();
                    if let Err(e) = std::fs::write(&path, text) {
                        problems.push(format!("cannot write {}: {e}", path.display()));
                    }
                }
                Err(e) => problems.push(format!("{node}'s data listing: {e}")),
            }
        }
        let keep = self.config.keep;
        let links = self.links.clone();
        let closed = self.call(async move {
            let mut errors = Vec::new();
            for link in links {
                if let Err(e) = link.request(Request::Finish { keep }).await {
                    errors.push(format!(
                        "host {0}: the run could not be ended there ({e}); what is left of it \
                         goes with `faultline clean --hosts {0}`",
                        link.host.name
                    ));
                }
                link.close(!keep).await;
            }
            errors
        });
        match closed {
            Ok(e) => problems.extend(e),
            Err(e) => problems.push(e),
        }
        if let Ok(mut reports) = self.reports.lock() {
            for (r, l) in reports.iter_mut().zip(&self.links) {
                let epoch = l
                    .epoch
                    .lock()
                    .map(|e| *e)
                    .unwrap_or_else(|_| Instant::now());
                let ms = |t: Instant| match t.checked_duration_since(epoch) {
                    Some(d) => d.as_secs_f64() * 1e3,
                    None => -(epoch.duration_since(t).as_secs_f64() * 1e3),
                };
                r.unreachable = l
                    .outages
                    .lock()
                    .map(|o| o.iter().map(|(a, b)| (ms(*a), b.map(ms))).collect())
                    .unwrap_or_default();
            }
        }
        if let Some(dir) = self.links.first().map(|l| l.control_dir.clone()) {
            let _ = std::fs::remove_dir_all(dir);
        }
        problems
    }
}

/// The longest log copied back from a host (its end).
const MAX_LOG_BYTES: u64 = 64 << 20;
/// How long the end of a run waits for a host that is away to come back.
const FINISH_PATIENCE: Duration = Duration::from_secs(20);
/// How long copying one file back may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// What a host's setup found.
struct Setup {
    hello: Hello,
    offset_ms: f64,
    rtt_ms: f64,
    /// What the host's own node binary says it is (`hosts.binary`).
    version: Option<String>,
}

/// A local file to put on the hosts, named by its content.
#[derive(Clone)]
struct Upload {
    /// What is sent (a copy without debug information when that is much smaller).
    path: Arc<PathBuf>,
    /// Kept alive until the upload is done (the stripped copy).
    _temp: Option<Arc<TempFile>>,
    name: String,
    hash: String,
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Upload {
    fn prepare(local: &Path, name: &str) -> Result<Upload, String> {
        use sha2::Digest as _;
        let meta = std::fs::metadata(local)
            .map_err(|e| format!("cannot read {}: {e}", local.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a file", local.display()));
        }
        let mut hasher = sha2::Sha256::new();
        let mut file = std::fs::File::open(local)
            .map_err(|e| format!("cannot read {}: {e}", local.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut file, &mut buf)
                .map_err(|e| format!("cannot read {}: {e}", local.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hash: String = hasher
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        // faultline's release build carries ~90 MB of debug information the hosts do not
        // need; objcopy (binutils), when the controller has it, leaves ~13 MB to send.
        let mut temp = None;
        if meta.len() > 32 << 20 {
            let stripped = std::env::temp_dir()
                .join(format!("faultline-upload-{}-{hash}", std::process::id()));
            let ok = std::process::Command::new("objcopy")
                .arg("--strip-debug")
                .arg(local)
                .arg(&stripped)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                temp = Some(Arc::new(TempFile(stripped)));
            } else {
                let _ = std::fs::remove_file(&stripped);
            }
        }
        Ok(Upload {
            path: Arc::new(
                temp.as_ref()
                    .map(|t| t.0.clone())
                    .unwrap_or_else(|| local.to_path_buf()),
            ),
            _temp: temp,
            name: name.to_string(),
            hash,
        })
    }
}

impl Link {
    fn name(&self) -> &str {
        &self.host.name
    }

    /// The first line `binary --version` prints on the host (a node binary of the host's own).
    async fn version_of(&self, session: &Arc<Session>, binary: &str) -> Result<String, String> {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            self.command(session, binary).arg("--version").output(),
        )
        .await
        .map_err(|_| format!("host {}: {binary} --version did not answer", self.name()))?
        .map_err(|e| format!("host {}: {e}", self.name()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next().unwrap_or_default().trim();
        Ok(faultline_targets::sanitize(line, 200))
    }

    /// A new SSH connection (a ControlMaster in the run's control directory); when neither
    /// the settings nor the address name the login user, whether it is root is asked.
    async fn connect(&self) -> Result<Arc<Session>, String> {
        let session = self.connect_master().await?;
        if self.config.sudo.is_none() && self.config.user_of(&self.host).is_none() {
            let out = Session::to_command(session.clone(), "id")
                .arg("-u")
                .output()
                .await
                .map_err(|e| format!("host {}: {e}", self.name()))?;
            let root = String::from_utf8_lossy(&out.stdout).trim() == "0";
            self.sudo.store(!root, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(session)
    }

    async fn connect_master(&self) -> Result<Arc<Session>, String> {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(match self.config.known_hosts {
            KnownHosts::Strict => SshKnownHosts::Strict,
            KnownHosts::AcceptNew => SshKnownHosts::Add,
            KnownHosts::Off => SshKnownHosts::Accept,
        })
        .connect_timeout(Duration::from_secs(5))
        .server_alive_interval(Duration::from_secs(2))
        .control_directory(&self.control_dir)
        // The master ends on its own a minute after its last channel: a controller killed
        // with SIGKILL leaves no ssh process behind for long.
        .control_persist(ControlPersist::IdleFor(
            std::num::NonZeroUsize::new(60).unwrap_or(std::num::NonZeroUsize::MIN),
        ));
        if let Some(user) = self.config.user_of(&self.host) {
            b.user(user);
        }
        if let Some(port) = self.host.port.or(self.config.port) {
            b.port(port);
        }
        if let Some(k) = &self.config.key {
            b.keyfile(k);
        }
        if let Some(f) = &self.config.known_hosts_file {
            b.user_known_hosts_file(f);
        }
        if let Some(f) = &self.config.ssh_config {
            b.config_file(f);
        }
        let session = b
            .connect_mux(&self.host.name)
            .await
            .map_err(|e| connect_error(&self.host.name, &e))?;
        Ok(Arc::new(session))
    }

    /// `sudo -n --` in front of a command when the host needs it.
    fn command(
        &self,
        session: &Arc<Session>,
        program: &str,
    ) -> openssh::OwningCommand<Arc<Session>> {
        if self.sudo.load(std::sync::atomic::Ordering::Relaxed) {
            let mut c = Session::to_command(session.clone(), "sudo");
            c.arg("-n").arg("--").arg(program);
            c
        } else {
            Session::to_command(session.clone(), program.to_string())
        }
    }

    /// Connects, uploads, starts the agent, checks the host and measures its clock.
    async fn setup(
        self: &Arc<Self>,
        agent: &Upload,
        node: Option<&Upload>,
        needs: &Needs,
        node_name: &str,
    ) -> Result<Setup, String> {
        let session = self.connect().await?;
        *self.session.lock().await = Some(session.clone());
        let mut version = None;
        self.upload(&session, agent, &self.agent_binary).await?;
        if let Some(u) = node {
            let target = format!("{}/bin/{}-{}", self.config.dir, u.name, u.hash);
            self.upload(&session, u, &target).await?;
        }
        if let Some(binary) = &self.config.binary {
            let ok = self
                .command(&session, "test")
                .arg("-x")
                .arg(binary)
                .status()
                .await
                .map_err(|e| format!("host {}: {e}", self.name()))?;
            if !ok.success() {
                return Err(format!(
                    "host {}: {binary} (hosts.binary) is not an executable file there; \
                     install it on the host or leave hosts.binary out to upload the local one",
                    self.name()
                ));
            }
            version = Some(self.version_of(&session, binary).await?);
        }
        // One run per host at a time: another live one would share its ports, and each run's
        // partitions would cut the other's traffic.
        if let Some(other) = self
            .list_runs(&session)
            .await?
            .into_iter()
            .find(|r| r.agent_alive && r.run != self.run)
        {
            return Err(format!(
                "host {}: another run is using it (run {}, controller {}); one run per host at \
                 a time (if that run is gone, `faultline clean --hosts {}` removes it)",
                self.name(),
                faultline_targets::sanitize(&other.run, 200),
                faultline_targets::sanitize(&other.controller, 200),
                self.name()
            ));
        }
        self.start_agent(&session).await?;
        let hello: Hello = serde_json::from_value(self.request(Request::Hello).await?)
            .map_err(|e| format!("host {}: the agent's hello: {e}", self.name()))?;
        if needs.nftables && (hello.nft.is_none() || hello.euid != 0) {
            return Err(format!(
                "host {}: partitions need nftables and root there ({}); install nftables, or \
                 log in as root or set hosts.sudo = true, or leave partitions out",
                self.name(),
                match (&hello.nft, hello.euid) {
                    (None, _) => "nft is not installed".to_string(),
                    (_, uid) => format!("faultline runs as uid {uid}"),
                }
            ));
        }
        if needs.faketime && hello.faketime.is_none() {
            return Err(format!(
                "host {}: clock faults need libfaketime there (Debian: apt-get install \
                 libfaketime); it is not installed",
                self.name()
            ));
        }
        if needs.nftables {
            // The run's table, empty, from the start: a partition then only fills its chain.
            let script = nft_partition_script(&self.table, &[], &[]);
            self.request(Request::Nft {
                script: script.clone(),
            })
            .await
            .map_err(|e| {
                format!(
                    "host {}: cannot add the run's nftables table: {e}",
                    self.name()
                )
            })?;
            if let Ok(mut s) = self.nft_script.lock() {
                *s = Some(script);
            }
        }
        let (offset_ms, rtt_ms) = self.measure_clock().await?;
        tracing::info!(
            host = self.name(),
            node = node_name,
            offset_ms,
            rtt_ms,
            "host ready"
        );
        Ok(Setup {
            hello,
            offset_ms,
            rtt_ms,
            version,
        })
    }

    /// Puts `u` at `target` on the host unless it is there already (the name has its hash).
    async fn upload(&self, session: &Arc<Session>, u: &Upload, target: &str) -> Result<(), String> {
        let present = self
            .command(session, "test")
            .arg("-x")
            .arg(target)
            .status()
            .await
            .map_err(|e| format!("host {}: {e}", self.name()))?;
        if present.success() {
            return Ok(());
        }
        let file = std::fs::File::open(u.path.as_path())
            .map_err(|e| format!("cannot read {}: {e}", u.path.display()))?;
        let out = self
            .command(session, "sh")
            .arg("-c")
            .arg(
                "mkdir -p \"$1\" && umask 077 && cat > \"$2.part.$$\" \
                 && chmod 755 \"$2.part.$$\" && mv -f \"$2.part.$$\" \"$2\"",
            )
            .arg("sh")
            .arg(format!("{}/bin", self.config.dir))
            .arg(target)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(file)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| format!("host {}: cannot upload {}: {e}", self.name(), u.name))?;
        if !out.status.success() {
            return Err(format!(
                "host {}: cannot upload {} to {target}: {}",
                self.name(),
                u.name,
                faultline_targets::sanitize(String::from_utf8_lossy(&out.stderr).trim(), 400)
            ));
        }
        Ok(())
    }

    /// Starts the agent on the current session and a task reading what it says.
    async fn start_agent(self: &Arc<Self>, session: &Arc<Session>) -> Result<(), String> {
        let mut child = self
            .command(session, &self.agent_binary)
            .arg("host")
            .arg("agent")
            .arg("--dir")
            .arg(&self.config.dir)
            .arg("--run")
            .arg(&self.run)
            .arg("--host")
            .arg(&self.host.name)
            .arg("--table")
            .arg(&self.table)
            .arg("--controller")
            .arg(&self.controller)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(|e| format!("host {}: cannot start faultline there: {e}", self.name()))?;
        let stdin = child
            .stdin()
            .take()
            .ok_or_else(|| "the agent has no stdin".to_string())?;
        let stdout = child
            .stdout()
            .take()
            .ok_or_else(|| "the agent has no stdout".to_string())?;
        let stderr = child.stderr().take();
        let pending: Waiting = Arc::new(Mutex::new(VecDeque::new()));
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        *self.agent.lock().await = Some(AgentChannel {
            generation,
            stdin,
            pending: pending.clone(),
            _child: child,
        });
        let exits = self.exits.clone();
        let index = self.index;
        let name = self.host.name.clone();
        let link = self.clone();
        let stderr_text = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = stderr {
            let text = stderr_text.clone();
            tokio::spawn(async move {
                let mut buf = String::new();
                let _ = err.read_to_string(&mut buf).await;
                if let Ok(mut t) = text.lock() {
                    *t = buf;
                }
            });
        }
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Message>(&line) {
                    Ok(Message::Exit { pid, status }) => exits.record(index, pid, status),
                    Ok(m) => {
                        let waiter = pending.lock().ok().and_then(|mut p| p.pop_front());
                        if let Some(w) = waiter {
                            let _ = w.send(match m {
                                Message::Reply(v) => Ok(v),
                                Message::Failed(e) => Err(e),
                                Message::Exit { .. } => Ok(Value::Null),
                            });
                        }
                    }
                    Err(e) => tracing::warn!(host = name, error = %e, "unreadable agent line"),
                }
            }
            // The channel is gone: whoever waits is told why.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let why = stderr_text
                .lock()
                .map(|t| t.trim().to_string())
                .unwrap_or_default();
            let why = match why.is_empty() {
                true => format!("lost the connection to host {name}"),
                false => format!(
                    "lost the connection to host {name}: {}",
                    faultline_targets::sanitize(&why, 400)
                ),
            };
            if let Ok(mut p) = pending.lock() {
                for w in p.drain(..) {
                    let _ = w.send(Err(why.clone()));
                }
            }
            if !link.closed.load(std::sync::atomic::Ordering::SeqCst) {
                let mut agent = link.agent.lock().await;
                if agent.as_ref().is_some_and(|a| a.generation == generation) {
                    *agent = None;
                    drop(agent);
                    tracing::warn!(host = name, reason = why, "agent channel closed");
                    link.went_down();
                }
            }
        });
        Ok(())
    }

    /// The last `max` bytes of a file on the host, through a channel of its own (a large log
    /// does not hold up the agent's requests).
    async fn fetch(self: &Arc<Self>, path: &str, max: u64) -> Result<Vec<u8>, String> {
        let session = self
            .session
            .lock()
            .await
            .clone()
            .ok_or_else(|| format!("host {} is unreachable", self.name()))?;
        let out = tokio::time::timeout(
            FETCH_TIMEOUT,
            self.command(&session, "tail")
                .arg("-c")
                .arg(max.to_string())
                .arg(path)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output(),
        )
        .await
        .map_err(|_| format!("host {}: copying {path} took too long", self.name()))?
        .map_err(|e| format!("host {}: {e}", self.name()))?;
        if !out.status.success() {
            return Err(format!(
                "host {}: cannot read {path}: {}",
                self.name(),
                faultline_targets::sanitize(String::from_utf8_lossy(&out.stderr).trim(), 300)
            ));
        }
        Ok(out.stdout)
    }

    /// One request to the agent.
    async fn request(self: &Arc<Self>, request: Request) -> Result<Value, String> {
        let (rx, generation) = {
            let mut agent = self.agent.lock().await;
            let Some(channel) = agent.as_mut() else {
                drop(agent);
                // Down: make sure someone is bringing it back.
                self.went_down();
                return Err(format!("host {} is unreachable", self.name()));
            };
            let generation = channel.generation;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let mut line = serde_json::to_string(&request).map_err(|e| e.to_string())?;
            line.push('\n');
            if let Ok(mut p) = channel.pending.lock() {
                p.push_back(tx);
            }
            let written = tokio::time::timeout(REQUEST_TIMEOUT, async {
                channel.stdin.write_all(line.as_bytes()).await?;
                channel.stdin.flush().await
            })
            .await;
            if !matches!(written, Ok(Ok(()))) {
                *agent = None;
                drop(agent);
                self.went_down();
                return Err(format!("host {} is unreachable (cannot send)", self.name()));
            }
            (rx, generation)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => {
                if e.starts_with("lost the connection") {
                    self.drop_channel(generation).await;
                }
                Err(e)
            }
            Ok(Err(_)) | Err(_) => {
                self.drop_channel(generation).await;
                Err(format!(
                    "host {} did not answer within {} s",
                    self.name(),
                    REQUEST_TIMEOUT.as_secs()
                ))
            }
        }
    }

    /// Gives up agent channel `generation` (not a newer one a reconnect made meanwhile) and
    /// marks the host down.
    async fn drop_channel(self: &Arc<Self>, generation: u64) {
        let mut agent = self.agent.lock().await;
        if agent.as_ref().is_some_and(|a| a.generation == generation) {
            *agent = None;
        }
        drop(agent);
        self.went_down();
    }

    async fn signal(self: &Arc<Self>, pgid: i32, signal: Signal) -> Result<(), String> {
        let result = self
            .request(Request::Signal {
                pgid,
                signal: signal as i32,
            })
            .await
            .map(|_| ());
        if let Ok(mut u) = self.unresumed.lock() {
            match (signal, &result) {
                (Signal::SIGCONT, Err(_)) => {
                    u.insert(pgid);
                }
                (Signal::SIGCONT | Signal::SIGKILL, Ok(())) => {
                    u.remove(&pgid);
                }
                _ => {}
            }
        }
        result
    }

    /// Marks the host down (once) and starts trying to reconnect.
    fn went_down(self: &Arc<Self>) {
        if let Ok(mut d) = self.down.lock() {
            if d.is_none() {
                let now = Instant::now();
                *d = Some(now);
                tracing::warn!(host = self.name(), "host unreachable");
                if let Ok(mut o) = self.outages.lock() {
                    o.push((now, None));
                }
            }
        }
        if self.closed.load(std::sync::atomic::Ordering::SeqCst)
            || self
                .reconnecting
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let link = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if link.closed.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = link.reconnect().await {
                    tracing::debug!(host = link.name(), error = e, "reconnect failed");
                }
                // Up only with a channel and no outage open (what the reconnect sent may
                // have lost the new channel already).
                if link.is_up().await {
                    break;
                }
            }
            link.reconnecting
                .store(false, std::sync::atomic::Ordering::SeqCst);
            // Lost again between the check and the flag: nobody else started a loop.
            if !link.is_up().await && !link.closed.load(std::sync::atomic::Ordering::SeqCst) {
                link.went_down();
            }
        });
    }

    /// Up: a channel, and no outage open.
    async fn is_up(&self) -> bool {
        self.agent.lock().await.is_some() && self.down.lock().is_ok_and(|d| d.is_none())
    }

    /// A new connection and agent; then what the host missed: the partition in force and
    /// the resumes that could not be sent.
    async fn reconnect(self: &Arc<Self>) -> Result<(), String> {
        let closed = || self.closed.load(std::sync::atomic::Ordering::SeqCst);
        let session = self.connect().await?;
        if closed() {
            return Err("the run is over".to_string());
        }
        *self.session.lock().await = Some(session.clone());
        self.start_agent(&session).await?;
        if closed() {
            *self.agent.lock().await = None;
            return Err("the run is over".to_string());
        }
        // Back only once the new agent answers (it may exit at once: its binary gone).
        self.request(Request::Hello).await?;
        let back = Instant::now();
        if let Ok(mut d) = self.down.lock() {
            *d = None;
        }
        if let Ok(mut o) = self.outages.lock() {
            if let Some(last) = o.last_mut() {
                last.1 = Some(back);
            }
        }
        tracing::warn!(host = self.name(), "host reachable again");
        {
            let _one_change = self.nft_lock.lock().await;
            let script = self.nft_script.lock().ok().and_then(|s| s.clone());
            if let Some(script) = script {
                if let Err(e) = self.request(Request::Nft { script }).await {
                    tracing::warn!(
                        host = self.name(),
                        error = e,
                        "cannot reapply the partition"
                    );
                }
            }
        }
        let clocks: Vec<(String, f64)> = self
            .clocks
            .lock()
            .map(|c| c.iter().map(|(p, o)| (p.clone(), *o)).collect())
            .unwrap_or_default();
        for (path, offset_ms) in clocks {
            let _ = self.request(Request::Clock { path, offset_ms }).await;
        }
        let unresumed: Vec<i32> = self
            .unresumed
            .lock()
            .map(|u| u.iter().copied().collect())
            .unwrap_or_default();
        for pgid in unresumed {
            let _ = self.signal(pgid, Signal::SIGCONT).await;
        }
        Ok(())
    }

    /// Measures the host's clock against ours: ten round trips, the shortest kept (its
    /// midpoint is the best estimate of when the host read its clock).
    async fn measure_clock(self: &Arc<Self>) -> Result<(f64, f64), String> {
        let mut best: Option<(f64, f64)> = None;
        for _ in 0..10 {
            let sent = wall_ns();
            let remote = self.request(Request::Now).await?;
            let received = wall_ns();
            let remote = remote
                .as_f64()
                .or_else(|| remote.as_u64().map(|v| v as f64))
                .ok_or_else(|| format!("host {}: a garbled clock reading", self.name()))?;
            let rtt = (received - sent) / 1e6;
            let offset = (remote - (sent + received) / 2.0) / 1e6;
            if best.is_none_or(|(_, r)| rtt < r) {
                best = Some((offset, rtt));
            }
        }
        best.ok_or_else(|| "no clock reading".to_string())
    }

    /// Closes the agent channel and the connection; `remove_binaries` also removes the
    /// uploaded binaries when no other run uses them.
    async fn close(self: &Arc<Self>, remove_binaries: bool) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        *self.agent.lock().await = None;
        let session = self.session.lock().await.take();
        if let Some(session) = session {
            if remove_binaries {
                let mut cmd = self.command(&session, &self.agent_binary);
                cmd.arg("host")
                    .arg("clean")
                    .arg("--dir")
                    .arg(&self.config.dir)
                    .arg("--host")
                    .arg(&self.host.name)
                    .arg("--remove-binaries")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let _ = tokio::time::timeout(Duration::from_secs(60), cmd.status()).await;
            }
            if let Ok(session) = Arc::try_unwrap(session) {
                let _ = tokio::time::timeout(Duration::from_secs(10), session.close()).await;
            }
        }
        if let Ok(mut d) = self.down.lock() {
            *d = None;
        }
    }
}

/// A folder only this user can enter (it holds SSH control sockets), below a control root
/// that is this user's own and closed to others (in /tmp, someone else could have made it
/// first).
fn make_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    let root = control_root();
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder
        .create(&root)
        .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let meta = std::fs::symlink_metadata(&root)
        .map_err(|e| format!("cannot read {}: {e}", root.display()))?;
    let me = nix::unistd::geteuid();
    let mine = meta.uid() == me.as_raw();
    // Under /run only root can write; elsewhere the folder must be closed to others.
    let open_to_others = !me.is_root() && meta.permissions().mode() & 0o077 != 0;
    if !meta.is_dir() || !mine || open_to_others {
        return Err(format!(
            "{} must be a folder of this user's that no one else can enter (it holds SSH \
             control sockets); remove it, or set XDG_RUNTIME_DIR",
            root.display()
        ));
    }
    builder
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn wall_ns() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as f64)
        .unwrap_or(0.0)
}

/// `HOSTNAME PID BOOT-ID` of this controller (so `clean` can tell a live run from a dead one).
pub fn controller_id() -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_string());
    format!("{} {} {}", host, std::process::id(), boot_id())
}

/// This machine's boot id.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A sentence for a failed connection: which host, what kind of failure, what to do.
fn connect_error(host: &str, e: &openssh::Error) -> String {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    let detail = faultline_targets::sanitize(detail.trim(), 600);
    let lower = detail.to_lowercase();
    let hint = if lower.contains("host key verification failed")
        || lower.contains("identification has changed")
        || lower.contains("host key is known")
    {
        "its host key does not match the known-hosts file (or is not in it): check the host, \
         then update the file (ssh-keyscan), or set hosts.known_hosts = \"accept-new\" for a \
         host never seen before"
    } else if lower.contains("permission denied") {
        "the login was refused: check hosts.user and hosts.key"
    } else if lower.contains("refused")
        || lower.contains("timed out")
        || lower.contains("no route")
        || lower.contains("unreachable")
        || lower.contains("could not resolve")
    {
        "the host is unreachable: check the address and that sshd runs there"
    } else {
        "ssh could not connect"
    };
    format!("host {host}: cannot connect over SSH: {hint} ({detail})")
}

/// A current-thread runtime on a thread of its own, running until the sender is dropped.
fn start_runtime() -> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the SSH runtime: {e}"))?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("ssh".into())
        .spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })
        .map_err(|e| format!("cannot start the SSH thread: {e}"))?;
    Ok((handle, stop))
}

/// Runs `fut` on `handle` and waits for its result from this (any) thread.
fn block<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| "the SSH runtime has stopped".to_string())
}

/// `faultline clean --hosts`: on each host, every run faultline left there (processes,
/// nftables table, files) except runs whose controller still runs on this machine (all of
/// them with `all`), then the uploaded binaries once no run is left. Returns what was done
/// per host, and the errors.
pub fn clean_hosts(config: &HostsConfig, all: bool) -> (Vec<String>, Vec<String>) {
    let (handle, _stop) = match start_runtime() {
        Ok(r) => r,
        Err(e) => return (Vec::new(), vec![e]),
    };
    let agent = match std::env::current_exe()
        .map_err(|e| format!("cannot find the faultline binary to upload: {e}"))
        .and_then(|p| Upload::prepare(&p, "faultline"))
    {
        Ok(u) => u,
        Err(e) => return (Vec::new(), vec![e]),
    };
    let tag = format!("clean-{}", std::process::id());
    let control_dir = control_dir("clean");
    if let Err(e) = make_private_dir(&control_dir) {
        return (Vec::new(), vec![e]);
    }
    let mut jobs = Vec::new();
    for (i, host) in config.hosts.iter().enumerate() {
        let link = Arc::new(Link {
            index: i,
            host: host.clone(),
            config: config.clone(),
            sudo: std::sync::atomic::AtomicBool::new(config.sudo_for(host)),
            agent_binary: format!("{}/bin/faultline-{}", config.dir, agent.hash),
            run: tag.clone(),
            table: String::new(),
            controller: controller_id(),
            control_dir: control_dir.clone(),
            session: tokio::sync::Mutex::new(None),
            agent: tokio::sync::Mutex::new(None),
            exits: Arc::new(Exits::default()),
            epoch: Mutex::new(Instant::now()),
            down: Mutex::new(None),
            outages: Mutex::new(Vec::new()),
            clocks: Mutex::new(HashMap::new()),
            nft_lock: tokio::sync::Mutex::new(()),
            nft_script: Mutex::new(None),
            unresumed: Mutex::new(HashSet::new()),
            reconnecting: std::sync::atomic::AtomicBool::new(false),
            closed: std::sync::atomic::AtomicBool::new(true),
            generation: std::sync::atomic::AtomicU64::new(0),
        });
        let agent = agent.clone();
        jobs.push(handle.spawn(async move { link.clean(&agent, all).await }));
    }
    let results = block(&handle, async move {
        let mut out = Vec::new();
        for j in jobs {
            out.push(j.await.map_err(|e| e.to_string()).and_then(|r| r));
        }
        out
    });
    let _ = std::fs::remove_dir_all(&control_dir);
    let mut done = Vec::new();
    let mut errors = Vec::new();
    match results {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(lines) => done.extend(lines),
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(e),
    }
    (done, errors)
}

/// Whether the controller `id` (`HOSTNAME PID BOOT-ID`) is a faultline still running here.
fn controller_alive_here(id: &str) -> bool {
    let mut parts = id.split_whitespace();
    let (_, pid, boot) = (parts.next(), parts.next(), parts.next());
    let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    if boot != Some(boot_id().as_str()) || pid == std::process::id() {
        return false;
    }
    // A zombie (killed, not yet reaped) runs no more.
    let running = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    });
    running
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "faultline")
}

impl Link {
    /// The runs on the host (`host runs`).
    async fn list_runs(
        &self,
        session: &Arc<Session>,
    ) -> Result<Vec<crate::agent::RunRecord>, String> {
        let out = self
            .command(session, &self.agent_binary)
            .arg("host")
            .arg("runs")
            .arg("--dir")
            .arg(&self.config.dir)
            .output()
            .await
            .map_err(|e| format!("host {}: {e}", self.name()))?;
        if !out.status.success() {
            return Err(format!(
                "host {}: cannot list runs: {}",
                self.name(),
                faultline_targets::sanitize(String::from_utf8_lossy(&out.stderr).trim(), 400)
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("host {}: cannot read the run list: {e}", self.name()))
    }

    async fn clean(self: &Arc<Self>, agent: &Upload, all: bool) -> Result<Vec<String>, String> {
        let session = self.connect().await?;
        let result = self.clean_on(&session, agent, all).await;
        if let Ok(session) = Arc::try_unwrap(session) {
            let _ = session.close().await;
        }
        result
    }

    async fn clean_on(
        self: &Arc<Self>,
        session: &Arc<Session>,
        agent: &Upload,
        all: bool,
    ) -> Result<Vec<String>, String> {
        let exists = self
            .command(session, "test")
            .arg("-d")
            .arg(&self.config.dir)
            .status()
            .await
            .map_err(|e| format!("host {}: {e}", self.name()))?;
        if !exists.success() {
            return Ok(vec![format!("host {}: nothing to clean", self.name())]);
        }
        self.upload(session, agent, &self.agent_binary).await?;
        let mut runs = self.list_runs(session).await?;
        // A controller that just died: its agent ends as soon as the connection closes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all
            && Instant::now() < deadline
            && runs
                .iter()
                .any(|r| r.agent_alive && !controller_alive_here(&r.controller))
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
            runs = self.list_runs(session).await?;
        }
        let mut lines = Vec::new();
        let mut chosen = Vec::new();
        for r in runs {
            let why_alive = if controller_alive_here(&r.controller) {
                Some("its controller still runs")
            } else if r.agent_alive {
                Some("a controller is still connected to it, from another machine?")
            } else {
                None
            };
            if let (false, Some(why)) = (all, why_alive) {
                lines.push(format!(
                    "host {}: run {} left alone ({why}; --all takes it too)",
                    self.name(),
                    faultline_targets::sanitize(&r.run, 200)
                ));
                continue;
            }
            chosen.push(r.run);
        }
        let mut cmd = self.command(session, &self.agent_binary);
        cmd.arg("host")
            .arg("clean")
            .arg("--dir")
            .arg(&self.config.dir)
            .arg("--host")
            .arg(&self.host.name)
            .arg("--remove-binaries");
        for r in &chosen {
            cmd.arg("--run").arg(r);
        }
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("host {}: {e}", self.name()))?;
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            lines.push(format!(
                "host {}: removed run {}",
                self.name(),
                faultline_targets::sanitize(l, 300)
            ));
        }
        if !out.status.success() {
            return Err(format!(
                "host {}: {}",
                self.name(),
                faultline_targets::sanitize(String::from_utf8_lossy(&out.stderr).trim(), 400)
            ));
        }
        if chosen.is_empty() {
            lines.push(format!("host {}: no run to clean", self.name()));
        }
        Ok(lines)
    }
}
