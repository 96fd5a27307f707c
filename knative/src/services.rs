//! What every Knative Service of the pipeline must have: a known function's
//! image, the right port name, probes on the contract's routes, resources,
//! a locked-down security context and deliberate autoscaling.

use crate::Problems;
use crate::bundle::{Bundle, function_of};
use crate::catalogue;

/// Autoscaling annotations every revision template sets explicitly.
pub const REQUIRED_ANNOTATIONS: &[&str] = &[
    "autoscaling.knative.dev/min-scale",
    "autoscaling.knative.dev/max-scale",
    "autoscaling.knative.dev/initial-scale",
    "autoscaling.knative.dev/target",
];

pub fn check(bundle: &Bundle) -> Problems {
    let mut p = Problems::new();
    for s in bundle.services() {
        let name = &s.metadata.name;
        let t = &s.spec.template;
        if s.spec.template.spec.containers.len() != 1 {
            p.push(format!(
                "Service {name}: one container per function, found {}",
                t.spec.containers.len()
            ));
            continue;
        }
        let c = &t.spec.containers[0];
        let Some(fname) = function_of(s) else {
            continue;
        };
        let Some(function) = catalogue::function(&fname) else {
            p.push(format!(
                "Service {name}: image {} does not end in a function's name",
                c.image
            ));
            continue;
        };
        if t.metadata
            .labels
            .get("app.kubernetes.io/name")
            .map(String::as_str)
            != Some(function.name)
        {
            p.push(format!(
                "Service {name}: template label app.kubernetes.io/name must be {}",
                function.name
            ));
        }
        if t.metadata
            .labels
            .get("app.kubernetes.io/part-of")
            .map(String::as_str)
            != Some("covid-realtime")
        {
            p.push(format!("Service {name}: template label app.kubernetes.io/part-of=covid-realtime is what the PodMonitor selects"));
        }
        if let Some(rev) = &t.metadata.name
            && !rev.starts_with(&format!("{name}-"))
        {
            p.push(format!("Service {name}: revision name {rev} must start with \"{name}-\" (Knative rejects it otherwise)"));
        }
        match c.ports.as_slice() {
            [port]
                if port.name.as_deref() == Some(function.port_name)
                    && port.container_port == 8080 => {}
            _ => p.push(format!(
                "Service {name}: one port named {} on 8080 ({} speaks {} there)",
                function.port_name,
                function.name,
                if function.port_name == "h2c" {
                    "gRPC over h2c"
                } else {
                    "HTTP/1.1"
                }
            )),
        }
        let probe_path = |probe: &Option<crate::resources::Probe>| {
            probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .map(|h| h.path.clone())
        };
        if probe_path(&c.readiness_probe).as_deref() != Some("/readyz") {
            p.push(format!(
                "Service {name}: readinessProbe must be httpGet /readyz"
            ));
        }
        if probe_path(&c.liveness_probe).as_deref() != Some("/healthz") {
            p.push(format!(
                "Service {name}: livenessProbe must be httpGet /healthz"
            ));
        }
        match &c.resources {
            Some(r)
                if ["cpu", "memory"]
                    .iter()
                    .all(|k| r.requests.contains_key(*k))
                    && r.limits.contains_key("memory") => {}
            _ => p.push(format!(
                "Service {name}: resources need cpu and memory requests and a memory limit"
            )),
        }
        let sc = c.security_context.as_ref();
        let ok = sc.is_some_and(|sc| {
            sc.run_as_non_root == Some(true)
                && sc.read_only_root_filesystem == Some(true)
                && sc.allow_privilege_escalation == Some(false)
                && sc
                    .capabilities
                    .as_ref()
                    .is_some_and(|c| c.drop.iter().any(|d| d == "ALL") && c.add.is_empty())
                && sc
                    .seccomp_profile
                    .as_ref()
                    .is_some_and(|s| s.type_ == "RuntimeDefault")
                && sc.run_as_user.is_none_or(|u| u != 0)
        });
        if !ok {
            p.push(format!(
                "Service {name}: securityContext must have runAsNonRoot, readOnlyRootFilesystem, \
                 allowPrivilegeEscalation: false, capabilities drop ALL and seccompProfile RuntimeDefault"
            ));
        }
        for a in REQUIRED_ANNOTATIONS {
            if !t.metadata.annotations.contains_key(*a) {
                p.push(format!("Service {name}: template annotation {a} is not set (say what the function needs)"));
            }
        }
        for (k, v) in &t.metadata.annotations {
            if k.starts_with("autoscaling.knative.dev/")
                && k.ends_with("-scale")
                && v.parse::<u32>().is_err()
            {
                p.push(format!("Service {name}: {k}={v:?} is not a whole number"));
            }
        }
        let scale = |k: &str| {
            t.metadata
                .annotations
                .get(k)
                .and_then(|v| v.parse::<u32>().ok())
        };
        if let (Some(min), Some(max)) = (
            scale("autoscaling.knative.dev/min-scale"),
            scale("autoscaling.knative.dev/max-scale"),
        ) && max != 0
            && min > max
        {
            p.push(format!(
                "Service {name}: min-scale {min} is above max-scale {max}"
            ));
        }
        if t.spec.container_concurrency.is_none() {
            p.push(format!(
                "Service {name}: containerConcurrency is not set (0 = no hard limit; say so)"
            ));
        }
    }
    p
}
