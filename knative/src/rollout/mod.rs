//! Progressive delivery without a controller: the `rollout` command moves a
//! canary through its steps (or deploys green on its tag URL), measures the
//! new revision against the stable one over the same interval, checks the
//! gates, and promotes or rolls back by itself, printing a timeline.
//!
//! One file per concern: [`cli`] (flags, --help, exit codes), [`analysis`]
//! (the loop and the [`analysis::Router`] that moves traffic), [`gates`]
//! (the expressions a canary must satisfy), [`measure`] (the load generator
//! by `x-revision` or on tag URLs), [`prometheus`] (the same numbers by
//! PromQL), [`timeline`] (the table), [`kn`] (traffic on a cluster, through
//! knative/rollout.sh) and [`serving_model`] (what kn and Knative Serving
//! accept, to check the kn commands offline). The local rehearsal routes
//! with nginx instead (crate::rehearsal::canary).

pub mod analysis;
pub mod cli;
pub mod gates;
pub mod kn;
pub mod measure;
pub mod prometheus;
pub mod serving_model;
pub mod timeline;
