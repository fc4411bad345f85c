//! Random ids, API tokens (`dkc_<keyId>.<secret>`, only the SHA-256 of the secret is stored),
//! generated passwords, and scopes.

use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use sha2::{Digest, Sha256};

/// The scope that allows reading databases and credentials.
pub const SCOPE_READ: &str = "databases:read";
/// The scope that allows creating, changing and deleting databases (and reading them).
pub const SCOPE_WRITE: &str = "databases:write";
/// Every scope a token may carry.
pub const SCOPES: &[&str] = &[SCOPE_READ, SCOPE_WRITE];

/// Length of generated passwords (the spec asks for at least 24).
pub const PASSWORD_LEN: usize = 32;

/// `prefix` + `len` random lowercase alphanumerics (`db_k3j…`, `tok_…`).
pub fn random_id(prefix: &str, len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    let tail: String = (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    format!("{prefix}{tail}")
}

/// A generated password: [`PASSWORD_LEN`] random alphanumerics (safe in URLs and config files
/// without quoting; ~190 bits).
pub fn password() -> String {
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, PASSWORD_LEN)
}

/// A new API token: the full token (shown once), its public key id and the hash to store.
pub struct NewToken {
    /// `dkc_<keyId>.<secret>`.
    pub token: String,
    /// The public part, used to look the token up.
    pub key_id: String,
    /// SHA-256 hex of the secret part.
    pub secret_sha256: String,
}

/// Generates a `dkc_` token: 16 characters of key id, 43 of secret.
pub fn generate() -> NewToken {
    let key_id = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 16);
    let secret = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 43);
    NewToken {
        token: format!("dkc_{key_id}.{secret}"),
        secret_sha256: sha256_hex(&secret),
        key_id,
    }
}

/// Splits `dkc_<keyId>.<secret>`; `None` when malformed.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    parse_prefixed("dkc", token)
}

/// Splits `prefix_<keyId>.<secret>` (`dkc`, and the control plane's `rmk`/`rxk`); `None` when
/// malformed.
pub fn parse_prefixed<'a>(prefix: &str, token: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = token.strip_prefix(prefix)?.strip_prefix('_')?;
    let (key_id, secret) = rest.split_once('.')?;
    let ok =
        |s: &str| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (ok(key_id) && ok(secret)).then_some((key_id, secret))
}

/// SHA-256 of a secret, lowercase hex.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two hashes in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What a caller may do, from its token's scopes (no scopes = full access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// May read databases and credentials.
    pub read: bool,
    /// May create, change and delete databases.
    pub write: bool,
    /// May manage API tokens (management keys and unscoped tokens only).
    pub tokens: bool,
}

impl Access {
    /// Full access (a management key, or a token without scopes).
    pub const FULL: Access = Access {
        read: true,
        write: true,
        tokens: true,
    };

    /// The access granted by a token's scopes.
    pub fn from_scopes(scopes: &[String]) -> Access {
        if scopes.is_empty() {
            return Access::FULL;
        }
        let write = scopes.iter().any(|s| s == SCOPE_WRITE);
        Access {
            read: write || scopes.iter().any(|s| s == SCOPE_READ),
            write,
            tokens: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let t = generate();
        let (id, secret) = parse(&t.token).unwrap();
        assert_eq!(id, t.key_id);
        assert!(constant_time_eq(&sha256_hex(secret), &t.secret_sha256));
        assert!(parse("rmk_a.b").is_none());
        assert!(parse("dkc_a").is_none());
        assert!(parse("dkc_a.b-c").is_none());
    }

    #[test]
    fn ids_and_passwords() {
        let id = random_id("db_", 12);
        assert!(
            id.len() == 15
                && id[3..]
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        let p = password();
        assert!(p.len() >= 24 && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(p, password());
    }

    #[test]
    fn scopes() {
        assert_eq!(Access::from_scopes(&[]), Access::FULL);
        let r = Access::from_scopes(&[SCOPE_READ.into()]);
        assert!(r.read && !r.write && !r.tokens);
        let w = Access::from_scopes(&[SCOPE_WRITE.into()]);
        assert!(w.read && w.write && !w.tokens);
    }
}
