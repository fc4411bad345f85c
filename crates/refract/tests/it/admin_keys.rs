//! The admin cannot lock itself out: revoking the account's last valid management key is a 409,
//! and `refract admin new-key --data-dir DIR` gives the operator a fresh admin key offline.

use std::process::Command;

use refract_api::{CreateManagementKeyRequest, ErrorBody, ManagementKey};
use serde_json::Value;

use crate::common::{refract_bin, wire_answer, wire_body, ControlPlane};

/// Each key's id and whether it is not revoked.
fn key_ids(cp: &ControlPlane, token: &str) -> Vec<(String, bool)> {
    let answer = cp.call("GET", "/v1/account/management-keys", Some(token), None);
    let keys: Vec<ManagementKey> = wire_answer("list keys", 200, answer);
    keys.iter()
        .map(|k| (k.id.to_string(), k.revoked_at.is_none()))
        .collect()
}

#[test]
fn the_last_valid_key_cannot_be_revoked_and_new_key_recovers_access() {
    let cp = ControlPlane::start_fresh();
    let admin = cp.admin_key.clone();
    let ids = key_ids(&cp, &admin);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let first = ids[0].0.clone();

    // The only key: refused, and it keeps working.
    let answer = cp.call(
        "DELETE",
        &format!("/v1/account/management-keys/{first}"),
        Some(&admin),
        None,
    );
    let refused: ErrorBody = wire_answer("revoke the only key", 409, answer);
    assert_eq!(refused.error, "conflict");
    assert!(
        refused.message.contains("last valid management key"),
        "{refused:?}"
    );
    assert_eq!(cp.call("GET", "/v1/connections", Some(&admin), None).0, 200);

    // With a second key, the first can go; then the second is the last one.
    let request = CreateManagementKeyRequest {
        name: "second".into(),
        expires_at: None,
    };
    let answer = cp.call(
        "POST",
        "/v1/account/management-keys",
        Some(&admin),
        Some(wire_body(&request)),
    );
    let created: ManagementKey = wire_answer("create a key", 201, answer);
    let second_key = created.key.expect("the new key's secret");
    let second = created.id.to_string();
    let answer = cp.call(
        "DELETE",
        &format!("/v1/account/management-keys/{first}"),
        Some(&second_key),
        None,
    );
    let revoked: ManagementKey = wire_answer("revoke the first key", 200, answer);
    assert_eq!(revoked.id.to_string(), first);
    assert!(revoked.revoked_at.is_some(), "{revoked:?}");
    let answer = cp.call(
        "DELETE",
        &format!("/v1/account/management-keys/{second}"),
        Some(&second_key),
        None,
    );
    let refused: ErrorBody = wire_answer("revoke the last key", 409, answer);
    assert_eq!(refused.error, "conflict");

    // The operator's recovery: offline, on the data directory, while serve runs.
    let out = Command::new(refract_bin())
        .args(["admin", "new-key", "--data-dir"])
        .arg(&cp.dir)
        .env_remove("REFRACT_MASTER_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recovered = std::fs::read_to_string(cp.dir.join("admin-key"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(recovered, admin);
    let (s, v): (u16, Value) = cp.call("GET", "/v1/connections", Some(&recovered), None);
    assert_eq!(s, 200, "{v}");
    // It is an admin key: the admin routes answer.
    assert_eq!(
        cp.call("GET", "/v1/admin/customers", Some(&recovered), None)
            .0,
        200
    );
    // Not a data directory: a clear error.
    let out = Command::new(refract_bin())
        .args(["admin", "new-key", "--data-dir", "/nonexistent/refract"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Refract data directory"));
}
