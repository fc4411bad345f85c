//! Tests of the Kubernetes driver: golden files of the objects it builds, and the driver driven
//! through `kube::Client` against the fake API server (a test double, not a cluster).

mod common;
mod deploy;
mod driver;
mod golden;
mod real_cluster;
mod servers;
