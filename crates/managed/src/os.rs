//! Host details of running servers: the unprivileged user a server runs as, files and directories
//! owned by it, commands run as it, and the size of a data directory.
//!
//! When the control plane runs as root (CI containers), servers must not: PostgreSQL refuses to,
//! and a database server should never hold root's rights. Each engine then runs as its Debian
//! package's system user (`postgres`, `mysql`, `redis`, `mongodb`) or `nobody`, through
//! `setpriv --reuid --regid --clear-groups` (which `exec`s, so the driver's pid is the server's).
//! As any other user, servers run as that same user.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};

// The user a server runs as, and its files and directories, live with the runtime driver, which
// runs engines the same way.
pub use refract_runtime::user::{
    any_other_user, blocked_ancestor, create_owned_dir, current_user, ensure_reachable, give,
    is_root, lookup_user, service_user, wrap, write_owned_file, ServiceUser,
};

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
