//! Small inline-SVG charts of a database's page (not yet sampled: see docs/dashboard.md).

use uuid::Uuid;

use super::common::DashState;

/// The chart block of a database's page; empty until samples exist.
pub fn database_chart(_s: &DashState, _id: Uuid) -> String {
    String::new()
}
