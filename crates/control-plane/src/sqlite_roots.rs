//! Where SQLite sources may live: [`SqliteRoots`].
//!
//! A SQLite "source" is a file the control plane (and its engines) open. Without a rule, any
//! customer could register any path — the control plane's own `refract.db`, the secret store, a
//! file of another tenant. So a SQLite path is accepted only when, after canonicalisation
//! (symlinks and `..` resolved), it lies under one of the roots the operator gave
//! (`refract serve --sqlite-root DIR`, repeatable, or `REFRACT_SQLITE_ROOT=DIR1:DIR2`), and never
//! inside the control plane's data directory (nor the managed servers' fallback directory),
//! whatever the roots say. With no root, SQLite sources are refused.
//!
//! The check runs on connection create/update, on both test-connection routes, and again before
//! every build and engine start (a path valid at creation may be a symlink to elsewhere later);
//! the canonical path it returns is the one that is opened.
//!
//! A path outside the roots gets the same refusal whether or not it exists, so the check is no
//! oracle for the file system.

use std::path::{Component, Path, PathBuf};

/// The allowed SQLite roots and the directories that are never allowed.
#[derive(Debug, Clone, Default)]
pub struct SqliteRoots {
    /// Canonical roots; empty = SQLite sources are refused.
    roots: Vec<PathBuf>,
    /// Canonical directories never allowed (the data directory, …).
    forbidden: Vec<PathBuf>,
}

/// Why a SQLite path is refused (the message names the field; it is safe to show any customer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl SqliteRoots {
    /// Roots (made absolute against the current directory, then canonicalised: each must exist)
    /// and the directories never allowed (`forbidden`, typically the data directory; a missing
    /// one is taken as given, made absolute).
    pub fn new(roots: &[PathBuf], forbidden: &[PathBuf]) -> anyhow::Result<SqliteRoots> {
        let mut out = SqliteRoots::default();
        for r in roots {
            if r.as_os_str().is_empty() {
                continue;
            }
            let abs = std::path::absolute(r)
                .map_err(|e| anyhow::anyhow!("--sqlite-root {}: {e}", r.display()))?;
            let canonical = abs.canonicalize().map_err(|e| {
                anyhow::anyhow!(
                    "--sqlite-root {}: {e} (a SQLite root must be an existing directory)",
                    r.display()
                )
            })?;
            if !canonical.is_dir() {
                anyhow::bail!("--sqlite-root {}: not a directory", r.display());
            }
            if !out.roots.contains(&canonical) {
                out.roots.push(canonical);
            }
        }
        for f in forbidden {
            let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
            let canonical = abs.canonicalize().unwrap_or(abs);
            out.forbidden.push(canonical);
        }
        Ok(out)
    }

    /// The canonical roots.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Whether any root is configured.
    pub fn enabled(&self) -> bool {
        !self.roots.is_empty()
    }

    /// Checks `path` (field `field`) and returns the canonical path to open. A path that does not
    /// exist yet is accepted when its nearest existing ancestor is inside a root (creating a
    /// connection does not contact the source); opening it later fails as usual.
    pub fn check(&self, field: &str, path: &str) -> Result<PathBuf, Refusal> {
        if self.roots.is_empty() {
            return Err(Refusal(format!(
                "{field}: SQLite sources are disabled on this control plane; the operator must start \
                 `refract serve` with --sqlite-root DIR (or REFRACT_SQLITE_ROOT=DIR) to allow SQLite files under DIR"
            )));
        }
        let outside = || {
            let roots: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
            Refusal(format!(
                "{field}: {path:?} is not a SQLite file this control plane may read: SQLite sources must be \
                 under an allowed SQLite root ({}) and outside the control plane's own data directory",
                roots.join(", ")
            ))
        };
        if path.is_empty() || path.contains('\0') {
            return Err(outside());
        }
        let resolved = resolve(Path::new(path)).ok_or_else(outside)?;
        if !self.roots.iter().any(|r| resolved.starts_with(r))
            || self.forbidden.iter().any(|f| resolved.starts_with(f))
        {
            return Err(outside());
        }
        // Inside a root: what exists there may be said. A directory, FIFO or device is no
        // database file (a FIFO would block the reader).
        if let Ok(meta) = std::fs::metadata(&resolved) {
            if !meta.is_file() {
                return Err(Refusal(format!("{field}: {path:?} is not a regular file")));
            }
        }
        Ok(resolved)
    }
}

/// The canonical form of `path` (relative to the current directory): the nearest existing
/// ancestor canonicalised, plus the missing tail, which must be plain names (no `.`/`..`, which
/// the OS could not resolve below a missing directory anyway). `None` when it cannot be resolved.
fn resolve(path: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(path).ok()?;
    if let Ok(c) = abs.canonicalize() {
        return Some(c);
    }
    let mut tail = Vec::new();
    let mut cur = abs.as_path();
    loop {
        let name = cur.file_name()?;
        tail.push(name.to_os_string());
        cur = cur.parent()?;
        if let Ok(c) = cur.canonicalize() {
            // `..` in the missing tail: `file_name` skips it, so check the components.
            let rest = abs.strip_prefix(cur).ok()?;
            if rest
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                return None;
            }
            let mut out = c;
            for t in tail.iter().rev() {
                out.push(t);
            }
            return Some(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confined_to_roots_and_never_the_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let data = root.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("refract.db"), b"x").unwrap();
        std::fs::write(root.join("ok.db"), b"x").unwrap();
        std::fs::write(tmp.path().join("outside.db"), b"x").unwrap();
        std::os::unix::fs::symlink(data.join("refract.db"), root.join("link.db")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside.db"), root.join("out.db")).unwrap();
        std::fs::create_dir(root.join("dir")).unwrap();

        let none = SqliteRoots::new(&[], std::slice::from_ref(&data)).unwrap();
        assert!(none
            .check("mysqlHost", root.join("ok.db").to_str().unwrap())
            .unwrap_err()
            .0
            .contains("--sqlite-root"));

        let r = SqliteRoots::new(std::slice::from_ref(&root), std::slice::from_ref(&data)).unwrap();
        let ok = |p: &Path| r.check("mysqlHost", p.to_str().unwrap());
        assert_eq!(
            ok(&root.join("ok.db")).unwrap(),
            root.canonicalize().unwrap().join("ok.db")
        );
        assert!(
            ok(&root.join("new.db")).is_ok(),
            "a missing file inside a root"
        );
        assert!(ok(&root.join("dir/../ok.db")).is_ok());
        for bad in [
            data.join("refract.db"),
            root.join("link.db"),
            root.join("out.db"),
            root.join("../outside.db"),
            tmp.path().join("outside.db"),
            tmp.path().join("missing.db"),
            PathBuf::from("/etc/passwd"),
            PathBuf::from("/nonexistent/x.db"),
            root.join("nope/../../outside.db"),
            data.join("new.db"),
        ] {
            let e = ok(&bad).unwrap_err();
            assert!(
                e.0.contains("not a SQLite file this control plane may read"),
                "{}: {e}",
                bad.display()
            );
        }
        // Existing and missing outside paths get the same answer (no oracle).
        let msg = |p: &str| r.check("f", p).unwrap_err().0.replace(p, "P");
        assert_eq!(msg("/etc/passwd"), msg("/etc/nothing-here"));
        assert!(ok(&root.join("dir"))
            .unwrap_err()
            .0
            .contains("regular file"));
        assert!(r.check("f", "").is_err());

        // A root that is (or contains) the data dir still never allows the data dir.
        let r = SqliteRoots::new(std::slice::from_ref(&data), std::slice::from_ref(&data)).unwrap();
        assert!(r
            .check("f", data.join("refract.db").to_str().unwrap())
            .is_err());
        // A missing root is an error at start.
        assert!(SqliteRoots::new(&[tmp.path().join("missing")], &[]).is_err());
    }
}
