//! What can be created: the plan table, the supported versions of each engine, and the server
//! binaries found on this host ([`Binaries`]), from which a requested version is resolved; and the
//! engines themselves ([`DbType`], re-exported by `api`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The engine of a managed server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DbType {
    /// PostgreSQL (`initdb` + `postgres`).
    Postgresql,
    /// MySQL protocol; MariaDB runs where MySQL is not installed.
    Mysql,
    /// Redis with AOF persistence.
    Redis,
    /// MongoDB (`mongod`), only where it is installed.
    Mongodb,
}

impl DbType {
    /// Every engine, in the order of the spec.
    pub const ALL: [DbType; 4] = [
        DbType::Postgresql,
        DbType::Mysql,
        DbType::Redis,
        DbType::Mongodb,
    ];

    /// The API name (`postgresql`, `mysql`, `redis`, `mongodb`).
    pub fn as_str(self) -> &'static str {
        match self {
            DbType::Postgresql => "postgresql",
            DbType::Mysql => "mysql",
            DbType::Redis => "redis",
            DbType::Mongodb => "mongodb",
        }
    }

    /// Parses an API name.
    pub fn parse(s: &str) -> Option<DbType> {
        DbType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for DbType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One plan: CPU and memory of a server, and the engines' memory settings derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// `db-s-1vcpu-1gb`, …
    pub id: &'static str,
    /// vCPUs (a Kubernetes limit; recorded locally).
    pub vcpus: u32,
    /// Memory of the server, MiB (recorded as the instance's `memory_limit_mb`).
    pub memory_mb: u64,
    /// PostgreSQL `shared_buffers`, MiB (a quarter of the memory).
    pub pg_shared_buffers_mb: u64,
    /// MariaDB `innodb_buffer_pool_size`, MiB (half of the memory).
    pub innodb_buffer_pool_mb: u64,
    /// Redis `maxmemory`, MiB (three quarters of the memory).
    pub redis_maxmemory_mb: u64,
    /// MongoDB `wiredTigerCacheSizeGB`, in MiB (half of the memory minus 256 MiB).
    pub mongo_cache_mb: u64,
    /// `max_connections` of PostgreSQL and MariaDB.
    pub max_connections: u32,
}

/// The plan table (seed naming). The one place plan sizes live.
pub const PLANS: &[Plan] = &[
    Plan {
        id: "db-s-1vcpu-1gb",
        vcpus: 1,
        memory_mb: 1024,
        pg_shared_buffers_mb: 256,
        innodb_buffer_pool_mb: 512,
        redis_maxmemory_mb: 768,
        mongo_cache_mb: 256,
        max_connections: 100,
    },
    Plan {
        id: "db-s-1vcpu-2gb",
        vcpus: 1,
        memory_mb: 2048,
        pg_shared_buffers_mb: 512,
        innodb_buffer_pool_mb: 1024,
        redis_maxmemory_mb: 1536,
        mongo_cache_mb: 768,
        max_connections: 100,
    },
    Plan {
        id: "db-s-2vcpu-4gb",
        vcpus: 2,
        memory_mb: 4096,
        pg_shared_buffers_mb: 1024,
        innodb_buffer_pool_mb: 2048,
        redis_maxmemory_mb: 3072,
        mongo_cache_mb: 1792,
        max_connections: 200,
    },
    Plan {
        id: "db-s-4vcpu-8gb",
        vcpus: 4,
        memory_mb: 8192,
        pg_shared_buffers_mb: 2048,
        innodb_buffer_pool_mb: 4096,
        redis_maxmemory_mb: 6144,
        mongo_cache_mb: 3840,
        max_connections: 400,
    },
    Plan {
        id: "db-s-8vcpu-16gb",
        vcpus: 8,
        memory_mb: 16384,
        pg_shared_buffers_mb: 4096,
        innodb_buffer_pool_mb: 8192,
        redis_maxmemory_mb: 12288,
        mongo_cache_mb: 7936,
        max_connections: 800,
    },
];

/// The plan named `id`.
pub fn plan(id: &str) -> Option<&'static Plan> {
    PLANS.iter().find(|p| p.id == id)
}

/// The versions the API accepts for an engine (the spec's table), oldest first.
pub fn supported_versions(db_type: DbType) -> &'static [&'static str] {
    match db_type {
        DbType::Postgresql => &["14", "15", "16"],
        DbType::Mysql => &["8.0", "8.4"],
        DbType::Redis => &["7.0", "7.2"],
        DbType::Mongodb => &["6.0", "7.0"],
    }
}

/// A server program and the version it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Absolute path.
    pub path: PathBuf,
    /// `major.minor.patch` as the program prints it (`10.11.14`, `7.0.15`).
    pub version: String,
}

/// The server binaries installed on this host, found once at start.
#[derive(Debug, Clone, Default)]
pub struct Binaries {
    /// PostgreSQL major version → its `bin` directory (`initdb`, `postgres`, `pg_basebackup`).
    pub postgres: BTreeMap<String, PathBuf>,
    /// `mariadbd` (or a `mysqld` that is MariaDB).
    pub mariadbd: Option<Program>,
    /// `mariadb-install-db` (or `mysql_install_db`).
    pub mariadb_install_db: Option<PathBuf>,
    /// The `mariadb` (or `mysql`) command-line client, for bootstrap SQL over the socket.
    pub mariadb_client: Option<PathBuf>,
    /// `mariadb-backup` (or `mariabackup`): MariaDB base backups (Debian package `mariadb-backup`).
    pub mariadb_backup: Option<PathBuf>,
    /// `mariadb-binlog` (or `mysqlbinlog`): replays archived binary logs in a point-in-time restore.
    pub mariadb_binlog: Option<PathBuf>,
    /// `redis-server`.
    pub redis_server: Option<Program>,
    /// `mongod`.
    pub mongod: Option<Program>,
    /// `mongosh`, for MongoDB's bootstrap and login checks.
    pub mongosh: Option<PathBuf>,
    /// `setpriv`, to run servers as an unprivileged user when the control plane is root.
    pub setpriv: Option<PathBuf>,
}

/// Directories searched for server programs after `PATH`.
pub const DEFAULT_SEARCH_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

impl Binaries {
    /// Looks for every program in `PATH` and [`DEFAULT_SEARCH_DIRS`], and for PostgreSQL in
    /// `pg_root/*/bin` (Debian's `/usr/lib/postgresql`); runs `--version` of the servers.
    pub fn detect(pg_root: &Path) -> Binaries {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.extend(DEFAULT_SEARCH_DIRS.iter().map(PathBuf::from));
        let find = |names: &[&str]| -> Option<PathBuf> {
            names
                .iter()
                .find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p)))
        };

        let mut postgres = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(pg_root) {
            for entry in entries.flatten() {
                let bin = entry.path().join("bin");
                let major = entry.file_name().to_string_lossy().to_string();
                if major.bytes().all(|b| b.is_ascii_digit())
                    && is_executable(&bin.join("initdb"))
                    && is_executable(&bin.join("postgres"))
                {
                    postgres.insert(major, bin);
                }
            }
        }

        let mariadbd = find(&["mariadbd", "mysqld"]).and_then(|path| {
            let out = version_output(&path)?;
            // Only MariaDB is bootstrapped here (Oracle MySQL initializes differently).
            if !out.contains("MariaDB") {
                return None;
            }
            Some(Program {
                version: first_version(&out)?,
                path,
            })
        });
        let redis_server = find(&["redis-server"]).and_then(|path| {
            let out = version_output(&path)?;
            // "Redis server v=7.0.15 sha=…"
            let v = out
                .split_whitespace()
                .find_map(|w| w.strip_prefix("v="))?
                .to_string();
            Some(Program { version: v, path })
        });
        let mongod = find(&["mongod"]).and_then(|path| {
            let out = version_output(&path)?;
            Some(Program {
                version: first_version(&out)?,
                path,
            })
        });
        Binaries {
            postgres,
            mariadbd,
            mariadb_install_db: find(&["mariadb-install-db", "mysql_install_db"]),
            mariadb_client: find(&["mariadb", "mysql"]),
            mariadb_backup: find(&["mariadb-backup", "mariabackup"]),
            mariadb_binlog: find(&["mariadb-binlog", "mysqlbinlog"]),
            redis_server,
            mongod,
            mongosh: find(&["mongosh"]),
            setpriv: find(&["setpriv"]),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn version_output(path: &Path) -> Option<String> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

/// The first `N.N.N` (or `N.N`) word in a version banner.
fn first_version(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|w| w.split('.').filter(|p| !p.is_empty()).count() >= 2 && !w.starts_with('.'))
        .map(|w| w.trim_end_matches('.').to_string())
}

/// `major.minor` of `7.0.15`.
fn major_minor(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// A version request resolved against what is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedVersion {
    /// The version reported in the API (`"15"`, `"7.0"`, `"MariaDB 10.11"`).
    pub version: String,
    /// The version asked for when it differs (`"8.0"` for a MariaDB server).
    pub requested: Option<String>,
}

/// The versions supported for `db_type`, or the 400 message when `requested` is not one of
/// them (both the local and the platform resolution start here).
fn checked_supported_versions(
    db_type: DbType,
    requested: Option<&str>,
) -> Result<&'static [&'static str], String> {
    let supported = supported_versions(db_type);
    match requested {
        Some(v) if !supported.contains(&v) => Err(format!(
            "version {v:?} is not supported for {db_type}: use one of {}",
            supported.join(", ")
        )),
        _ => Ok(supported),
    }
}

/// Resolves `requested` (or the default) for `db_type`, or explains in one sentence why it
/// cannot run here (the 400 message).
pub fn resolve_version(
    db_type: DbType,
    requested: Option<&str>,
    bins: &Binaries,
) -> Result<ResolvedVersion, String> {
    let supported = checked_supported_versions(db_type, requested)?;
    match db_type {
        DbType::Postgresql => {
            let installed: Vec<&str> = supported
                .iter()
                .copied()
                .filter(|v| bins.postgres.contains_key(*v))
                .collect();
            let version = match requested {
                Some(v) if installed.contains(&v) => v,
                Some(v) => {
                    return Err(format!(
                        "postgresql {v} is not installed on this host (initdb and postgres not found in /usr/lib/postgresql/{v}/bin); installed: {}",
                        list_or_none(&installed)
                    ))
                }
                None => *installed.last().ok_or_else(|| {
                    "postgresql needs the initdb and postgres binaries (/usr/lib/postgresql/<version>/bin), which are not installed on this host".to_string()
                })?,
            };
            Ok(ResolvedVersion {
                version: version.to_string(),
                requested: None,
            })
        }
        DbType::Mysql => {
            let Some(server) = &bins.mariadbd else {
                return Err("mysql needs the mariadbd (MariaDB) binary, which is not installed on this host".into());
            };
            if bins.mariadb_install_db.is_none() || bins.mariadb_client.is_none() {
                return Err("mysql needs mariadb-install-db and the mariadb client, which are not installed on this host".into());
            }
            let requested = requested.unwrap_or(supported[supported.len() - 1]);
            Ok(ResolvedVersion {
                version: format!("MariaDB {}", major_minor(&server.version)),
                requested: Some(requested.to_string()),
            })
        }
        DbType::Redis => {
            let Some(server) = &bins.redis_server else {
                return Err(
                    "redis needs the redis-server binary, which is not installed on this host"
                        .into(),
                );
            };
            installed_minor(db_type, requested, server, supported)
        }
        DbType::Mongodb => {
            let Some(server) = &bins.mongod else {
                return Err(
                    "mongodb needs the mongod binary, which is not installed on this host".into(),
                );
            };
            if bins.mongosh.is_none() {
                return Err("mongodb needs the mongosh binary (to create users), which is not installed on this host".into());
            }
            installed_minor(db_type, requested, server, supported)
        }
    }
}

/// The MariaDB release that serves `mysql` on a platform runtime (its official image's LTS tag):
/// the MySQL versions of the API are the protocol asked for, as on this host.
pub const MARIADB_IMAGE_VERSION: &str = "11.4";

/// Resolves `requested` (or the newest supported version) for a platform runtime that runs the
/// engines' official images (`runtime` names it in the message): no local binaries are
/// involved. MongoDB is refused there (no image is assumed for it).
pub fn resolve_image_version(
    db_type: DbType,
    requested: Option<&str>,
    runtime: &str,
) -> Result<ResolvedVersion, String> {
    let supported = checked_supported_versions(db_type, requested)?;
    let chosen = requested.unwrap_or(supported[supported.len() - 1]);
    match db_type {
        DbType::Postgresql | DbType::Redis => Ok(ResolvedVersion {
            version: chosen.to_string(),
            requested: None,
        }),
        DbType::Mysql => Ok(ResolvedVersion {
            version: format!("MariaDB {MARIADB_IMAGE_VERSION}"),
            requested: Some(chosen.to_string()),
        }),
        DbType::Mongodb => Err(format!(
            "mongodb is not supported on the {runtime} runtime yet (no MongoDB image is configured); use postgresql, mysql or redis"
        )),
    }
}

fn installed_minor(
    db_type: DbType,
    requested: Option<&str>,
    server: &Program,
    supported: &[&str],
) -> Result<ResolvedVersion, String> {
    let have = major_minor(&server.version);
    match requested {
        Some(v) if v == have => Ok(ResolvedVersion {
            version: have,
            requested: None,
        }),
        Some(v) => Err(format!(
            "{db_type} {v} is not installed on this host: {} is version {}",
            server.path.display(),
            server.version
        )),
        None if supported.contains(&have.as_str()) => Ok(ResolvedVersion {
            version: have,
            requested: None,
        }),
        None => Err(format!(
            "the installed {} is version {}, not a supported {db_type} version ({})",
            server.path.display(),
            server.version,
            supported.join(", ")
        )),
    }
}

fn list_or_none(v: &[&str]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// How many days of backups (and, for PostgreSQL, of point-in-time restore) a plan keeps.
pub fn backup_retention_days(plan_id: &str) -> u32 {
    match plan_id {
        "db-s-1vcpu-1gb" | "db-s-1vcpu-2gb" => 7,
        _ => 14,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins() -> Binaries {
        let mut b = Binaries::default();
        b.postgres.insert("15".into(), "/pg/15/bin".into());
        b.redis_server = Some(Program {
            path: "/usr/bin/redis-server".into(),
            version: "7.0.15".into(),
        });
        b
    }

    #[test]
    fn versions_resolve_against_what_is_installed() {
        let b = bins();
        assert_eq!(
            resolve_version(DbType::Postgresql, None, &b)
                .unwrap()
                .version,
            "15"
        );
        assert_eq!(
            resolve_version(DbType::Postgresql, Some("15"), &b)
                .unwrap()
                .version,
            "15"
        );
        let e = resolve_version(DbType::Postgresql, Some("16"), &b).unwrap_err();
        assert!(
            e.contains("not installed") && e.contains("installed: 15"),
            "{e}"
        );
        let e = resolve_version(DbType::Postgresql, Some("13"), &b).unwrap_err();
        assert!(
            e.contains("not supported") && e.contains("14, 15, 16"),
            "{e}"
        );
        assert_eq!(
            resolve_version(DbType::Redis, None, &b).unwrap().version,
            "7.0"
        );
        assert!(resolve_version(DbType::Redis, Some("7.2"), &b)
            .unwrap_err()
            .contains("7.0.15"));
        let e = resolve_version(DbType::Mongodb, None, &b).unwrap_err();
        assert!(e.contains("mongod"), "{e}");
        assert!(resolve_version(DbType::Mysql, None, &b)
            .unwrap_err()
            .contains("mariadbd"));
    }

    #[test]
    fn mysql_is_reported_as_mariadb() {
        let mut b = bins();
        b.mariadbd = Some(Program {
            path: "/usr/sbin/mariadbd".into(),
            version: "10.11.14".into(),
        });
        b.mariadb_install_db = Some("/usr/bin/mariadb-install-db".into());
        b.mariadb_client = Some("/usr/bin/mariadb".into());
        let r = resolve_version(DbType::Mysql, Some("8.0"), &b).unwrap();
        assert_eq!(r.version, "MariaDB 10.11");
        assert_eq!(r.requested.as_deref(), Some("8.0"));
    }

    #[test]
    fn version_banners() {
        assert_eq!(
            first_version("mariadbd  Ver 10.11.14-MariaDB-0+deb12u2 for debian-linux-gnu")
                .as_deref(),
            Some("10.11.14")
        );
        assert_eq!(
            first_version("db version v7.0.2\nBuild Info").as_deref(),
            Some("7.0.2")
        );
        assert!(plan("db-s-2vcpu-4gb").is_some() && plan("db-s-3vcpu").is_none());
    }

    #[test]
    fn platform_versions_come_from_the_catalog_not_this_host() {
        let v = resolve_image_version(DbType::Postgresql, None, "kubernetes").unwrap();
        assert_eq!((v.version.as_str(), v.requested), ("16", None));
        let v = resolve_image_version(DbType::Mysql, Some("8.0"), "kubernetes").unwrap();
        assert_eq!(v.version, format!("MariaDB {MARIADB_IMAGE_VERSION}"));
        assert_eq!(v.requested.as_deref(), Some("8.0"));
        assert!(resolve_image_version(DbType::Redis, Some("6.2"), "kubernetes").is_err());
        let e = resolve_image_version(DbType::Mongodb, None, "kubernetes").unwrap_err();
        assert!(e.contains("not supported on the kubernetes runtime"), "{e}");
    }
}
