//! Plans and their limits: one table, used by every check.
//!
//! A self-hosted platform has no payment provider: admins set plans (`PATCH
//! /v1/admin/customers/{id}/plan`). The limits are defaults in code for now.

use crate::api::{InstanceSize, Plan, PlanLimitsView};

/// What a plan allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Non-deleted databases per customer (`None` = unlimited).
    pub max_databases: Option<usize>,
    /// Largest instance size.
    pub max_instance_size: InstanceSize,
    /// `reflexdbCustomDomain` allowed.
    pub custom_domains: bool,
    /// Managed servers (`/api/v1/databases`; each replica is a server) per customer (`None` =
    /// unlimited).
    pub managed_servers: Option<i64>,
    /// Plan memory of those servers in total, MiB (`None` = unlimited).
    pub managed_memory_mib: Option<i64>,
}

/// The limits of `plan`.
pub fn limits(plan: Plan) -> PlanLimits {
    match plan {
        Plan::Free => PlanLimits {
            max_databases: Some(2),
            max_instance_size: InstanceSize::Small,
            custom_domains: false,
            managed_servers: Some(5),
            managed_memory_mib: Some(8192),
        },
        Plan::Pro => PlanLimits {
            max_databases: Some(10),
            max_instance_size: InstanceSize::Large,
            custom_domains: false,
            managed_servers: Some(10),
            managed_memory_mib: Some(32768),
        },
        Plan::Teams => PlanLimits {
            max_databases: Some(50),
            max_instance_size: InstanceSize::Xlarge,
            custom_domains: true,
            managed_servers: Some(50),
            managed_memory_mib: Some(262144),
        },
        Plan::Enterprise => PlanLimits {
            max_databases: None,
            max_instance_size: InstanceSize::X2large,
            custom_domains: true,
            managed_servers: None,
            managed_memory_mib: None,
        },
    }
}

impl From<PlanLimits> for PlanLimitsView {
    fn from(l: PlanLimits) -> Self {
        PlanLimitsView {
            max_databases: l.max_databases,
            max_instance_size: l.max_instance_size,
            custom_domains: l.custom_domains,
            max_managed_servers: l.managed_servers,
            max_managed_memory_mib: l.managed_memory_mib,
        }
    }
}
