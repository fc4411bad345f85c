//! PostgreSQL's continuous WAL archiving: `archive_command` copies each finished segment into
//! `servers/<db>/wal_archive/` (the server's own user can write there; the backup directory may
//! be closed to it), through a `.part` name and a rename so that a half-copied segment is never
//! seen; the backup scheduler ships the segments into the backup storage and removes them.

use std::path::PathBuf;

use crate::engines::Ctx;
use crate::os;

/// Where a database's server archives WAL before it is shipped.
pub fn archive_dir(ctx: &Ctx) -> PathBuf {
    ctx.db_dir.join("wal_archive")
}

/// The `refract.conf` lines that turn archiving on (creates the archive directory).
/// `archive_timeout = 60`: an idle server still archives its last writes within a minute.
pub fn settings(ctx: &Ctx) -> anyhow::Result<String> {
    let dir = archive_dir(ctx);
    os::create_owned_dir(&dir, &ctx.user)?;
    let d = dir.display().to_string();
    anyhow::ensure!(
        !d.contains(['\'', '"', '%', '\\', '$', '`', '\n']),
        "the WAL archive directory {d} has a character archive_command cannot quote"
    );
    Ok(format!(
        "archive_mode = on\n\
         archive_command = 'cp \"%p\" \"{d}/%f.part\" && mv \"{d}/%f.part\" \"{d}/%f\"'\n\
         archive_timeout = 60\n"
    ))
}

/// The pg_hba line that lets `refract_admin` in over a restore's private Unix socket.
pub const TRUST_LINE: &str = "local all refract_admin trust # refract restore\n";
/// The settings file of a restore in progress, included after `refract.conf`.
pub const RESTORE_CONF: &str = "refract-restore.conf";

/// What `pg_hba.conf` of the data directory `dir` starts with: [`TRUST_LINE`] while a restore
/// is in progress there (its settings file exists), else nothing.
pub fn restore_hba(dir: &std::path::Path) -> &'static str {
    if dir.join(RESTORE_CONF).exists() {
        TRUST_LINE
    } else {
        ""
    }
}

/// `tar`, as Debian installs it.
pub(crate) fn tar() -> std::path::PathBuf {
    ["/usr/bin/tar", "/bin/tar"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| std::path::PathBuf::from("tar"))
}
