//! The local process driver: every instance is a child process of the control plane's machine,
//! with its own directory under the driver's base directory.
//!
//! Layout of `base_dir/<id>/` (directory 0700, files 0600):
//! - the spec's files (config, password file, keys file, admin token), replaced on every start;
//! - `instance.log`: stdout and stderr of the process (appended; rotated once to `instance.log.1`
//!   past 16 MiB at start);
//! - `state.json`: what the driver must remember across a control-plane restart ([`StateFile`]).
//!
//! The process writes its output straight into `instance.log` (no pipe to the control plane), so it
//! keeps running when the control plane dies; the ready line is found by reading the log.
//!
//! Every process carries `REFRACT_INSTANCE_DIR=<its directory>` in its environment, so that one
//! the driver started but never recorded (the control plane died between spawn and `state.json`)
//! is still found — in `/proc` — and stopped: before every start, on every stop and remove, and
//! in `list`. When the driver runs as root with [`LocalProcessDriver::run_as`], processes run as
//! that unprivileged user, which owns the instance directory and the spec's files.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::driver::{is_safe_name, BoxFuture};
use crate::process;
use crate::user::{self, ServiceUser};
use crate::RuntimeError;
use crate::{Driver, InstanceHandle, InstanceKind, InstanceSpec, InstanceStatus, Readiness};

/// Name of the output log in an instance directory.
pub const LOG_FILE: &str = "instance.log";
/// Name of the driver's state file in an instance directory.
pub const STATE_FILE: &str = "state.json";
/// Environment variable naming the instance directory in every process the local driver starts
/// (how a process it never recorded is found again).
pub const INSTANCE_DIR_ENV: &str = "REFRACT_INSTANCE_DIR";

const ROTATED_LOG_FILE: &str = "instance.log.1";
const STATE_TMP_FILE: &str = "state.json.tmp";
const ROTATE_LOG_BYTES: u64 = 16 << 20;
/// How far back from the end of the log `logs` reads.
const LOG_TAIL_BYTES: u64 = 256 << 10;
/// How much of the log one readiness check reads.
const SCAN_CHUNK_BYTES: u64 = 1 << 20;
const POLL: Duration = Duration::from_millis(20);
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long a stray process (one `state.json` does not name) gets after SIGTERM.
const STRAY_GRACE: Duration = Duration::from_secs(2);
const TCP_PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// Variables of the control plane's environment that instances inherit; everything else (such as
/// the secret store's key) is withheld.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// What `state.json` holds: enough to find, identify and report a process after a control-plane
/// restart. No secrets (arguments never hold any).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateFile {
    pid: u32,
    /// Start time of the process in clock ticks since boot (Linux), to tell it from a later
    /// process that reuses the pid.
    #[serde(default)]
    proc_start_ticks: Option<u64>,
    program: PathBuf,
    args: Vec<String>,
    kind: InstanceKind,
    started_at: DateTime<Utc>,
    readiness: Readiness,
    /// Offset of `instance.log` where this start's output begins (the ready line is searched from here).
    log_offset: u64,
    endpoint: Option<String>,
    memory_limit_mb: Option<u64>,
    exit: Option<ExitRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExitRecord {
    code: Option<i32>,
    signal: Option<i32>,
    at: DateTime<Utc>,
}

impl ExitRecord {
    fn status(&self) -> InstanceStatus {
        InstanceStatus::Exited {
            code: self.code,
            signal: self.signal,
            at: self.at,
        }
    }
}

/// One instance the driver has started (`owned`: its exit status is collected by a task) or
/// adopted from a `state.json` written before a restart.
struct Instance {
    dir: PathBuf,
    owned: bool,
    live: Mutex<Live>,
}

struct Live {
    state: StateFile,
    /// Where in the log the ready-line search goes on.
    scan_pos: u64,
}

impl Instance {
    fn new(dir: PathBuf, state: StateFile, owned: bool) -> Self {
        let scan_pos = state.log_offset;
        Instance {
            dir,
            owned,
            live: Mutex::new(Live { state, scan_pos }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot(&self) -> StateFile {
        self.lock().state.clone()
    }

    /// Records the end of the process (first report wins) and persists it.
    fn record_exit(&self, code: Option<i32>, signal: Option<i32>) -> InstanceStatus {
        let mut live = self.lock();
        let exit = live.state.exit.get_or_insert_with(|| ExitRecord {
            code,
            signal,
            at: Utc::now(),
        });
        let status = exit.status();
        if let Err(err) = persist(&self.dir, &live.state) {
            tracing::warn!(error = %err, "cannot record the exit of an instance");
        }
        status
    }

    fn record_endpoint(&self, endpoint: String) -> InstanceStatus {
        let mut live = self.lock();
        live.state.endpoint = Some(endpoint.clone());
        if let Err(err) = persist(&self.dir, &live.state) {
            tracing::warn!(error = %err, "cannot record the endpoint of an instance");
        }
        InstanceStatus::Running { endpoint }
    }

    /// Reads the log from where the last search stopped and returns the endpoint of the first
    /// ready line, if one has been written.
    fn scan_ready_line(&self, prefix: &str) -> Option<String> {
        let mut live = self.lock();
        let mut file = File::open(self.dir.join(LOG_FILE)).ok()?;
        let len = file.metadata().ok()?.len();
        if len < live.scan_pos {
            // The log was rotated or truncated under us: search all of it.
            live.scan_pos = 0;
        }
        while live.scan_pos < len {
            file.seek(SeekFrom::Start(live.scan_pos)).ok()?;
            let mut chunk = Vec::new();
            (&mut file)
                .take(SCAN_CHUNK_BYTES)
                .read_to_end(&mut chunk)
                .ok()?;
            let complete = match chunk.iter().rposition(|&b| b == b'\n') {
                Some(last) => last + 1,
                // A line longer than a chunk is no ready line; skip it.
                None if chunk.len() as u64 == SCAN_CHUNK_BYTES => chunk.len(),
                None => return None, // a partial last line: look again later
            };
            for line in chunk[..complete].split(|&b| b == b'\n') {
                if let Some(rest) = line.strip_prefix(prefix.as_bytes()) {
                    let rest = String::from_utf8_lossy(rest);
                    if let Some(endpoint) = rest.split_whitespace().next() {
                        live.scan_pos += complete as u64;
                        return Some(endpoint.to_string());
                    }
                }
            }
            live.scan_pos += complete as u64;
        }
        None
    }
}

/// Writes `state.json` atomically (temporary file, then rename), unless another start of the same
/// id has replaced it since (a different pid or start time on disk).
fn persist(dir: &Path, state: &StateFile) -> Result<(), RuntimeError> {
    let path = dir.join(STATE_FILE);
    if let Some(on_disk) = read_state(&path) {
        if on_disk.pid != state.pid || on_disk.started_at != state.started_at {
            return Ok(());
        }
    }
    write_state(dir, state)
}

fn write_state(dir: &Path, state: &StateFile) -> Result<(), RuntimeError> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(STATE_TMP_FILE);
    let json = serde_json::to_vec_pretty(state).map_err(|err| RuntimeError::Io {
        action: "encode",
        path: path.clone(),
        source: io::Error::other(err),
    })?;
    write_private_file(&tmp, &json, 0o600)?;
    fs::rename(&tmp, &path).map_err(RuntimeError::io("replace", &path))
}

fn read_state(path: &Path) -> Option<StateFile> {
    let bytes = fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(state) => Some(state),
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "ignoring an unreadable state file");
            None
        }
    }
}

/// Replaces `path` with a new file of `mode` holding `contents`, owned by this process. The old
/// file is removed first and the new one created exclusively, so a symlink planted at `path` is
/// never followed.
fn write_private_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), RuntimeError> {
    user::write_file_as(path, contents, mode, None)
}

fn create_private_dir(path: &Path) -> Result<(), RuntimeError> {
    fs::create_dir_all(path).map_err(RuntimeError::io("create directory", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(RuntimeError::io("set permissions of", path))
}

/// Opens the instance log for appending, after moving it to `instance.log.1` if it grew too large.
fn open_log(dir: &Path) -> Result<File, RuntimeError> {
    let path = dir.join(LOG_FILE);
    if fs::metadata(&path).is_ok_and(|meta| meta.len() > ROTATE_LOG_BYTES) {
        fs::rename(&path, dir.join(ROTATED_LOG_FILE)).map_err(RuntimeError::io("rotate", &path))?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(RuntimeError::io("open", &path))
}

fn append_log_line(dir: &Path, line: &str) {
    let path = dir.join(LOG_FILE);
    let written = OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    if let Err(err) = written {
        tracing::debug!(path = %path.display(), error = %err, "cannot append to an instance log");
    }
}

/// Runs instances as local processes, one directory per instance under `base_dir`:
/// `base_dir/<id>/` (0700) holds the spec's files (0600 by default), `instance.log` (stdout and
/// stderr, written by the process itself) and `state.json` (pid, start time, endpoint, exit), from
/// which a new driver adopts the instance after a control-plane restart. See `docs/runtime.md`.
///
/// Instances survive the driver (and the control plane): they run in their own process group,
/// are not killed when the driver is dropped, and a new driver on the same `base_dir` adopts them.
pub struct LocalProcessDriver {
    base_dir: PathBuf,
    /// Who instances run as (this process's user unless [`LocalProcessDriver::run_as`]).
    user: ServiceUser,
    instances: Mutex<HashMap<String, Arc<Instance>>>,
    /// Serializes `start` and `remove`, so that two starts of one id cannot both launch.
    ops: tokio::sync::Mutex<()>,
}

/// Where a program the instance user cannot reach is linked or copied to (as root only).
pub const RUNNABLE_COPIES: &str = "/var/lib/refract/bin";

impl LocalProcessDriver {
    /// `program`, or a copy of it the instance user can run: a binary under a directory that
    /// user cannot search (a checkout under `/root`, as root) is hard-linked (else copied) once
    /// into [`RUNNABLE_COPIES`], which it can.
    fn runnable_program(&self, program: &Path) -> Result<PathBuf, RuntimeError> {
        let Some(reason) = user::access_reason(program, &self.user, 1) else {
            return Ok(program.to_path_buf());
        };
        let refuse = |reason: String| {
            RuntimeError::User(format!(
                "cannot start {} as user {}: {reason} (install refract where other users can run it, e.g. /usr/local/bin)",
                program.display(),
                self.user.name
            ))
        };
        let meta = fs::metadata(program).map_err(|_| refuse(reason.clone()))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let name = program
            .file_name()
            .map_or_else(|| "program".into(), |n| n.to_string_lossy().into_owned());
        // Outside the data directory, which stays private: only switching (root) gets here.
        let bin = Path::new(RUNNABLE_COPIES).to_path_buf();
        for dir in [bin.parent().unwrap_or(&bin), &bin] {
            fs::create_dir_all(dir).map_err(RuntimeError::io("create", dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o711))
                .map_err(RuntimeError::io("set the mode of", dir))?;
        }
        let copy = bin.join(format!("{name}-{}-{mtime}", meta.len()));
        if !copy.exists() {
            let tmp = bin.join(format!(".{name}.{}", std::process::id()));
            let _ = fs::remove_file(&tmp);
            if fs::hard_link(program, &tmp).is_err() {
                fs::copy(program, &tmp).map_err(RuntimeError::io("copy", program))?;
            }
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
                .map_err(RuntimeError::io("set the mode of", &tmp))?;
            fs::rename(&tmp, &copy).map_err(RuntimeError::io("rename", &tmp))?;
        }
        match user::access_reason(&copy, &self.user, 1) {
            None => Ok(copy),
            Some(_) => Err(refuse(reason)),
        }
    }

    /// A driver keeping its instances under `base_dir` (created, mode 0700, at the first start).
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        LocalProcessDriver {
            base_dir: base_dir.into(),
            user: user::current_user(),
            instances: Mutex::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs every instance as `user` (see [`crate::user::engine_user`]): when it must be switched
    /// to (this process is root), each instance directory (0700) and the spec's files (0600 unless
    /// the spec says otherwise) are given to it and the process runs with its uid and gid and no
    /// supplementary groups (what `setpriv --reuid --regid --clear-groups` does). The log and
    /// `state.json` stay the driver's (0600): an instance cannot rewrite what the driver
    /// remembers about it. The user must be able to reach the base directory and execute the
    /// program; `start` fails with a message naming the directory that blocks it otherwise.
    pub fn run_as(mut self, user: ServiceUser) -> Self {
        self.user = user;
        self
    }

    /// The user instances run as.
    pub fn user(&self) -> &ServiceUser {
        &self.user
    }

    /// The directory holding one directory per instance.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The directory of instance `id` (its files, log and state), whether or not it exists.
    pub fn instance_dir(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        check_id(id)?;
        Ok(self.base_dir.join(id))
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Instance>>> {
        self.instances
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The instance known in memory, or adopted from its `state.json`.
    fn lookup(&self, id: &str) -> Result<Option<Arc<Instance>>, RuntimeError> {
        check_id(id)?;
        if let Some(instance) = self.map().get(id) {
            return Ok(Some(Arc::clone(instance)));
        }
        let dir = self.base_dir.join(id);
        let Some(state) = read_state(&dir.join(STATE_FILE)) else {
            return Ok(None);
        };
        let adopted = Arc::new(Instance::new(dir, state, false));
        let mut map = self.map();
        Ok(Some(Arc::clone(
            map.entry(id.to_string()).or_insert(adopted),
        )))
    }

    /// Observes an instance now: exit, then readiness.
    async fn observe(&self, instance: &Instance) -> InstanceStatus {
        let state = instance.snapshot();
        if let Some(exit) = &state.exit {
            return exit.status();
        }
        // An owned child's exit is recorded by its wait task; an adopted process is checked here.
        if !instance.owned
            && !process::is_our_process(state.pid, &state.program, state.proc_start_ticks)
        {
            return instance.record_exit(None, None);
        }
        if let Some(endpoint) = state.endpoint {
            return InstanceStatus::Running { endpoint };
        }
        match &state.readiness {
            Readiness::ReadyLine { prefix } => match instance.scan_ready_line(prefix) {
                Some(endpoint) => instance.record_endpoint(endpoint),
                None => InstanceStatus::Starting,
            },
            Readiness::TcpPort(port) => {
                let connect = TcpStream::connect(("127.0.0.1", *port));
                match tokio::time::timeout(TCP_PROBE_TIMEOUT, connect).await {
                    // Someone accepts on the port: ready only when it is this instance (another
                    // process holding the port would answer for a server that failed to bind).
                    Ok(Ok(_)) if process::group_listens_on(state.pid, *port) != Some(false) => {
                        instance.record_endpoint(format!("127.0.0.1:{port}"))
                    }
                    _ => InstanceStatus::Starting,
                }
            }
        }
    }

    /// Polls until the instance is no longer alive or `limit` passes.
    async fn wait_exit(&self, instance: &Instance, limit: Duration) -> InstanceStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let status = self.observe(instance).await;
            if !status.is_alive() || tokio::time::Instant::now() >= deadline {
                return status;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the process `state.json` names.
    async fn stop_recorded(
        &self,
        id: &str,
        instance: &Instance,
        grace: Duration,
    ) -> Result<InstanceStatus, RuntimeError> {
        let status = self.observe(instance).await;
        if !status.is_alive() {
            return Ok(status);
        }
        let pid = instance.snapshot().pid;
        let signal_error = |source| RuntimeError::Signal {
            id: id.to_string(),
            pid,
            source,
        };
        // SIGTERM to the leader only: servers such as postgres stop their own children.
        process::send_signal(pid, libc::SIGTERM, false).map_err(signal_error)?;
        let mut status = self.wait_exit(instance, grace).await;
        if status.is_alive() {
            tracing::warn!(
                id,
                pid,
                "instance did not stop within its grace period; killing it"
            );
            process::send_signal(pid, libc::SIGKILL, true).map_err(signal_error)?;
            status = self.wait_exit(instance, KILL_WAIT).await;
        }
        if !status.is_alive() && process::group_exists(pid) {
            // Children left behind by the leader (the group id is the leader's pid).
            process::send_signal(pid, libc::SIGKILL, true).map_err(signal_error)?;
        }
        Ok(status)
    }

    /// Gives the instance directory and what an earlier run left in it (a lock file, a cache) to
    /// the instance's user; the driver's own log and state stay the driver's.
    fn give_instance_dir(&self, dir: &Path) -> Result<(), RuntimeError> {
        if !self.user.switch {
            return Ok(());
        }
        user::give(dir, &self.user)?;
        let entries = fs::read_dir(dir).map_err(RuntimeError::io("read directory", dir))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let ours = [LOG_FILE, ROTATED_LOG_FILE, STATE_FILE, STATE_TMP_FILE]
                .iter()
                .any(|n| name.as_os_str() == *n);
            if !ours {
                user::give(&entry.path(), &self.user)?;
            }
        }
        Ok(())
    }

    /// The canonical base directory (what the processes' `INSTANCE_DIR_ENV` starts with).
    fn canonical_base(&self) -> Option<PathBuf> {
        fs::canonicalize(&self.base_dir).ok()
    }

    /// Live processes started by this driver (or an earlier one on the same base directory), by
    /// instance id: found in `/proc` by their working directory and `INSTANCE_DIR_ENV`.
    fn marked_processes(&self) -> HashMap<String, Vec<u32>> {
        let mut out: HashMap<String, Vec<u32>> = HashMap::new();
        let Some(base) = self.canonical_base() else {
            return out;
        };
        for (pid, dir) in process::processes_marked(&base, INSTANCE_DIR_ENV) {
            let dir = Path::new(&dir);
            if dir.parent() != Some(base.as_path()) {
                continue;
            }
            if let Some(id) = dir.file_name().and_then(|n| n.to_str()) {
                out.entry(id.to_string()).or_default().push(pid);
            }
        }
        out
    }

    /// The pid `state.json` names, when that process is alive.
    async fn recorded_alive_pid(&self, id: &str) -> Option<u32> {
        let instance = self.lookup(id).ok()??;
        if self.observe(&instance).await.is_alive() {
            Some(instance.snapshot().pid)
        } else {
            None
        }
    }

    /// Stops every process of instance `id` but the one `state.json` names while it is alive
    /// (and the members of its process group).
    /// The caller holds `ops`, so no start is between spawn and recording its process.
    async fn reap_strays_locked(&self, id: &str) {
        let Some(pids) = self.marked_processes().remove(id) else {
            return;
        };
        let recorded = self.recorded_alive_pid(id).await;
        // The recorded process and its own children (its process group: a server's forks).
        let strays: Vec<u32> = pids
            .into_iter()
            .filter(|&pid| recorded.is_none_or(|r| pid != r && process::pgid(pid) != Some(r)))
            .collect();
        self.kill_strays(id, &strays).await;
    }

    /// [`Self::reap_strays_locked`] for every instance under the base directory.
    async fn reap_all_strays(&self) {
        let found = self.marked_processes();
        if found.is_empty() {
            return;
        }
        let _serial = self.ops.lock().await;
        for id in found.keys() {
            if is_safe_name(id) {
                self.reap_strays_locked(id).await;
            }
        }
    }

    /// SIGTERM to each stray's process group (each leads its own), up to [`STRAY_GRACE`], then
    /// SIGKILL; waits until they are gone.
    async fn kill_strays(&self, id: &str, strays: &[u32]) {
        if strays.is_empty() {
            return;
        }
        tracing::warn!(
            id,
            pids = ?strays,
            "stopping processes of an instance that its state file does not name (left by a control plane that died while starting it)"
        );
        for &pid in strays {
            let _ = process::send_signal(pid, libc::SIGTERM, process::group_exists(pid));
        }
        let deadline = tokio::time::Instant::now() + STRAY_GRACE;
        while strays.iter().any(|&pid| process::is_alive(pid))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(POLL).await;
        }
        for &pid in strays {
            if process::is_alive(pid) || process::group_exists(pid) {
                let _ = process::send_signal(pid, libc::SIGKILL, process::group_exists(pid));
                let _ = process::send_signal(pid, libc::SIGKILL, false);
            }
        }
        let deadline = tokio::time::Instant::now() + KILL_WAIT;
        while strays.iter().any(|&pid| process::is_alive(pid))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(POLL).await;
        }
    }

    fn tail_log(&self, id: &str, tail_lines: usize) -> String {
        if !is_safe_name(id) || tail_lines == 0 {
            return String::new();
        }
        let path = self.base_dir.join(id).join(LOG_FILE);
        let Ok(mut file) = File::open(&path) else {
            return String::new();
        };
        let len = file.metadata().map(|meta| meta.len()).unwrap_or(0);
        let start = len.saturating_sub(LOG_TAIL_BYTES);
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
            return String::new();
        }
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let mut lines: Vec<&str> = text.split('\n').collect();
        if start > 0 && !lines.is_empty() {
            lines.remove(0); // began mid-line
        }
        let first = lines.len().saturating_sub(tail_lines);
        lines[first..].join("\n")
    }
}

fn check_id(id: &str) -> Result<(), RuntimeError> {
    if is_safe_name(id) {
        Ok(())
    } else {
        Err(RuntimeError::InvalidId(id.to_string()))
    }
}

impl Driver for LocalProcessDriver {
    fn region(&self) -> &str {
        "local"
    }

    fn start<'a>(
        &'a self,
        spec: &'a InstanceSpec,
    ) -> BoxFuture<'a, Result<InstanceHandle, RuntimeError>> {
        Box::pin(async move {
            check_id(&spec.id)?;
            for file in &spec.files {
                if !is_safe_name(&file.name)
                    || [LOG_FILE, ROTATED_LOG_FILE, STATE_FILE, STATE_TMP_FILE]
                        .contains(&file.name.as_str())
                {
                    return Err(RuntimeError::InvalidFileName(file.name.clone()));
                }
            }
            let _serial = self.ops.lock().await;
            if let Some(existing) = self.lookup(&spec.id)? {
                if self.observe(&existing).await.is_alive() {
                    return Err(RuntimeError::AlreadyRunning(spec.id.clone()));
                }
            }

            if !self.base_dir.exists() {
                create_private_dir(&self.base_dir)?;
            }
            let dir = self.base_dir.join(&spec.id);
            create_private_dir(&dir)?;
            self.give_instance_dir(&dir)?;
            // Only the search bit for others on the base directory: nothing becomes listable.
            user::ensure_reachable(&self.base_dir, &dir, &self.user)?;
            let program = self.runnable_program(&spec.program)?;
            // A process of this directory that no state file names (the control plane died
            // between spawn and recording it) would run beside the new one: stop it first.
            self.reap_strays_locked(&spec.id).await;
            for file in &spec.files {
                user::write_file_as(
                    &dir.join(&file.name),
                    &file.contents,
                    file.mode,
                    self.user.owner(),
                )?;
            }
            let marker = fs::canonicalize(&dir).map_err(RuntimeError::io("resolve", &dir))?;

            let started_at = Utc::now();
            let mut log = open_log(&dir)?;
            let header = format!(
                "=== refract runtime: starting {} at {} ===\n",
                program.display(),
                started_at.to_rfc3339()
            );
            log.write_all(header.as_bytes())
                .map_err(RuntimeError::io("write", dir.join(LOG_FILE)))?;
            let log_offset = log
                .metadata()
                .map_err(RuntimeError::io("read", dir.join(LOG_FILE)))?
                .len();
            let stderr_log = log
                .try_clone()
                .map_err(RuntimeError::io("open", dir.join(LOG_FILE)))?;

            let mut command = Command::new(&program);
            command
                .args(&spec.args)
                .env_clear()
                .envs(
                    INHERITED_ENV
                        .iter()
                        .filter_map(|name| std::env::var_os(name).map(|value| (*name, value))),
                )
                .envs(spec.env.iter().map(|(k, v)| (k, v)))
                .env(INSTANCE_DIR_ENV, &marker)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(stderr_log))
                // Its own process group: a Ctrl-C of the control plane's terminal does not reach
                // it.
                .process_group(0)
                .kill_on_drop(false);
            if self.user.switch {
                // As root, std also drops the supplementary groups (setgroups(0)) before setuid.
                command.uid(self.user.uid).gid(self.user.gid);
            }
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(source) => {
                    append_log_line(
                        &dir,
                        &format!("=== refract runtime: cannot start: {source} ==="),
                    );
                    return Err(RuntimeError::Spawn {
                        program: program.clone(),
                        source,
                    });
                }
            };
            let Some(pid) = child.id() else {
                // Only possible once the child has been waited for, which nothing has done yet.
                return Err(RuntimeError::Spawn {
                    program: program.clone(),
                    source: io::Error::other("the process has no id"),
                });
            };

            let state = StateFile {
                pid,
                proc_start_ticks: process::start_ticks(pid),
                program: program.clone(),
                args: spec.args.clone(),
                kind: spec.kind,
                started_at,
                readiness: spec.readiness.clone(),
                log_offset,
                endpoint: None,
                memory_limit_mb: spec.memory_limit_mb,
                exit: None,
            };
            if let Err(err) = write_state(&dir, &state) {
                // Without a state file the process could not be found after a restart: do not
                // leave it.
                let _ = process::send_signal(pid, libc::SIGKILL, true);
                let _ = child.wait().await;
                return Err(err);
            }

            let instance = Arc::new(Instance::new(dir.clone(), state, true));
            self.map().insert(spec.id.clone(), Arc::clone(&instance));
            tracing::info!(id = %spec.id, pid, program = %program.display(), "instance started");

            tokio::spawn(async move {
                let (code, signal) = match child.wait().await {
                    Ok(status) => (status.code(), status.signal()),
                    Err(err) => {
                        tracing::warn!(pid, error = %err, "cannot collect the exit status of an instance");
                        (None, None)
                    }
                };
                let line = match (code, signal) {
                    (Some(code), _) => format!("=== refract runtime: exited with code {code} ==="),
                    (None, Some(signal)) => {
                        format!("=== refract runtime: killed by signal {signal} ===")
                    }
                    (None, None) => "=== refract runtime: exited ===".to_string(),
                };
                append_log_line(&instance.dir, &line);
                instance.record_exit(code, signal);
            });

            Ok(InstanceHandle {
                id: spec.id.clone(),
                kind: spec.kind,
                started_at,
            })
        })
    }

    fn stop<'a>(
        &'a self,
        id: &'a str,
        grace: Duration,
    ) -> BoxFuture<'a, Result<InstanceStatus, RuntimeError>> {
        Box::pin(async move {
            let status = match self.lookup(id)? {
                Some(instance) => self.stop_recorded(id, &instance, grace).await?,
                None => InstanceStatus::NotFound,
            };
            // Whatever else still runs in its directory (a process no state file names).
            let _serial = self.ops.lock().await;
            self.reap_strays_locked(id).await;
            Ok(status)
        })
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<InstanceStatus, RuntimeError>> {
        Box::pin(async move {
            match self.lookup(id)? {
                Some(instance) => Ok(self.observe(&instance).await),
                None => Ok(InstanceStatus::NotFound),
            }
        })
    }

    fn logs<'a>(&'a self, id: &'a str, tail_lines: usize) -> BoxFuture<'a, String> {
        Box::pin(async move { self.tail_log(id, tail_lines) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<(String, InstanceStatus)>, RuntimeError>> {
        Box::pin(async move {
            self.reap_all_strays().await;
            let mut ids: Vec<String> = self.map().keys().cloned().collect();
            match fs::read_dir(&self.base_dir) {
                Ok(entries) => {
                    for entry in entries {
                        let entry =
                            entry.map_err(RuntimeError::io("read directory", &self.base_dir))?;
                        let Ok(name) = entry.file_name().into_string() else {
                            continue;
                        };
                        if is_safe_name(&name) && entry.path().join(STATE_FILE).exists() {
                            ids.push(name);
                        }
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(RuntimeError::io("read directory", &self.base_dir)(err)),
            }
            ids.sort();
            ids.dedup();
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let status = self.status(&id).await?;
                if status != InstanceStatus::NotFound {
                    out.push((id, status));
                }
            }
            Ok(out)
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            check_id(id)?;
            let _serial = self.ops.lock().await;
            if let Some(instance) = self.lookup(id)? {
                if self.observe(&instance).await.is_alive() {
                    return Err(RuntimeError::StillRunning(id.to_string()));
                }
            }
            self.reap_strays_locked(id).await;
            self.map().remove(id);
            let dir = self.base_dir.join(id);
            match fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(err) => Err(RuntimeError::io("remove", dir)(err)),
            }
        })
    }
}
