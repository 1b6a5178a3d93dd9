//! Fake SSH hosts for the remote-node tests: each host is a network namespace (`flh-TAG-I`)
//! with its own address and its own `sshd`, and its own `/var/lib/faultline` (a directory of
//! the fixture bind-mounted there in that sshd's mount namespace, so every command run over
//! SSH on host I sees host I's directory). Everything else (`/root`, `/tmp`, `/run`, the
//! binaries) is this machine's, shared by all hosts.
//!
//! The hosts hang off a bridge in a hub namespace (`flh-TAG-hub`), which the root namespace
//! joins through a veth (`flhbTAG`, with `controller_ip`). The bridge is not in the root
//! namespace because with `br_netfilter` loaded (`net.bridge.bridge-nf-call-iptables = 1`)
//! bridged traffic between two hosts would go through the root namespace's forward hook, and
//! a `policy drop` there (Docker's, a firewall's) would cut the hosts off from each other.
//!
//! Needs root, `ip` (iproute2), `unshare` (util-linux), `ssh`/`ssh-keygen` and `/usr/sbin/sshd`
//! (openssh-server, installed by `scripts/install-deps`). Names start with `flh-` and not
//! `fl-`, so `faultline clean` leaves the hosts alone. Dropping the fixture kills every process
//! in the hosts' namespaces (sshd, its sessions, whatever a test left running there) and
//! removes the namespaces, the veth and the fixture's folder.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Prefix of the fixture's namespaces (not `fl-`: `faultline clean` deletes those).
const NS_PREFIX: &str = "flh-";
/// Prefix of the root namespace's end of the veth to the hosts' bridge.
const LINK_PREFIX: &str = "flhb";
/// The hosts' /24s are taken from this /16.
const RANGE: [u8; 2] = [10, 213];
/// Serializes choosing a free /24 and claiming it, across threads and test binaries.
const SUBNET_LOCK: &str = "/run/faultline-ssh-hosts.lock";
/// The folder each host gets its own copy of.
const HOST_ROOT: &str = "/var/lib/faultline";
/// sshd's privilege separation folder: must exist, owned by root, not group/world-writable.
const PRIVSEP_DIR: &str = "/run/sshd";
const SSHD: &str = "/usr/sbin/sshd";
/// How long an sshd gets to accept its first connection.
const SSHD_PATIENCE: Duration = Duration::from_secs(10);

/// Run by `unshare` in a host's namespace: `$1` is the host's root folder, `$2` its
/// sshd_config, `$3` its hostname. The bind mount stays in this mount namespace (propagation
/// private), which sshd and every session it starts share.
const SSHD_SCRIPT: &str = "mkdir -p /var/lib/faultline && mount --bind \"$1\" /var/lib/faultline \
     && hostname \"$3\" && exec /usr/sbin/sshd -D -e -f \"$2\"";

/// A set of fake SSH hosts; see the module documentation.
pub struct SshHosts {
    /// Each host's IPv4 address, e.g. `10.213.7.2`.
    pub addresses: Vec<String>,
    /// Each host's network namespace, `flh-TAG-I`.
    pub namespaces: Vec<String>,
    /// The client's private key (ed25519, 0600), authorized for root on every host.
    pub key: PathBuf,
    /// A known_hosts file listing every host's address with its host key.
    pub known_hosts: PathBuf,
    /// Per host: the folder bind-mounted over `/var/lib/faultline` for that host's sessions.
    pub roots: Vec<PathBuf>,
    /// The root namespace's address on the hosts' network.
    pub controller_ip: String,
    tag: String,
    /// The fixture's folder: client key, known_hosts, one `hostI/` per host.
    dir: PathBuf,
    /// The namespace holding the bridge.
    hub: String,
    /// The root namespace's end of the veth into the hub.
    link: String,
    /// Per host: host key, sshd_config, sshd.log, root/.
    host_dirs: Vec<PathBuf>,
    /// Per host: its sshd (the listener), while running.
    sshd: Vec<Option<Child>>,
}

/// Why this machine cannot run the fake hosts, if it cannot (for tests that skip then).
pub fn missing() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("the fake SSH hosts need root (network namespaces, mounts)".to_string());
    }
    if !Path::new(SSHD).is_file() {
        return Some(format!(
            "{SSHD} is missing (scripts/install-deps installs openssh-server)"
        ));
    }
    ["ip", "unshare", "ssh", "ssh-keygen"]
        .into_iter()
        .find(|program| !on_path(program))
        .map(|program| format!("`{program}` is not installed"))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

impl SshHosts {
    /// `count` hosts, each with a running sshd that accepts the fixture's key. `tag` (1 to 6
    /// characters of `[a-z0-9]`, unique among the fixtures alive at once) names the
    /// namespaces and interfaces; whatever an earlier, killed run left under the same tag is
    /// removed first. Panics (after removing what it made) if a host cannot be set up.
    pub fn create(count: usize, tag: &str) -> SshHosts {
        assert!(
            !tag.is_empty()
                && tag.len() <= 6
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "fake SSH hosts tag {tag:?}: 1 to 6 characters of [a-z0-9]"
        );
        assert!(
            (1..=200).contains(&count),
            "fake SSH hosts: 1 to 200 hosts, not {count}"
        );
        if let Some(why) = missing() {
            panic!("cannot create fake SSH hosts: {why}");
        }
        remove_leftovers(tag);
        let dir =
            std::env::temp_dir().join(format!("faultline-ssh-hosts-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // Built in place, so that a panic half-way drops (and removes) what exists so far.
        let mut hosts = SshHosts {
            addresses: Vec::new(),
            namespaces: Vec::new(),
            key: dir.join("client_key"),
            known_hosts: dir.join("known_hosts"),
            roots: Vec::new(),
            controller_ip: String::new(),
            tag: tag.to_string(),
            hub: format!("{NS_PREFIX}{tag}-hub"),
            link: format!("{LINK_PREFIX}{tag}"),
            dir,
            host_dirs: Vec::new(),
            sshd: Vec::new(),
        };
        hosts.build(count);
        hosts
    }

    fn build(&mut self, count: usize) {
        for d in [PRIVSEP_DIR, HOST_ROOT] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("cannot create {d}: {e}"));
        }
        fs::set_permissions(PRIVSEP_DIR, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot chmod {PRIVSEP_DIR}: {e}"));
        keygen(&self.key, "faultline-test-client");
        let authorized_keys = self.dir.join("authorized_keys");
        fs::write(&authorized_keys, format!("{}\n", public_key(&self.key)))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", authorized_keys.display()));

        let third = self.build_hub();
        let hub = self.hub.clone();
        for i in 0..count {
            let ns = format!("{NS_PREFIX}{}-{i}", self.tag);
            self.namespaces.push(ns.clone());
            let address = format!("{}.{}.{third}.{}", RANGE[0], RANGE[1], i + 2);
            let host_dir = self.dir.join(format!("host{i}"));
            let root = host_dir.join("root");
            fs::create_dir_all(&root)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
            self.host_dirs.push(host_dir.clone());
            self.roots.push(root);
            self.addresses.push(address.clone());
            self.sshd.push(None);

            run("ip", &["netns", "add", &ns]);
            let port = format!("h{i}");
            run(
                "ip",
                &[
                    "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            );
            run("ip", &["-n", &hub, "link", "set", &port, "master", "br0"]);
            run("ip", &["-n", &hub, "link", "set", &port, "up"]);
            let cidr = format!("{address}/24");
            run("ip", &["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);

            let host_key = host_dir.join("host_key");
            keygen(&host_key, &format!("faultline-test-host{i}"));
            let config = sshd_config(&address, &host_key, &authorized_keys);
            let config_path = host_dir.join("sshd_config");
            fs::write(&config_path, config)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
        }
        let known: String = self
            .addresses
            .iter()
            .zip(&self.host_dirs)
            .map(|(address, d)| format!("{address} {}\n", public_key(&d.join("host_key"))))
            .collect();
        fs::write(&self.known_hosts, known)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.known_hosts.display()));

        // Start them all, then wait for each: the sshds come up side by side.
        for i in 0..count {
            self.spawn_sshd(i);
        }
        for i in 0..count {
            self.wait_for_sshd(i);
        }
    }

    /// The hub namespace with its bridge, and the root namespace's veth into it with
    /// `controller_ip` on a free /24; returns that /24's third octet.
    fn build_hub(&mut self) -> u8 {
        // The /24 is claimed (the address added and the link up, so that its route shows)
        // under the lock, so that two fixtures being built at once never take the same one.
        let _lock = subnet_lock();
        let third = free_subnet(&self.tag);
        self.controller_ip = format!("{}.{}.{third}.1", RANGE[0], RANGE[1]);
        let hub = self.hub.as_str();
        let link = self.link.as_str();
        run("ip", &["netns", "add", hub]);
        run("ip", &["-n", hub, "link", "set", "lo", "up"]);
        run("ip", &["-n", hub, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", hub, "link", "set", "br0", "up"]);
        run(
            "ip",
            &[
                "link", "add", link, "type", "veth", "peer", "name", "ctl", "netns", hub,
            ],
        );
        let cidr = format!("{}/24", self.controller_ip);
        run("ip", &["addr", "add", &cidr, "dev", link]);
        run("ip", &["link", "set", link, "up"]);
        run("ip", &["-n", hub, "link", "set", "ctl", "master", "br0"]);
        run("ip", &["-n", hub, "link", "set", "ctl", "up"]);
        third
    }

    /// Starts host `i`'s sshd (in its own process group, its output appended to its log).
    fn spawn_sshd(&mut self, i: usize) {
        let host_dir = &self.host_dirs[i];
        let log_path = host_dir.join("sshd.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let log_too = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot reopen {}: {e}", log_path.display()));
        let ns = self.namespaces[i].as_str();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(["unshare", "--mount", "--uts", "--propagation", "private"])
            .args(["sh", "-c", SSHD_SCRIPT, "sh"])
            .arg(&self.roots[i])
            .arg(host_dir.join("sshd_config"))
            .arg(ns)
            .stdin(Stdio::null())
            .stdout(log_too)
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the sshd of fake host {i} ({ns}): {e}"));
        self.sshd[i] = Some(child);
    }

    /// Waits until host `i`'s sshd lets the fixture's key in; panics with its log if it does
    /// not within [`SSHD_PATIENCE`].
    fn wait_for_sshd(&mut self, i: usize) {
        let deadline = Instant::now() + SSHD_PATIENCE;
        loop {
            let exited = self.sshd[i]
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "the sshd of fake host {i} ({}) exited ({status}) before accepting \
                     connections; its log:\n{}",
                    self.addresses[i],
                    self.sshd_log(i)
                );
            }
            let out = self.ssh(i, "true");
            if out.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                let log = self.sshd_log(i);
                let hint = if log.contains("account is locked") {
                    "\n(root's password field in /etc/shadow starts with '!', and sshd with \
                     UsePAM no refuses a locked account even with a key: `usermod -p '*' root` \
                     unlocks it without giving it a password)"
                } else {
                    ""
                };
                panic!(
                    "fake host {i} ({}) accepted no ssh within {SSHD_PATIENCE:?}: {}\nits sshd \
                     log:\n{log}{hint}",
                    self.addresses[i],
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops host `i`'s sshd: new connections to it are refused. Sessions already open (a
    /// ControlMaster's connection, commands running) and processes they started stay, as when
    /// a real host's sshd stops.
    pub fn stop_sshd(&mut self, i: usize) {
        if let Some(mut child) = self.sshd[i].take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Starts host `i`'s sshd again (after [`SshHosts::stop_sshd`]) and waits until it
    /// accepts connections. Does nothing if it runs.
    pub fn start_sshd(&mut self, i: usize) {
        if self.sshd[i].is_none() {
            self.spawn_sshd(i);
            self.wait_for_sshd(i);
        }
    }

    /// What host `i`'s sshd has logged (LogLevel VERBOSE): connections, accepted keys,
    /// sessions, refusals.
    pub fn sshd_log(&self, i: usize) -> String {
        fs::read_to_string(self.host_dirs[i].join("sshd.log")).unwrap_or_default()
    }

    /// `root@A1,root@A2,...`: every host, as `--hosts` takes them.
    pub fn hosts_arg(&self) -> String {
        self.addresses
            .iter()
            .map(|a| format!("root@{a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The options `ssh` needs to reach the hosts with the fixture's key and known_hosts
    /// (and nothing from the user's ssh config or agent).
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-F".to_string(),
            "/dev/null".to_string(),
            "-i".to_string(),
            self.key.display().to_string(),
            "-o".to_string(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            "-o".to_string(),
            "BatchMode=yes".to_string(),
            "-o".to_string(),
            "IdentitiesOnly=yes".to_string(),
            "-o".to_string(),
            "ConnectTimeout=5".to_string(),
        ]
    }

    /// Runs `cmd` (a shell command line) as root on host `i` over SSH.
    pub fn ssh(&self, i: usize, cmd: &str) -> Output {
        Command::new("ssh")
            .args(self.ssh_options())
            .arg(format!("root@{}", self.addresses[i]))
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh (is openssh-client installed?)")
    }

    /// `nft list ruleset` in host `i`'s network namespace.
    pub fn nft_ruleset(&self, i: usize) -> String {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.namespaces[i],
                "nft",
                "list",
                "ruleset",
            ],
        )
    }

    /// A known_hosts file like [`SshHosts::known_hosts`] except that host 0's address is
    /// listed with another (freshly generated) host key: ssh with it and
    /// StrictHostKeyChecking=yes fails on host 0 with "Host key verification failed".
    pub fn wrong_known_hosts(&self) -> PathBuf {
        let impostor = self.dir.join("impostor_host_key");
        if !impostor.exists() {
            keygen(&impostor, "faultline-test-impostor");
        }
        let text: String = self
            .addresses
            .iter()
            .zip(&self.host_dirs)
            .enumerate()
            .map(|(i, (address, d))| {
                let key = if i == 0 {
                    impostor.clone()
                } else {
                    d.join("host_key")
                };
                format!("{address} {}\n", public_key(&key))
            })
            .collect();
        let path = self.dir.join("wrong_known_hosts");
        fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Every process in host `i`'s network namespace: its sshd, the sessions open on it and
    /// whatever they started (nodes included).
    pub fn processes_in(&self, i: usize) -> Vec<i32> {
        processes_in_netns(&self.namespaces[i])
    }

    /// The processes in host `i`'s namespace other than sshd's own (its listener and the
    /// sessions' sshd processes), as `PID COMMAND LINE`: what a run left on the host.
    pub fn leftovers_in(&self, i: usize) -> Vec<String> {
        self.processes_in(i)
            .into_iter()
            .filter(|pid| {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                !matches!(comm.trim(), "sshd" | "sshd-session" | "sshd-auth")
            })
            .map(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                format!(
                    "{pid} {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ").trim()
                )
            })
            .collect()
    }
}

impl Drop for SshHosts {
    fn drop(&mut self) {
        for child in self.sshd.iter_mut().flatten() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            kill_all_in(ns);
        }
        // Deleting the link first: a namespace goes away asynchronously, and the controller's
        // address (the claim on the /24) with it only then.
        quiet("ip", &["link", "del", &self.link]);
        for ns in self.namespaces.iter().chain(std::iter::once(&self.hub)) {
            quiet("ip", &["netns", "del", ns]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The sshd_config of a host listening on `address`.
fn sshd_config(address: &str, host_key: &Path, authorized_keys: &Path) -> String {
    format!(
        "# faultline test fixture: a fake SSH host\n\
         ListenAddress {address}\n\
         Port 22\n\
         HostKey \"{}\"\n\
         PidFile none\n\
         AuthorizedKeysFile \"{}\"\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes no\n\
         MaxSessions 50\n\
         MaxStartups 100\n\
         LogLevel VERBOSE\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         UseDNS no\n\
         Subsystem sftp internal-sftp\n",
        host_key.display(),
        authorized_keys.display()
    )
}

/// A new ed25519 key pair at `path` and `path.pub`, without passphrase.
fn keygen(path: &Path, comment: &str) {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("pub"));
    let file = path.to_str().expect("the fixture's paths are UTF-8");
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file],
    );
}

/// `ssh-ed25519 BASE64` of the key pair at `path` (from `path.pub`, without its comment).
fn public_key(path: &Path) -> String {
    let pub_path = path.with_extension("pub");
    let text = fs::read_to_string(&pub_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", pub_path.display()));
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `program ARGS`, returning its standard output; panics with its stderr if it fails.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `program ARGS` for cleaning up: errors (already gone, ...) are ignored.
fn quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The processes whose network namespace is `/run/netns/NS`'s (none if it does not exist).
fn processes_in_netns(ns: &str) -> Vec<i32> {
    let Ok(meta) = fs::metadata(Path::new("/run/netns").join(ns)) else {
        return Vec::new();
    };
    let wanted = PathBuf::from(format!("net:[{}]", meta.ino()));
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1 && pid != me)
        .filter(|pid| fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|l| l == wanted))
        .collect()
}

/// Kills every process in namespace `ns` (SIGKILL, again until none is left, for at most 5 s:
/// a process may fork while it is being killed).
fn kill_all_in(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = processes_in_netns(ns);
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes what a run that died without dropping its fixture left under `tag`: the
/// processes in its namespaces, the namespaces, the veth, and folders of processes gone.
fn remove_leftovers(tag: &str) {
    let prefix = format!("{NS_PREFIX}{tag}-");
    let stale: Vec<String> = fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| name.starts_with(&prefix))
        .collect();
    for ns in &stale {
        kill_all_in(ns);
    }
    quiet("ip", &["link", "del", &format!("{LINK_PREFIX}{tag}")]);
    for ns in &stale {
        quiet("ip", &["netns", "del", ns]);
    }
    let dir_prefix = format!("faultline-ssh-hosts-{tag}-");
    for e in fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let owner_gone = name
            .strip_prefix(&dir_prefix)
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists());
        if owner_gone {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn subnet_lock() -> nix::fcntl::Flock<fs::File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(SUBNET_LOCK)
        .unwrap_or_else(|e| panic!("cannot open {SUBNET_LOCK}: {e}"));
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("cannot lock {SUBNET_LOCK}: {e}"))
}

/// A third octet in 10.213.0.0/16 whose /24 no address or route of this machine overlaps,
/// starting from one derived from `tag` so that fixtures spread out.
fn free_subnet(tag: &str) -> u8 {
    let used = used_prefixes();
    let start = tag
        .bytes()
        .fold(11u32, |h, c| h.wrapping_mul(31).wrapping_add(u32::from(c)));
    for k in 0..250u32 {
        let third = (start.wrapping_add(k) % 250) as u8;
        let candidate = u32::from_be_bytes([RANGE[0], RANGE[1], third, 0]);
        if !used
            .iter()
            .any(|&(net, len)| overlaps(candidate, 24, net, len))
        {
            return third;
        }
    }
    panic!(
        "no free /24 left in {}.{}.0.0/16 for fake SSH hosts",
        RANGE[0], RANGE[1]
    );
}

/// The IPv4 prefixes of this machine's addresses (`ip -4 -o addr`) and routes (`ip -4 route
/// show table all`, default routes left out: a /24 is more specific and takes nothing from
/// them).
fn used_prefixes() -> Vec<(u32, u8)> {
    const TYPES: [&str; 10] = [
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "throw",
        "unreachable",
        "prohibit",
        "blackhole",
        "nat",
        "anycast",
    ];
    let addresses = run("ip", &["-4", "-o", "addr", "show"]);
    let routes = run("ip", &["-4", "route", "show", "table", "all"]);
    let mut used: Vec<(u32, u8)> = addresses
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|&w| w == "inet")?;
            parse_prefix(words.next()?)
        })
        .collect();
    used.extend(routes.lines().filter_map(|line| {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_some_and(|w| TYPES.contains(w)) {
            words.next();
        }
        parse_prefix(words.next()?)
    }));
    used
}

/// `A.B.C.D/LEN` or `A.B.C.D` (a /32) as (address, length); None for anything else
/// (`default`, ...).
fn parse_prefix(s: &str) -> Option<(u32, u8)> {
    let (address, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().ok()?),
        None => (s, 32),
    };
    let ip: std::net::Ipv4Addr = address.parse().ok()?;
    (len <= 32).then_some((u32::from(ip), len))
}

fn overlaps(a: u32, a_len: u8, b: u32, b_len: u8) -> bool {
    let len = a_len.min(b_len);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    a & mask == b & mask
}
