//! Token format of management keys (`rmk_<keyId>.<secret>`) and query keys (`rxk_…`): generation,
//! parsing and hashing. Only the SHA-256 of the secret is ever stored.

use rand::RngCore;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Base62 of a byte string read as one big-endian number (no padding).
pub fn base62(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = bytes.to_vec();
    let mut out = Vec::new();
    // Long division by 62 until the number is zero.
    while digits.iter().any(|&d| d != 0) {
        let mut rem = 0u32;
        for d in digits.iter_mut() {
            let acc = (rem << 8) | *d as u32;
            *d = (acc / 62) as u8;
            rem = acc % 62;
        }
        out.push(BASE62[rem as usize]);
    }
    if out.is_empty() {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn random_base62(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    base62(&buf)
}

/// A freshly generated key: the full token to show once, and what to store.
#[derive(Debug)]
pub struct NewKey {
    /// `prefix_<keyId>.<secret>`, shown once.
    pub token: String,
    /// Public, non-secret id.
    pub key_id: String,
    /// SHA-256 hex of the secret.
    pub secret_sha256: String,
}

/// Generates a key with the given prefix (`rmk` or `rxk`): 12 random bytes of key id and 32
/// random bytes of secret, both base62.
pub fn generate(prefix: &str) -> NewKey {
    let key_id = random_base62(12);
    let secret = random_base62(32);
    NewKey {
        token: format!("{prefix}_{key_id}.{secret}"),
        secret_sha256: sha256_hex(&secret),
        key_id,
    }
}

// Parsing, hashing and comparing are the same for `dkc_` tokens of the managed API: one copy.
/// Splits `prefix_<keyId>.<secret>`; `None` when malformed.
pub use refract_managed::tokens::parse_prefixed as parse;
pub use refract_managed::tokens::{constant_time_eq, sha256_hex};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash() {
        let k = generate("rmk");
        let (id, secret) = parse("rmk", &k.token).unwrap();
        assert_eq!(id, k.key_id);
        assert!(
            secret.len() >= 42,
            "32 bytes of base62 is ~43 characters: {secret}"
        );
        assert!(constant_time_eq(&sha256_hex(secret), &k.secret_sha256));
        assert!(parse("rxk", &k.token).is_none());
        assert!(parse("rmk", "rmk_abc").is_none());
        assert!(parse("rmk", "rmk_.x").is_none());
        assert!(parse("rmk", "rmk_a.b-c").is_none());
    }

    #[test]
    fn base62_of_known_values() {
        assert_eq!(base62(&[0]), "0");
        assert_eq!(base62(&[61]), "z");
        assert_eq!(base62(&[62]), "10");
        assert_eq!(base62(&[1, 0]), "48"); // 256 = 4*62 + 8
    }
}
