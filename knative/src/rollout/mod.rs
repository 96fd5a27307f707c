//! Progressive delivery: the automated canary and blue/green rollouts of
//! the `rollout` command, and a model of what kn and Knative Serving accept,
//! used to check the kn commands offline.

pub mod serving_model;
