//! Process checks and signals (Unix; `/proc` checks on Linux, skipped where `/proc` is absent):
//! what the local driver and the managed service's standalone servers know about a process.

use std::io;
use std::path::Path;

/// The start time of a process in clock ticks since boot (field 22 of `/proc/<pid>/stat`), which
/// with the pid identifies a process uniquely; `None` without `/proc` or for a gone process.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    stat_field(pid, 22)?.parse().ok()
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`).
pub(crate) fn pgid(pid: u32) -> Option<u32> {
    stat_field(pid, 5)?.parse().ok()
}

/// The parent of `pid` (field 4 of `/proc/<pid>/stat`).
fn parent(pid: u32) -> Option<u32> {
    stat_field(pid, 4)?.parse().ok()
}

fn is_zombie(pid: u32) -> bool {
    stat_field(pid, 3).is_some_and(|state| state == "Z" || state == "X")
}

/// Field `n` (counted from 1, as in proc(5); `n` ≥ 3) of `/proc/<pid>/stat`.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid …": comm may hold spaces and parentheses, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace()
        .nth(n.checked_sub(3)?)
        .map(str::to_string)
}

/// The live children of `parent` (none without `/proc`).
pub fn children(parent_pid: u32) -> Vec<u32> {
    pids()
        .filter(|&pid| parent(pid) == Some(parent_pid) && !is_zombie(pid))
        .collect()
}

/// Whether `pid` is alive and is still the process the driver started: the same start time when
/// one was recorded, else a command line (or executable) whose file name is the program's. Guards
/// against pid reuse after a control-plane restart; zombies count as dead.
pub(crate) fn is_our_process(pid: u32, program: &Path, recorded_ticks: Option<u64>) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists and may be signalled.
    let exists = unsafe { libc::kill(raw, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    if !Path::new("/proc/self/stat").exists() {
        return true; // no /proc: existence is all we can check
    }
    if is_zombie(pid) {
        return false;
    }
    match recorded_ticks {
        // (pid, start time) names one process for the machine's uptime: a reused pid has a later
        // start time. This also holds when the program exec'd another (a wrapper script's `exec`).
        Some(recorded) => start_ticks(pid) == Some(recorded),
        None => program_matches(pid, program),
    }
}

fn program_matches(pid: u32, program: &Path) -> bool {
    let Some(want) = program.file_name() else {
        return false;
    };
    if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        // argv[0]; some servers rewrite their title into one string ("redis-server *:6379"), so
        // only its first word counts.
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        let first = argv0.split(|&b| b == b' ').next().unwrap_or_default();
        let first = String::from_utf8_lossy(first);
        if Path::new(first.as_ref()).file_name() == Some(want) {
            return true;
        }
    }
    if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        let exe = exe.to_string_lossy();
        let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
        if Path::new(exe).file_name() == Some(want) {
            return true;
        }
    }
    false
}

/// Sends `signal` to the process `pid` (or to its process group when `group`).
/// A process that is already gone is not an error.
pub fn send_signal(pid: u32, signal: i32, group: bool) -> io::Result<()> {
    let raw = i32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if raw <= 1 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let target = if group { -raw } else { raw };
    // SAFETY: plain kill(2) on a pid (or process group) the driver started; no memory involved.
    if unsafe { libc::kill(target, signal) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Whether the process group led by `leader` (a started instance) holds a TCP socket
/// listening on `port`, read from `/proc/net/tcp{,6}` and the members' `/proc/<pid>/fd`; `None`
/// when `/proc` cannot tell (no `/proc`, or a member another user owns and we may not inspect).
/// A server that lost its port to another process must not look ready because that process
/// accepts connections (two servers given the same free port: the second one exits on its bind
/// error while the first answers for it).
pub(crate) fn group_listens_on(leader: u32, port: u16) -> Option<bool> {
    let mut listeners = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // "sl local_address rem_address st … uid timeout inode": state 0A is LISTEN.
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(&"0A"), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) {
                listeners.insert(format!("socket:[{inode}]"));
            }
        }
    }
    if !Path::new("/proc/self/fd").exists() {
        return None;
    }
    if listeners.is_empty() {
        return Some(false);
    }
    // `Some(true)` when `pid` holds one of the listeners, `None` when its descriptors are
    // not ours to read.
    let holds = |pid: u32| -> Option<bool> {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        Some(fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| listeners.contains(target.to_string_lossy().as_ref()))
        }))
    };
    // The leader first (a server listens itself); the other members only when it does not.
    let mut unreadable = false;
    for pid in std::iter::once(leader)
        .chain(pids().filter(|&pid| pid != leader && pgid(pid) == Some(leader)))
    {
        match holds(pid) {
            Some(true) => return Some(true),
            Some(false) => {}
            None => unreadable = true,
        }
    }
    if unreadable {
        None
    } else {
        Some(false)
    }
}

/// The ids of the processes alive now (the numeric entries of `/proc`; none without it).
fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
}

/// Whether a process group still has members.
pub(crate) fn group_exists(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    // SAFETY: signal 0 checks existence only.
    raw > 1 && unsafe { libc::kill(-raw, 0) } == 0
}

/// Whether `pid` is alive (exists and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 checks existence only.
    let exists = unsafe { libc::kill(raw, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

/// Every live process (but this one) whose working directory is under `base` (also a deleted
/// one) and whose environment holds `name=<value>`: `(pid, value)`. Reads `/proc` (Linux); empty
/// without it. Processes of other users are visible only to root.
pub(crate) fn processes_marked(base: &Path, name: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let base = base.as_os_str().as_encoded_bytes();
    let prefix = format!("{name}=");
    let mut out = Vec::new();
    for pid in pids() {
        if pid == me {
            continue;
        }
        // The cheap test first: the working directory (an engine never leaves its directory).
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        if !cwd.as_os_str().as_encoded_bytes().starts_with(base) {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let value = environ
            .split(|&b| b == 0)
            .find_map(|var| var.strip_prefix(prefix.as_bytes()));
        if let Some(value) = value {
            if is_alive(pid) {
                out.push((pid, String::from_utf8_lossy(value).into_owned()));
            }
        }
    }
    out
}
