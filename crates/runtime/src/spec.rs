//! What the caller asks a driver to run ([`InstanceSpec`]) and what it reports back
//! ([`InstanceHandle`], [`InstanceStatus`]).

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The line an engine prints on stdout once it listens, followed by its `http://IP:PORT` URL.
pub const ENGINE_READY_PREFIX: &str = "refract engine listening on ";

/// Default permission bits of a [`SpecFile`]: readable and writable by the owner only.
pub const DEFAULT_FILE_MODE: u32 = 0o600;

/// What an instance runs: it changes nothing in how it is run, but is recorded and listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceKind {
    /// A `refract engine` (the data plane of one database).
    Engine,
    /// A managed database server (`postgres`, `mariadbd`, `redis-server`, …).
    Server,
}

/// How the driver learns that an instance is ready and where it can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Ready once a line of the instance's output starts with `prefix`; the endpoint is the first
    /// word after the prefix (engines bind port 0 and print `refract engine listening on http://IP:PORT`).
    ReadyLine {
        /// The start of the line, usually [`ENGINE_READY_PREFIX`].
        prefix: String,
    },
    /// Ready once `127.0.0.1:<port>` accepts a TCP connection; the endpoint is `127.0.0.1:<port>`
    /// (for servers started on a port chosen beforehand, e.g. with [`crate::free_port`]).
    TcpPort(u16),
}

impl Readiness {
    /// The readiness of a `refract engine`: its ready line.
    pub fn engine() -> Self {
        Readiness::ReadyLine {
            prefix: ENGINE_READY_PREFIX.to_string(),
        }
    }
}

/// A file written into the instance's directory before the program starts (config, password file,
/// keys file, admin token). The contents may be secret: they never appear in `Debug` output or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct SpecFile {
    /// File name inside the instance directory: one path component, no `/`.
    pub name: String,
    /// The bytes to write (the file is replaced on every start).
    pub contents: Vec<u8>,
    /// Permission bits, [`DEFAULT_FILE_MODE`] (0600) unless a program needs otherwise.
    pub mode: u32,
    /// Whether the contents may be secret (the default). A driver that stores files elsewhere
    /// keeps secret ones apart (the Kubernetes driver: a `Secret`, the others a `ConfigMap`);
    /// the local driver writes every file the same way (mode `mode`).
    pub secret: bool,
}

impl SpecFile {
    /// A file with mode 0600 whose contents may be secret.
    pub fn new(name: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        SpecFile {
            name: name.into(),
            contents: contents.into(),
            mode: DEFAULT_FILE_MODE,
            secret: true,
        }
    }

    /// A file with mode 0600 that holds no secret (configuration, a manifest).
    pub fn plain(name: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        SpecFile {
            secret: false,
            ..SpecFile::new(name, contents)
        }
    }
}

impl fmt::Debug for SpecFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpecFile")
            .field("name", &self.name)
            .field("contents", &format_args!("<{} bytes>", self.contents.len()))
            .field("mode", &format_args!("{:o}", self.mode))
            .field("secret", &self.secret)
            .finish()
    }
}

/// Everything a driver needs to run one instance.
///
/// Secrets go in `env` or `files`, never in `args` (visible to every user in `ps`).
#[derive(Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Stable identifier, unique per driver (e.g. a UUID): 1–128 characters from `[A-Za-z0-9._-]`.
    pub id: String,
    /// Engine or managed server.
    pub kind: InstanceKind,
    /// The executable. The local driver runs it with the instance directory as working directory,
    /// so relative paths in `args` resolve against the files written from `files`.
    pub program: PathBuf,
    /// Command-line arguments. Never secrets.
    pub args: Vec<String>,
    /// Environment variables of the instance (values may be secret). The local driver does not pass
    /// on the control plane's own environment, except `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR`.
    pub env: Vec<(String, String)>,
    /// Files written (replaced) into the instance directory before start.
    pub files: Vec<SpecFile>,
    /// Memory size of the instance. Recorded only: the local driver sets no hard limit (an address
    /// space limit breaks allocators that reserve virtual memory); the caller passes the cap to the
    /// program itself (the engine's `memory_cap_mb`, a server's buffer settings).
    pub memory_limit_mb: Option<u64>,
    /// How to tell that the instance is ready and where it listens.
    pub readiness: Readiness,
    /// The group the instance belongs to (an engine's database id): instances of one group are
    /// reached together at [`crate::Driver::group_endpoint`] and share its group files. `None`
    /// for an instance of its own. The local driver records nothing of it.
    pub group: Option<String>,
    /// Copies of the instance that serve side by side (≥ 1). A driver that can run several (the
    /// Kubernetes driver: a Deployment's replicas) spreads the group's clients over them; the
    /// local driver runs one process whatever the number.
    pub replicas: u32,
    /// CPU share in thousandths of a core (a request and a limit where the runtime enforces one;
    /// the local driver records nothing of it).
    pub cpu_millis: Option<u64>,
}

impl InstanceSpec {
    /// A spec with no arguments, environment or files, and no memory limit.
    pub fn new(
        id: impl Into<String>,
        kind: InstanceKind,
        program: impl Into<PathBuf>,
        readiness: Readiness,
    ) -> Self {
        InstanceSpec {
            id: id.into(),
            kind,
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            files: Vec::new(),
            memory_limit_mb: None,
            readiness,
            group: None,
            replicas: 1,
            cpu_millis: None,
        }
    }
}

impl fmt::Debug for InstanceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("InstanceSpec")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &env_names)
            .field("files", &self.files)
            .field("memory_limit_mb", &self.memory_limit_mb)
            .field("readiness", &self.readiness)
            .field("group", &self.group)
            .field("replicas", &self.replicas)
            .field("cpu_millis", &self.cpu_millis)
            .finish()
    }
}

/// Returned by [`crate::Driver::start`]: the instance was launched (not necessarily ready yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceHandle {
    /// The spec's id.
    pub id: String,
    /// The spec's kind.
    pub kind: InstanceKind,
    /// When the driver launched it.
    pub started_at: DateTime<Utc>,
}

/// What a driver observes about one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum InstanceStatus {
    /// Launched, not ready yet.
    Starting,
    /// Ready: `endpoint` is where it listens (`http://IP:PORT` for engines, `127.0.0.1:PORT` for
    /// servers with [`Readiness::TcpPort`]).
    Running {
        /// Where clients reach the instance.
        endpoint: String,
    },
    /// The instance is gone.
    Exited {
        /// Exit status, when it exited normally and the driver could collect it (not for processes
        /// adopted after a control-plane restart).
        code: Option<i32>,
        /// The signal that ended it, when known (9 is also what the kernel's OOM killer sends).
        signal: Option<i32>,
        /// When the driver saw it end.
        at: DateTime<Utc>,
    },
    /// The driver knows no instance with this id.
    NotFound,
}

impl InstanceStatus {
    /// Starting or Running.
    pub fn is_alive(&self) -> bool {
        matches!(
            self,
            InstanceStatus::Starting | InstanceStatus::Running { .. }
        )
    }

    /// The endpoint when Running.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            InstanceStatus::Running { endpoint } => Some(endpoint),
            _ => None,
        }
    }
}
