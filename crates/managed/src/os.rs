//! Host details of running servers: the unprivileged user a server runs as, files and directories
//! owned by it, commands run as it, and the size of a data directory.
//!
//! When the control plane runs as root (CI containers), servers must not: PostgreSQL refuses to,
//! and a database server should never hold root's rights. Each engine then runs as its Debian
//! package's system user (`postgres`, `mysql`, `redis`, `mongodb`) or `nobody`, through
//! `setpriv --reuid --regid --clear-groups` (which `exec`s, so the driver's pid is the server's).
//! As any other user, servers run as that same user.

use std::ffi::{CStr, CString};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};

/// The user a server runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Whether commands must be wrapped to switch to it (the control plane is root).
    pub switch: bool,
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn passwd_entry(
    lookup: impl Fn(*mut libc::passwd, *mut libc::c_char, usize, *mut *mut libc::passwd) -> i32,
) -> Option<(String, u32, u32)> {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = lookup(&mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`, alive here.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .to_string();
    Some((name, pwd.pw_uid, pwd.pw_gid))
}

/// Looks up a user by name: `(name, uid, gid)`.
pub fn lookup_user(name: &str) -> Option<(String, u32, u32)> {
    let cname = CString::new(name).ok()?;
    // SAFETY: every pointer is valid for the call; getpwnam_r writes only into pwd and buf.
    passwd_entry(|pwd, buf, len, result| unsafe {
        libc::getpwnam_r(cname.as_ptr(), pwd, buf, len, result)
    })
}

/// The user this process runs as.
pub fn current_user() -> ServiceUser {
    // SAFETY: as above, for getpwuid_r; geteuid/getegid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let gid = unsafe { libc::getegid() };
    let name = passwd_entry(|pwd, buf, len, result| unsafe {
        libc::getpwuid_r(uid, pwd, buf, len, result)
    })
    .map(|(n, _, _)| n)
    .unwrap_or_else(|| uid.to_string());
    ServiceUser {
        name,
        uid,
        gid,
        switch: false,
    }
}

/// The user a server of an engine runs as: `preferred` (the package's system user) or `nobody`
/// when this process is root; this process's own user otherwise.
pub fn service_user(preferred: &str) -> anyhow::Result<ServiceUser> {
    if !is_root() {
        return Ok(current_user());
    }
    let (name, uid, gid) = lookup_user(preferred)
        .or_else(|| lookup_user("nobody"))
        .with_context(|| format!("running as root, but neither user {preferred} nor nobody exists to run the server as"))?;
    if uid == 0 {
        bail!("user {name} is root; servers must run as an unprivileged user");
    }
    Ok(ServiceUser {
        name,
        uid,
        gid,
        switch: true,
    })
}

/// How to run `program` as `user`: the program to start and the arguments that precede the
/// program's own (`setpriv … --` when switching).
pub fn wrap(
    user: &ServiceUser,
    setpriv: Option<&Path>,
    program: &Path,
) -> anyhow::Result<(PathBuf, Vec<String>)> {
    if !user.switch {
        return Ok((program.to_path_buf(), Vec::new()));
    }
    let setpriv = setpriv.context("running as root, servers run as an unprivileged user through setpriv (util-linux), which is not installed")?;
    Ok((
        setpriv.to_path_buf(),
        vec![
            format!("--reuid={}", user.uid),
            format!("--regid={}", user.gid),
            "--clear-groups".into(),
            "--".into(),
            program.display().to_string(),
        ],
    ))
}

/// Creates `path` (and missing parents) with mode 0700, owned by `user`.
pub fn create_owned_dir(path: &Path, user: &ServiceUser) -> anyhow::Result<()> {
    std::fs::create_dir_all(path)
        .with_context(|| format!("create directory {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("set permissions of {}", path.display()))?;
    if user.switch {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .with_context(|| format!("give {} to user {}", path.display(), user.name))?;
    }
    Ok(())
}

/// Replaces `path` with a new file of mode 0600 owned by `user` (created exclusively after
/// removing the old one, so a planted symlink is never followed).
pub fn write_owned_file(path: &Path, contents: &[u8], user: &ServiceUser) -> anyhow::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("replace {}", path.display()))),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    if user.switch {
        std::os::unix::fs::fchown(&f, Some(user.uid), Some(user.gid))
            .with_context(|| format!("give {} to user {}", path.display(), user.name))?;
    }
    f.write_all(contents)
        .with_context(|| format!("write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("write {}", path.display()))
}

/// Removes a directory tree; no error when it does not exist.
pub fn remove_dir(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("remove {}", path.display()))),
    }
}

/// Bytes used on disk under `path` (allocated blocks; symlinks not followed). Missing = 0.
pub fn disk_usage(path: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

/// Any user but the owner (for checks that must hold for every server's user): only the search
/// bit for others lets it through a directory.
pub fn any_other_user() -> ServiceUser {
    ServiceUser {
        name: "the servers' users".into(),
        uid: u32::MAX,
        gid: u32::MAX,
        switch: true,
    }
}

/// The first directory strictly above `dir` that `user` cannot search, if any (no change made).
pub fn blocked_ancestor(dir: &Path, user: &ServiceUser) -> Option<PathBuf> {
    let mut current = PathBuf::new();
    let parts: Vec<_> = dir.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        current.push(part);
        let Ok(meta) = std::fs::metadata(&current) else {
            return Some(current);
        };
        let mode = meta.permissions().mode();
        let ok = mode & 0o001 != 0
            || meta.uid() == user.uid
            || (meta.gid() == user.gid && mode & 0o010 != 0);
        if !ok {
            return Some(current);
        }
    }
    None
}

/// Makes sure `user` can walk down to `dir` when servers switch users: every directory from
/// `from` (inclusive) down to `dir` gets the search bit for others (never read: nobody can list
/// them). Directories above `from` are only checked; the error names the first one that blocks.
pub fn ensure_reachable(from: &Path, dir: &Path, user: &ServiceUser) -> anyhow::Result<()> {
    if !user.switch {
        return Ok(());
    }
    let mut current = PathBuf::new();
    for part in dir.components() {
        current.push(part);
        let meta = std::fs::metadata(&current)
            .with_context(|| format!("inspect {}", current.display()))?;
        let mode = meta.permissions().mode();
        if mode & 0o001 != 0
            || meta.uid() == user.uid
            || (meta.gid() == user.gid && mode & 0o010 != 0)
        {
            continue;
        }
        if current.starts_with(from) {
            std::fs::set_permissions(
                &current,
                std::fs::Permissions::from_mode((mode & 0o7777) | 0o001),
            )
            .with_context(|| format!("let user {} reach {}", user.name, current.display()))?;
        } else {
            bail!(
                "user {} cannot reach {}: {} is not searchable by others (chmod o+x it, or use a data directory elsewhere)",
                user.name,
                dir.display(),
                current.display()
            );
        }
    }
    Ok(())
}

/// A setup command: `program args…` in `cwd` with a clean environment plus `env`, `stdin` as
/// its input, killed after `timeout`. Secrets go in `env` or `stdin`, never in `args`.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    /// The program.
    pub program: &'a Path,
    /// Its arguments (never secrets).
    pub args: &'a [String],
    /// Environment variables added to `PATH` and `LANG` (may be secret).
    pub env: &'a [(&'a str, &'a str)],
    /// Standard input (may be secret).
    pub stdin: Option<&'a [u8]>,
    /// Working directory.
    pub cwd: &'a Path,
    /// How long it may run.
    pub timeout: Duration,
}

/// Runs a setup command (`initdb`, `mariadb-install-db`, `pg_basebackup`) as `user`; returns
/// its output, or fails with the end of it.
pub async fn run_as(
    user: &ServiceUser,
    setpriv: Option<&Path>,
    setup: Setup<'_>,
) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt;
    let Setup {
        program,
        args,
        env,
        stdin,
        cwd,
        timeout,
    } = setup;
    let (exe, mut full_args) = wrap(user, setpriv, program)?;
    full_args.extend(args.iter().cloned());
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(&full_args)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("LANG", "C.UTF-8")
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .current_dir(cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", program.display()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .await
            .with_context(|| format!("write to {name}"))?;
        drop(pipe);
    }
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| format!("{name} did not finish within {} s", timeout.as_secs()))?
        .with_context(|| format!("run {name}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{name} failed ({}): {}", out.status, tail(&text, 8));
    }
    Ok(text)
}

/// The last `n` non-empty lines of `text`, joined with " | ".
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 100_000]).unwrap();
        assert!(disk_usage(dir.path()) >= 100_000);
        assert_eq!(disk_usage(&dir.path().join("missing")), 0);
        assert_eq!(tail("a\n\nb\nc\n", 2), "b | c");
    }
}
