//! Request and response types of the lifecycle routes: the wire types of `refract-api`
//! (JSON field names as in `control-plane-api.md`), and what the health poller stores.

use std::collections::BTreeMap;

pub use refract_api::{
    ActionInfo, ActionResponse, Actions, BuildView, BuildsResponse, ConnectionLimits,
    CreateQueryKeyRequest, EventView, EventsQuery, EventsResponse, InstanceStatusResponse,
    InstanceView, OperationView, QueryKey, RedeployRequest, ResizeRequest, SchemaField,
    SchemaRelation, SchemaTable, SchemaView,
};

/// Row counts by table, as the health poller stores them.
pub type RowCounts = BTreeMap<String, i64>;
