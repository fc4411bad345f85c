//! The unprivileged user an instance runs as, and the files and directories it owns.
//!
//! When the control plane runs as root (containers, `scripts/test`), no instance may: engines run
//! as the `refract` system user ([`engine_user`]), managed servers as their package's system user
//! ([`service_user`]), each falling back to `nobody`. As any other user, instances run as that
//! same user and nothing is switched. The local driver switches with
//! [`LocalProcessDriver::run_as`](crate::LocalProcessDriver::run_as) (the equivalent of
//! `setpriv --reuid --regid --clear-groups`); setup commands and servers of the managed crate are
//! wrapped in `setpriv` itself ([`wrap`]).

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::RuntimeError;

/// The system user engines run as when the control plane is root.
pub const ENGINE_USER: &str = "refract";

/// The user an instance runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Whether processes must switch to it (this process is root and the user is not).
    pub switch: bool,
}

impl ServiceUser {
    /// `(uid, gid)` to give files to, when processes switch to this user; `None` otherwise (files
    /// stay this process's).
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.switch.then_some((self.uid, self.gid))
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn passwd_entry(
    lookup: impl Fn(*mut libc::passwd, *mut libc::c_char, usize, *mut *mut libc::passwd) -> i32,
) -> Option<(String, u32, u32)> {
    // SAFETY: passwd is plain data; all-zero is a valid (empty) value.
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

/// The user this process runs as (nothing to switch).
pub fn current_user() -> ServiceUser {
    // SAFETY: geteuid/getegid cannot fail; getpwuid_r as above.
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

fn unprivileged(name: String, uid: u32, gid: u32) -> Result<ServiceUser, RuntimeError> {
    if uid == 0 || gid == 0 {
        return Err(RuntimeError::User(format!(
            "user {name} is root (or in group 0); instances must run as an unprivileged user"
        )));
    }
    Ok(ServiceUser {
        name,
        uid,
        gid,
        switch: true,
    })
}

/// The user a managed server runs as: `preferred` (its package's system user, e.g. `postgres`)
/// or `nobody` when this process is root; this process's own user otherwise.
pub fn service_user(preferred: &str) -> Result<ServiceUser, RuntimeError> {
    if !is_root() {
        return Ok(current_user());
    }
    let (name, uid, gid) = lookup_user(preferred)
        .or_else(|| lookup_user("nobody"))
        .ok_or_else(|| {
            RuntimeError::User(format!(
                "running as root, but neither user {preferred} nor nobody exists to run the server as"
            ))
        })?;
    unprivileged(name, uid, gid)
}

/// The user engines run as. Not root: this process's own user (no switch). Root: the
/// [`ENGINE_USER`] system user — created with `useradd --system` when it does not exist — or
/// `nobody` when it cannot be created (a warning is logged: other services may share `nobody`).
pub fn engine_user() -> Result<ServiceUser, RuntimeError> {
    if !is_root() {
        return Ok(current_user());
    }
    // Several control planes may start at once (tests): useradd fails while another one holds
    // the lock of /etc/passwd, so look again a few times before falling back.
    for attempt in 0..5 {
        if let Some((name, uid, gid)) = lookup_user(ENGINE_USER) {
            return unprivileged(name, uid, gid);
        }
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        create_system_user(ENGINE_USER);
    }
    tracing::warn!(
        "running as root and user {ENGINE_USER} does not exist and could not be created: engines \
         run as nobody (create it with `useradd --system --user-group {ENGINE_USER}`)"
    );
    let (name, uid, gid) = lookup_user("nobody").ok_or_else(|| {
        RuntimeError::User(format!(
            "running as root, but neither user {ENGINE_USER} nor nobody exists to run engines as"
        ))
    })?;
    unprivileged(name, uid, gid)
}

/// `useradd --system` (no home, no login shell, its own group). Failures are only logged: another
/// process may have created the user at the same moment, which the caller's next lookup sees.
fn create_system_user(name: &str) {
    let shell = ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/false");
    let out = std::process::Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            shell,
            name,
        ])
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => tracing::info!(user = name, "created the system user"),
        Ok(o) => {
            tracing::debug!(user = name, status = %o.status, stderr = %String::from_utf8_lossy(&o.stderr).trim(), "useradd failed")
        }
        Err(e) => tracing::debug!(user = name, error = %e, "cannot run useradd"),
    }
}

/// How to run `program` as `user` through `setpriv` (util-linux): the program to start and the
/// arguments that precede the program's own (`--reuid=… --regid=… --clear-groups -- program`).
pub fn wrap(
    user: &ServiceUser,
    setpriv: Option<&Path>,
    program: &Path,
) -> Result<(PathBuf, Vec<String>), RuntimeError> {
    if !user.switch {
        return Ok((program.to_path_buf(), Vec::new()));
    }
    let setpriv = setpriv.ok_or_else(|| {
        RuntimeError::User("running as root, servers run as an unprivileged user through setpriv (util-linux), which is not installed".into())
    })?;
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

/// Gives `path` to `user` (no-op unless switching).
pub fn give(path: &Path, user: &ServiceUser) -> Result<(), RuntimeError> {
    if user.switch {
        std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
            .map_err(RuntimeError::io("give to the instance user", path))?;
    }
    Ok(())
}

/// Creates `path` (and missing parents) with mode 0700, owned by `user`.
pub fn create_owned_dir(path: &Path, user: &ServiceUser) -> Result<(), RuntimeError> {
    fs::create_dir_all(path).map_err(RuntimeError::io("create directory", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(RuntimeError::io("set permissions of", path))?;
    give(path, user)
}

/// Replaces `path` with a new file of mode 0600 owned by `user` (created exclusively after
/// removing the old one, so a planted symlink is never followed).
pub fn write_owned_file(
    path: &Path,
    contents: &[u8],
    user: &ServiceUser,
) -> Result<(), RuntimeError> {
    write_file_as(path, contents, 0o600, user.owner())
}

/// Replaces `path` with a new file of `mode` holding `contents`, given to `owner` (`(uid, gid)`)
/// when set. The old file is removed first and the new one created exclusively, so a symlink
/// planted at `path` is never followed; ownership is given before any byte is written.
pub(crate) fn write_file_as(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), RuntimeError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(RuntimeError::io("replace", path)(err)),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(RuntimeError::io("create", path))?;
    // The umask may have cleared bits of `mode`; set them exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(RuntimeError::io("set permissions of", path))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(RuntimeError::io("give to the instance user", path))?;
    }
    file.write_all(contents)
        .map_err(RuntimeError::io("write", path))?;
    file.sync_all().map_err(RuntimeError::io("write", path))
}

/// Any user but the owner (for checks that must hold for every instance's user): only the search
/// bit for others lets it through a directory.
pub fn any_other_user() -> ServiceUser {
    ServiceUser {
        name: "the servers' users".into(),
        uid: u32::MAX,
        gid: u32::MAX,
        switch: true,
    }
}

/// Whether `user` has permission `bit` (4 read, 2 write, 1 execute/search) on `meta` by its mode
/// bits (as `user` with its primary group only: switching clears supplementary groups).
fn permits(meta: &fs::Metadata, user: &ServiceUser, bit: u32) -> bool {
    let mode = meta.permissions().mode();
    if meta.uid() == user.uid {
        mode & (bit << 6) != 0
    } else if meta.gid() == user.gid {
        mode & (bit << 3) != 0
    } else {
        mode & bit != 0
    }
}

/// The first directory strictly above `dir` that `user` cannot search, if any (no change made).
pub fn blocked_ancestor(dir: &Path, user: &ServiceUser) -> Option<PathBuf> {
    let mut current = PathBuf::new();
    let parts: Vec<_> = dir.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        current.push(part);
        let Ok(meta) = fs::metadata(&current) else {
            return Some(current);
        };
        if !permits(&meta, user, 1) {
            return Some(current);
        }
    }
    None
}

/// Why `user` cannot read the file `path` (an ancestor it cannot search, or the file's mode), or
/// `None` when it can. Checks mode bits only (no ACLs). Always `None` when not switching: the
/// caller runs as that user and learns the truth by opening the file.
pub fn unreadable_reason(path: &Path, user: &ServiceUser) -> Option<String> {
    access_reason(path, user, 4)
}

/// Why `user` lacks permission `bit` (4 read, 1 execute) on `path`, by mode bits; `None` when it
/// has it or when not switching.
pub(crate) fn access_reason(path: &Path, user: &ServiceUser, bit: u32) -> Option<String> {
    if !user.switch {
        return None;
    }
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(blocked) = blocked_ancestor(&path, user) {
        return Some(format!(
            "user {} cannot reach {}: directory {} is not searchable by it",
            user.name,
            path.display(),
            blocked.display()
        ));
    }
    let what = if bit == 1 { "execute" } else { "read" };
    match fs::metadata(&path) {
        Ok(meta) if permits(&meta, user, bit) => None,
        Ok(meta) => Some(format!(
            "user {} cannot {what} {} (owner uid {}, group gid {}, mode {:o})",
            user.name,
            path.display(),
            meta.uid(),
            meta.gid(),
            meta.permissions().mode() & 0o7777
        )),
        Err(e) => Some(format!("cannot inspect {}: {e}", path.display())),
    }
}

/// Makes sure `user` can walk down to `dir` when instances switch users: every directory from
/// `from` (inclusive) down to `dir` gets the search bit for others (never read: nobody can list
/// them). Directories above `from` are only checked; the error names the first one that blocks.
pub fn ensure_reachable(from: &Path, dir: &Path, user: &ServiceUser) -> Result<(), RuntimeError> {
    if !user.switch {
        return Ok(());
    }
    let mut current = PathBuf::new();
    for part in dir.components() {
        current.push(part);
        let meta = fs::metadata(&current).map_err(RuntimeError::io("inspect", &current))?;
        if permits(&meta, user, 1) {
            continue;
        }
        if current.starts_with(from) {
            let mode = meta.permissions().mode();
            fs::set_permissions(
                &current,
                fs::Permissions::from_mode((mode & 0o7777) | 0o001),
            )
            .map_err(RuntimeError::io("let other users search", &current))?;
        } else {
            return Err(RuntimeError::User(format!(
                "user {} cannot reach {}: {} is not searchable by others (chmod o+x it, or use a data directory elsewhere)",
                user.name,
                dir.display(),
                current.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other() -> ServiceUser {
        ServiceUser {
            name: "other".into(),
            uid: 4_000_000,
            gid: 4_000_000,
            switch: true,
        }
    }

    #[test]
    fn no_switch_unless_root() {
        let me = current_user();
        assert!(!me.switch);
        let engine = engine_user().unwrap();
        if is_root() {
            assert!(engine.switch);
            assert_ne!(engine.uid, 0);
            assert_ne!(engine.gid, 0);
        } else {
            assert_eq!(engine, me);
        }
    }

    #[test]
    fn readability_by_mode_bits() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.path().join("source.db");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let reason = unreadable_reason(&file, &other()).unwrap();
        assert!(reason.contains("cannot read"), "{reason}");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(unreadable_reason(&file, &other()), None);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let reason = unreadable_reason(&file, &other()).unwrap();
        assert!(reason.contains("not searchable"), "{reason}");
        // Not switching: never a reason (the caller is that user).
        assert_eq!(unreadable_reason(&file, &current_user()), None);
    }
}
