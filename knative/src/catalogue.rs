//! The facts the manifests are checked against: the functions, every
//! environment variable each one reads (its declaration in the function's
//! crate: `runtime::Settings::VARS`, so nothing here repeats a name), the
//! metrics each one exports, and the CloudEvent types.

use runtime::Settings;
use runtime::settings::{self, SetBy};

pub use runtime::settings::Var;

/// What happens on a cluster when a variable is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// A default that is right on a cluster too.
    Value(&'static str),
    /// A default that is right on one machine only (a loopback address, a
    /// path in the source tree). Must be set in every Service that uses it.
    Local(&'static str),
    /// Unset turns a feature off, or has a documented meaning.
    Unset,
    /// No default that works: must be set in every Service that uses it.
    Required,
    /// Set by Knative Serving or Kubernetes (PORT, K_SERVICE, HOSTNAME...).
    Platform,
    /// Injected by a SinkBinding or a source (K_SINK, K_CE_OVERRIDES).
    Binding,
}

/// `var`'s default as a Service sees it, from its declaration.
pub fn on_cluster(var: &Var) -> Default {
    match (var.set_by, var.default) {
        (SetBy::Platform, _) => Default::Platform,
        (SetBy::Binding, _) => Default::Binding,
        (SetBy::User, settings::Default::Value(d) | settings::Default::Computed(d)) => {
            Default::Value(d)
        }
        (SetBy::User, settings::Default::Local(d)) => Default::Local(d),
        (SetBy::User, settings::Default::Unset) => Default::Unset,
        (SetBy::User, settings::Default::Required) => Default::Required,
    }
}

/// A function: a binary of the workspace, deployed as one or more Knative Services.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    /// The binary's name (and the image name's last segment).
    pub name: &'static str,
    /// Variables this function reads besides [`COMMON_VARS`].
    pub vars: &'static [Var],
    /// Metrics this function exports besides [`COMMON_METRICS`].
    pub metrics: &'static [&'static str],
    /// Sends CloudEvents on, so every deployment needs a K_SINK.
    pub needs_sink: bool,
    /// The container port name Knative must see (`h2c` for gRPC).
    pub port_name: &'static str,
}

/// Read by every function (the runtime crate).
pub const COMMON_VARS: &[Var] = runtime::Config::VARS;

/// Whether `name` carries credentials, so only ever comes from a Secret
/// (secretKeyRef): some function declares it secret.
pub fn is_secret(name: &str) -> bool {
    FUNCTIONS
        .iter()
        .flat_map(|f| f.all_vars())
        .any(|v| v.name == name && v.secret)
}

/// `F`'s name and variables, from its declaration.
const fn declared<F: runtime::Function>() -> (&'static str, &'static [Var]) {
    (F::NAME, <F::Config as Settings>::VARS)
}

/// Variables Knative Serving sets itself and refuses in a Service's env.
pub const KNATIVE_RESERVED: &[&str] = &["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"];

/// Exported by every function (the runtime crate).
pub const COMMON_METRICS: &[&str] = &[
    "http_requests_total",
    "http_request_duration_seconds",
    "http_requests_in_flight",
    "http_request_errors_total",
    "function_info",
    "function_start_to_listen_seconds",
];

const WRITER_METRICS: [&str; 4] = [
    "writer_cases_stored_total",
    "writer_cases_duplicate_total",
    "writer_batch_size",
    "writer_write_duration_seconds",
];

pub const FUNCTIONS: &[Function] = &[
    Function {
        name: declared::<ingest::Function>().0,
        vars: declared::<ingest::Function>().1,
        metrics: &[
            "ingest_cases_accepted_total",
            "ingest_requests_refused_total",
            "ingest_grpc_call_requests",
        ],
        needs_sink: false,
        port_name: "http1",
    },
    Function {
        name: declared::<grpc_writer::Function>().0,
        vars: declared::<grpc_writer::Function>().1,
        metrics: &WRITER_METRICS,
        needs_sink: true,
        port_name: "h2c",
    },
    Function {
        name: declared::<redis_sub::Function>().0,
        vars: declared::<redis_sub::Function>().1,
        metrics: &[
            WRITER_METRICS[0],
            WRITER_METRICS[1],
            WRITER_METRICS[2],
            WRITER_METRICS[3],
            "redis_sub_pending_entries",
            "redis_sub_claimed_total",
        ],
        needs_sink: true,
        port_name: "http1",
    },
    Function {
        name: declared::<aggregate::Function>().0,
        vars: declared::<aggregate::Function>().1,
        metrics: &["aggregate_cases_counted_total"],
        needs_sink: false,
        port_name: "http1",
    },
    Function {
        name: declared::<dashboard_api::Function>().0,
        vars: declared::<dashboard_api::Function>().1,
        metrics: &["dashboard_sse_clients"],
        needs_sink: false,
        port_name: "http1",
    },
];

/// The CloudEvent types of the pipeline (Trigger filters use these).
pub const EVENT_TYPES: &[&str] = &[
    "io.covidrealtime.case.reported.v1",
    "io.covidrealtime.case.stored.v2",
    "io.covidrealtime.stats.updated.v1",
];

/// The function called `name`.
pub fn function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

impl Function {
    /// Every variable this function reads: common ones, then its own.
    pub fn all_vars(&self) -> impl Iterator<Item = &'static Var> + '_ {
        COMMON_VARS.iter().chain(self.vars.iter())
    }

    /// The variable `name`, if this function reads it.
    pub fn var(&self, name: &str) -> Option<&'static Var> {
        // Own entries first: they override the common ones' defaults.
        self.vars
            .iter()
            .chain(COMMON_VARS.iter())
            .find(|v| v.name == name)
    }

    /// Every metric this function exports.
    pub fn all_metrics(&self) -> impl Iterator<Item = &'static str> + '_ {
        COMMON_METRICS.iter().chain(self.metrics.iter()).copied()
    }
}

/// Every metric name any function exports.
pub fn all_metric_names() -> std::collections::BTreeSet<&'static str> {
    FUNCTIONS.iter().flat_map(|f| f.all_metrics()).collect()
}
