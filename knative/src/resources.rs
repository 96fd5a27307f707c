//! Typed models of the Knative (and Ingress) resources this project uses.
//! Every struct denies unknown fields: a misspelt or misplaced field
//! (`containerconcurrency`, `env` under the template's metadata, ...) is an
//! error here instead of a field the API server drops or rejects later. A
//! field that is valid but not modelled yet is added here, on purpose.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Deserialize;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
}

// ---------------------------------------------------------------- serving.knative.dev/v1 Service

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    pub template: RevisionTemplate,
    #[serde(default)]
    pub traffic: Option<Vec<TrafficTarget>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevisionTemplate {
    #[serde(default)]
    pub metadata: TemplateMeta,
    pub spec: RevisionSpec,
}

/// The revision's metadata: `name` is a BYO revision name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevisionSpec {
    #[serde(default)]
    pub container_concurrency: Option<u32>,
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    #[serde(default)]
    pub response_start_timeout_seconds: Option<u32>,
    #[serde(default)]
    pub idle_timeout_seconds: Option<u32>,
    #[serde(default)]
    pub service_account_name: Option<String>,
    #[serde(default)]
    pub image_pull_secrets: Vec<NameRef>,
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub env_from: Vec<EnvFromSource>,
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub readiness_probe: Option<Probe>,
    #[serde(default)]
    pub liveness_probe: Option<Probe>,
    #[serde(default)]
    pub startup_probe: Option<Probe>,
    #[serde(default)]
    pub security_context: Option<SecurityContext>,
    #[serde(default)]
    pub image_pull_policy: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default)]
    pub name: Option<String>,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_from: Option<EnvVarSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVarSource {
    #[serde(default)]
    pub config_map_key_ref: Option<KeyRef>,
    #[serde(default)]
    pub secret_key_ref: Option<KeyRef>,
    #[serde(default)]
    pub field_ref: Option<FieldRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyRef {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
    #[serde(default)]
    pub api_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvFromSource {
    #[serde(default)]
    pub config_map_ref: Option<NameRef>,
    #[serde(default)]
    pub secret_ref: Option<NameRef>,
    #[serde(default)]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NameRef {
    pub name: String,
    #[serde(default)]
    pub optional: Option<bool>,
}

/// A resource quantity: `"100m"`, `"1"`, or a bare YAML number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    Text(String),
    Int(i64),
    Float(f64),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
    #[serde(default)]
    pub limits: BTreeMap<String, Quantity>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probe {
    #[serde(default)]
    pub http_get: Option<HttpGet>,
    #[serde(default)]
    pub tcp_socket: Option<TcpSocket>,
    #[serde(default)]
    pub grpc: Option<GrpcProbe>,
    #[serde(default)]
    pub initial_delay_seconds: Option<u32>,
    #[serde(default)]
    pub period_seconds: Option<u32>,
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    #[serde(default)]
    pub success_threshold: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGet {
    pub path: String,
    /// Knative fills in the container port when it is left out.
    #[serde(default)]
    pub port: Option<serde_yaml::Value>,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpSocket {
    #[serde(default)]
    pub port: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrpcProbe {
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub service: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityContext {
    #[serde(default)]
    pub run_as_non_root: Option<bool>,
    #[serde(default)]
    pub run_as_user: Option<i64>,
    #[serde(default)]
    pub run_as_group: Option<i64>,
    #[serde(default)]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(default)]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    #[serde(default)]
    pub seccomp_profile: Option<SeccompProfile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capabilities {
    #[serde(default)]
    pub drop: Vec<String>,
    #[serde(default)]
    pub add: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeccompProfile {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub localhost_profile: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrafficTarget {
    #[serde(default)]
    pub revision_name: Option<String>,
    #[serde(default)]
    pub latest_revision: Option<bool>,
    #[serde(default)]
    pub percent: Option<u32>,
    #[serde(default)]
    pub tag: Option<String>,
}

// ---------------------------------------------------------------- eventing

/// A reference to an object, as a sink or a SinkBinding subject.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KReference {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: Labels,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// Where events go: an object (`ref`) or a URI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Destination {
    #[serde(default, rename = "ref")]
    pub ref_: Option<KReference>,
    #[serde(default)]
    pub uri: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CeOverrides {
    #[serde(default)]
    pub extensions: Labels,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SinkBinding {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: SinkBindingSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SinkBindingSpec {
    pub subject: KReference,
    pub sink: Destination,
    #[serde(default)]
    pub ce_overrides: Option<CeOverrides>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Delivery {
    #[serde(default)]
    pub dead_letter_sink: Option<Destination>,
    #[serde(default)]
    pub retry: Option<u32>,
    #[serde(default)]
    pub backoff_policy: Option<BackoffPolicy>,
    /// ISO 8601 duration, e.g. `PT0.2S`.
    #[serde(default)]
    pub backoff_delay: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicy {
    Linear,
    Exponential,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Broker {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<BrokerSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BrokerSpec {
    #[serde(default)]
    pub config: Option<KReference>,
    #[serde(default)]
    pub delivery: Option<Delivery>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Trigger {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: TriggerSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TriggerSpec {
    pub broker: String,
    #[serde(default)]
    pub filter: Option<TriggerFilter>,
    pub subscriber: Destination,
    #[serde(default)]
    pub delivery: Option<Delivery>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TriggerFilter {
    #[serde(default)]
    pub attributes: Labels,
}

/// eventing-redis' RedisStreamSource (sources.knative.dev/v1alpha1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisStreamSource {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: RedisStreamSourceSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisStreamSourceSpec {
    pub address: String,
    pub stream: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub consumers: Option<u32>,
    pub sink: Destination,
    #[serde(default)]
    pub ce_overrides: Option<CeOverrides>,
}

// ---------------------------------------------------------------- networking.k8s.io/v1 Ingress

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ingress {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: IngressSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressSpec {
    #[serde(default)]
    pub ingress_class_name: Option<String>,
    #[serde(default)]
    pub rules: Vec<IngressRule>,
    #[serde(default)]
    pub tls: Vec<IngressTls>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressRule {
    pub host: String,
    pub http: HttpIngressRule,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpIngressRule {
    pub paths: Vec<IngressPath>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressPath {
    pub path: String,
    pub path_type: PathType,
    pub backend: IngressBackend,
}

#[derive(Debug, Clone, Deserialize)]
pub enum PathType {
    Prefix,
    Exact,
    ImplementationSpecific,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressBackend {
    pub service: IngressServiceBackend,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressServiceBackend {
    pub name: String,
    pub port: ServiceBackendPort,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceBackendPort {
    #[serde(default)]
    pub number: Option<u16>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressTls {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub secret_name: Option<String>,
}

// ---------------------------------------------------------------- dispatch

/// A resource of a kind modelled here, parsed strictly.
#[derive(Debug, Clone)]
pub enum Typed {
    Service(Box<Service>),
    SinkBinding(SinkBinding),
    Broker(Broker),
    Trigger(Trigger),
    RedisStreamSource(RedisStreamSource),
    Ingress(Ingress),
}

/// The (apiVersion, kind) pairs modelled here.
pub const MODELLED: &[(&str, &str)] = &[
    ("serving.knative.dev/v1", "Service"),
    ("sources.knative.dev/v1", "SinkBinding"),
    ("eventing.knative.dev/v1", "Broker"),
    ("eventing.knative.dev/v1", "Trigger"),
    ("sources.knative.dev/v1alpha1", "RedisStreamSource"),
    ("networking.k8s.io/v1", "Ingress"),
];

/// Parses `doc` strictly when its kind is modelled (`Ok(None)` otherwise).
/// A known kind under another apiVersion is an error: the models are for the
/// versions above.
pub fn parse(doc: &serde_yaml::Value) -> anyhow::Result<Option<Typed>> {
    let (api, kind) = crate::yaml::type_of(doc);
    let name = crate::yaml::name_of(doc);
    let known_kind = MODELLED.iter().any(|(_, k)| *k == kind)
        && (api.contains("knative.dev") || kind == "Ingress");
    if !MODELLED.contains(&(api.as_str(), kind.as_str())) {
        if known_kind {
            anyhow::bail!(
                "{kind} {name}: apiVersion {api} is not the one this project uses ({})",
                expected_api(&kind)
            );
        }
        return Ok(None);
    }
    let ctx = || format!("{kind} {name} ({api})");
    let v = doc.clone();
    Ok(Some(match kind.as_str() {
        "Service" => Typed::Service(Box::new(serde_yaml::from_value(v).with_context(ctx)?)),
        "SinkBinding" => Typed::SinkBinding(serde_yaml::from_value(v).with_context(ctx)?),
        "Broker" => Typed::Broker(serde_yaml::from_value(v).with_context(ctx)?),
        "Trigger" => Typed::Trigger(serde_yaml::from_value(v).with_context(ctx)?),
        "RedisStreamSource" => {
            Typed::RedisStreamSource(serde_yaml::from_value(v).with_context(ctx)?)
        }
        "Ingress" => Typed::Ingress(serde_yaml::from_value(v).with_context(ctx)?),
        _ => unreachable!("every modelled kind is matched"),
    }))
}

fn expected_api(kind: &str) -> String {
    MODELLED
        .iter()
        .filter(|(_, k)| *k == kind)
        .map(|(a, _)| *a)
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(spec_extra: &str) -> String {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          image: i\n{spec_extra}"
        )
    }

    fn parse_str(s: &str) -> anyhow::Result<Option<Typed>> {
        parse(&serde_yaml::from_str(s).unwrap())
    }

    #[test]
    fn a_valid_service_parses() {
        assert!(matches!(
            parse_str(&service("")).unwrap(),
            Some(Typed::Service(_))
        ));
    }

    #[test]
    fn a_misspelt_field_is_an_error() {
        let err = parse_str(&service(
            "          readinesProbe:\n            httpGet:\n              path: /readyz\n",
        ))
        .unwrap_err();
        assert!(format!("{err:#}").contains("readinesProbe"), "{err:#}");
    }

    #[test]
    fn a_misplaced_field_is_an_error() {
        let s = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  template:\n    metadata:\n      containerConcurrency: 1\n    spec:\n      containers: []\n";
        assert!(format!("{:#}", parse_str(s).unwrap_err()).contains("containerConcurrency"));
    }

    #[test]
    fn a_wrong_api_version_is_an_error() {
        let s = "apiVersion: serving.knative.dev/v1alpha1\nkind: Service\nmetadata:\n  name: s\nspec: {}\n";
        assert!(
            parse_str(s)
                .unwrap_err()
                .to_string()
                .contains("serving.knative.dev/v1")
        );
    }

    #[test]
    fn other_kinds_are_left_alone() {
        assert!(
            parse_str("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn backoff_policy_is_checked() {
        let s = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\nspec:\n  delivery:\n    backoffPolicy: exponentail\n";
        assert!(parse_str(s).is_err());
    }
}
