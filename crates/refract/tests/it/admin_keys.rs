//! The admin cannot lock itself out: revoking the account's last valid management key is a 409,
//! and `refract admin new-key --data-dir DIR` gives the operator a fresh admin key offline.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::{refract_bin, ControlPlane};

fn key_ids(cp: &ControlPlane, token: &str) -> Vec<(String, bool)> {
    let (s, v) = cp.call("GET", "/v1/account/management-keys", Some(token), None);
    assert_eq!(s, 200, "{v}");
    let list = v["managementKeys"]
        .as_array()
        .or_else(|| v["keys"].as_array())
        .or_else(|| v.as_array())
        .unwrap_or_else(|| panic!("no key list in {v}"))
        .clone();
    list.iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_string(),
                k["revokedAt"].is_null(),
            )
        })
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
    let (s, v) = cp.call(
        "DELETE",
        &format!("/v1/account/management-keys/{first}"),
        Some(&admin),
        None,
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"], "conflict");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("last valid management key"),
        "{v}"
    );
    assert_eq!(cp.call("GET", "/v1/connections", Some(&admin), None).0, 200);

    // With a second key, the first can go; then the second is the last one.
    let (s, v) = cp.call(
        "POST",
        "/v1/account/management-keys",
        Some(&admin),
        Some(json!({"name": "second"})),
    );
    assert_eq!(s, 201, "{v}");
    let second_key = v["key"].as_str().unwrap().to_string();
    let second = v["id"].as_str().unwrap().to_string();
    let (s, v) = cp.call(
        "DELETE",
        &format!("/v1/account/management-keys/{first}"),
        Some(&second_key),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = cp.call(
        "DELETE",
        &format!("/v1/account/management-keys/{second}"),
        Some(&second_key),
        None,
    );
    assert_eq!(s, 409, "{v}");

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
