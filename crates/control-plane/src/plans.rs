//! Plans and their limits: one table, used by every check.
//!
//! A self-hosted platform has no payment provider: admins set plans (`PATCH
//! /v1/admin/customers/{id}/plan`). The limits are defaults in code for now.

use crate::api::{InstanceSize, Plan};

/// What a plan allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Non-deleted databases per customer (`None` = unlimited).
    pub max_databases: Option<usize>,
    /// Largest instance size.
    pub max_instance_size: InstanceSize,
    /// `reflexdbCustomDomain` allowed.
    pub custom_domains: bool,
}

/// The limits of `plan`.
pub fn limits(plan: Plan) -> PlanLimits {
    match plan {
        Plan::Free => PlanLimits {
            max_databases: Some(2),
            max_instance_size: InstanceSize::Small,
            custom_domains: false,
        },
        Plan::Pro => PlanLimits {
            max_databases: Some(10),
            max_instance_size: InstanceSize::Large,
            custom_domains: false,
        },
        Plan::Teams => PlanLimits {
            max_databases: Some(50),
            max_instance_size: InstanceSize::Xlarge,
            custom_domains: true,
        },
        Plan::Enterprise => PlanLimits {
            max_databases: None,
            max_instance_size: InstanceSize::X2large,
            custom_domains: true,
        },
    }
}
