//! What every client command shares: the options ([`ClientOpts`]), the blocking API client
//! ([`Api`]) and how answers are printed (a table, `--json`, or one field with `--get`).

use anyhow::{anyhow, bail, Context};
use reqwest::blocking::Client;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Options every client command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientOpts {
    /// Control plane base URL.
    #[arg(
        long,
        env = "REFRACT_URL",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    pub(crate) url: String,
    /// Management key (`rmk_…`); `refract managed` also takes an API token (`dkc_…`).
    #[arg(long, env = "REFRACT_TOKEN", hide_env_values = true, global = true)]
    pub(crate) token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Print only this field of the API's JSON answer, by its dotted path (`id`,
    /// `database.id`, `key`): for scripts, like `jq -r .id`.
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) get: Option<String>,
}

/// A thin blocking client of `/v1`.
pub struct Api {
    pub(crate) client: Client,
    pub(crate) base: String,
    pub(crate) token: String,
}

impl Api {
    pub(crate) fn new(opts: &ClientOpts) -> anyhow::Result<Self> {
        Api::connect(
            &opts.url,
            opts.token.clone(),
            "no management key: set REFRACT_TOKEN or pass --token (the admin key is in DATA_DIR/admin-key)",
        )
    }

    /// A client of the control plane at `url` with a bearer token; `no_token` is the error when
    /// the token is missing or empty.
    pub(crate) fn connect(
        url: &str,
        token: Option<String>,
        no_token: &'static str,
    ) -> anyhow::Result<Self> {
        let token = token.filter(|t| !t.is_empty()).context(no_token)?;
        let client = Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Api {
            client,
            base: url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Sends one request: the status and the body (JSON; text that is not JSON as a string;
    /// `null` when empty).
    pub(crate) fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .with_context(|| format!("cannot reach the control plane at {}", self.base))?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    /// Calls the API; a non-2xx answer becomes an error carrying the API's `message`.
    pub fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, value) = self.send(method, path, body)?;
        if !status.is_success() {
            let msg = serde_json::from_value::<refract_api::ErrorBody>(value)
                .map(|e| e.message)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            bail!("{msg}");
        }
        Ok(value)
    }
}

pub(crate) fn output(
    opts: &ClientOpts,
    v: &Value,
    table: impl FnOnce(&Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if let Some(path) = &opts.get {
        let mut at = v;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            at = match (at, part.parse::<usize>()) {
                (Value::Array(a), Ok(i)) => a.get(i).unwrap_or(&Value::Null),
                _ => at.get(part).unwrap_or(&Value::Null),
            };
        }
        match at {
            Value::Null => bail!("the answer has no field {path}"),
            Value::String(s) => println!("{s}"),
            other => println!("{other}"),
        }
    } else if opts.json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        table(v)?;
    }
    Ok(())
}

/// A cell: strings bare, null as `-`, arrays comma-joined, anything else as JSON.
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            // A tag shows as its label.
            .map(
                |x| match serde_json::from_value::<refract_api::Tag>(x.clone()) {
                    Ok(tag) => tag.label,
                    Err(_) => cell(x),
                },
            )
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// `s` as one URL path segment or query value (RFC 3986 unreserved characters kept, every
/// other byte percent-encoded).
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Rows under `headers`, each row's cells from `cells`, columns as wide as their widest cell.
pub(crate) fn table<T>(headers: &[&str], rows: &[T], cells: impl Fn(&T) -> Vec<String>) {
    let cells: Vec<Vec<String>> = rows.iter().map(cells).collect();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in cells {
        line(r);
    }
}

/// One column of a [`wire_table`]: the header and the row's field, which the cell shows as the
/// API writes it (see [`wire_cell`]).
pub(crate) type WireColumn<T> = (&'static str, fn(&T) -> String);

/// Rows of a wire type under `columns`: each header sits beside the field it shows.
pub(crate) fn wire_table<T>(rows: &[T], columns: &[WireColumn<T>]) {
    let headers: Vec<&str> = columns.iter().map(|(header, _)| *header).collect();
    table(&headers, rows, |r| {
        columns.iter().map(|(_, field)| field(r)).collect()
    });
}

/// A flag's text as the wire value the API reads (an enum's spelling, a UUID, an RFC 3339
/// time); a value the API would refuse fails here, naming the flag.
pub(crate) fn flag<T: DeserializeOwned>(name: &str, text: &str) -> anyhow::Result<T> {
    serde_json::from_value(Value::String(text.to_string())).map_err(|e| anyhow!("{name}: {e}"))
}

/// [`flag`] of an optional flag.
pub(crate) fn opt_flag<T: DeserializeOwned>(
    name: &str,
    text: Option<String>,
) -> anyhow::Result<Option<T>> {
    text.map(|t| flag(name, &t)).transpose()
}

/// The wire value of a request body.
pub(crate) fn body<T: Serialize>(request: &T) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(request)?)
}

/// An answer read as its wire type.
pub(crate) fn read<T: DeserializeOwned>(v: &Value) -> anyhow::Result<T> {
    serde_json::from_value(v.clone()).context("unexpected answer from the control plane")
}

/// A table cell of a wire value, as the API writes it.
pub(crate) fn wire_cell<T: Serialize>(v: &T) -> String {
    cell(&serde_json::to_value(v).unwrap_or(Value::Null))
}
