//! The fields of the Knative (and Ingress) resources that this project's own
//! rules read: the contract, the environment, the traffic arithmetic, the
//! wiring. Whether a resource is valid at all (unknown or misplaced fields,
//! types) is checked against the upstream schemas ([`crate::schemas`]), so
//! these structs read leniently and model nothing else.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Deserialize;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    pub template: RevisionTemplate,
    #[serde(default)]
    pub traffic: Option<Vec<TrafficTarget>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionTemplate {
    #[serde(default)]
    pub metadata: TemplateMeta,
    pub spec: RevisionSpec,
}

/// The revision's metadata: `name` is a BYO revision name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSpec {
    #[serde(default)]
    pub container_concurrency: Option<u32>,
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
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
    pub security_context: Option<SecurityContext>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default)]
    pub name: Option<String>,
    pub container_port: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_from: Option<EnvVarSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    #[serde(default)]
    pub config_map_key_ref: Option<KeyRef>,
    #[serde(default)]
    pub secret_key_ref: Option<KeyRef>,
    #[serde(default)]
    pub field_ref: Option<FieldRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource {
    #[serde(default)]
    pub config_map_ref: Option<NameRef>,
    #[serde(default)]
    pub secret_ref: Option<NameRef>,
    #[serde(default)]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NameRef {
    pub name: String,
}

/// Which resources are requested and limited (the quantities' values are
/// the schema's business).
#[derive(Debug, Clone, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub requests: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub limits: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(default)]
    pub http_get: Option<HttpGet>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpGet {
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    #[serde(default)]
    pub run_as_non_root: Option<bool>,
    #[serde(default)]
    pub run_as_user: Option<i64>,
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
pub struct Capabilities {
    #[serde(default)]
    pub drop: Vec<String>,
    #[serde(default)]
    pub add: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeccompProfile {
    #[serde(rename = "type")]
    pub type_: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
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
#[serde(rename_all = "camelCase")]
pub struct KReference {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: Labels,
    #[serde(default)]
    pub match_expressions: Vec<serde_yaml::Value>,
}

/// Where events go: an object (`ref`) or a URI.
#[derive(Debug, Clone, Deserialize)]
pub struct Destination {
    #[serde(default, rename = "ref")]
    pub ref_: Option<KReference>,
    #[serde(default)]
    pub uri: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SinkBinding {
    pub metadata: ObjectMeta,
    pub spec: SinkBindingSpec,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SinkBindingSpec {
    pub subject: KReference,
    pub sink: Destination,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Broker {
    pub metadata: ObjectMeta,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Trigger {
    pub metadata: ObjectMeta,
    pub spec: TriggerSpec,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TriggerSpec {
    pub broker: String,
    #[serde(default)]
    pub filter: Option<TriggerFilter>,
    pub subscriber: Destination,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TriggerFilter {
    #[serde(default)]
    pub attributes: Labels,
}

/// eventing-redis' RedisStreamSource (sources.knative.dev/v1alpha1).
#[derive(Debug, Clone, Deserialize)]
pub struct RedisStreamSource {
    pub metadata: ObjectMeta,
    pub spec: RedisStreamSourceSpec,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisStreamSourceSpec {
    pub stream: String,
    pub sink: Destination,
}

// ---------------------------------------------------------------- networking.k8s.io/v1 Ingress

#[derive(Debug, Clone, Deserialize)]
pub struct Ingress {
    pub metadata: ObjectMeta,
    pub spec: IngressSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    #[serde(default)]
    pub ingress_class_name: Option<String>,
    #[serde(default)]
    pub rules: Vec<IngressRule>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IngressRule {
    pub host: String,
    pub http: HttpIngressRule,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpIngressRule {
    pub paths: Vec<IngressPath>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IngressPath {
    pub backend: IngressBackend,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IngressBackend {
    pub service: IngressServiceBackend,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IngressServiceBackend {
    pub name: String,
}

// ---------------------------------------------------------------- dispatch

/// A resource of a kind read here.
#[derive(Debug, Clone)]
pub enum Typed {
    Service(Box<Service>),
    SinkBinding(SinkBinding),
    Broker(Broker),
    Trigger(Trigger),
    RedisStreamSource(RedisStreamSource),
    Ingress(Ingress),
}

/// Reads `doc` when it is one of the kinds above (`Ok(None)` otherwise). A
/// kind under another apiVersion is not read: the schema check names it.
pub fn parse(doc: &serde_yaml::Value) -> anyhow::Result<Option<Typed>> {
    let (api, kind) = crate::yaml::type_of(doc);
    let ctx = || format!("{kind} {} ({api})", crate::yaml::name_of(doc));
    let v = doc.clone();
    Ok(Some(match (api.as_str(), kind.as_str()) {
        ("serving.knative.dev/v1", "Service") => {
            Typed::Service(Box::new(serde_yaml::from_value(v).with_context(ctx)?))
        }
        ("sources.knative.dev/v1", "SinkBinding") => {
            Typed::SinkBinding(serde_yaml::from_value(v).with_context(ctx)?)
        }
        ("eventing.knative.dev/v1", "Broker") => {
            Typed::Broker(serde_yaml::from_value(v).with_context(ctx)?)
        }
        ("eventing.knative.dev/v1", "Trigger") => {
            Typed::Trigger(serde_yaml::from_value(v).with_context(ctx)?)
        }
        ("sources.knative.dev/v1alpha1", "RedisStreamSource") => {
            Typed::RedisStreamSource(serde_yaml::from_value(v).with_context(ctx)?)
        }
        ("networking.k8s.io/v1", "Ingress") => {
            Typed::Ingress(serde_yaml::from_value(v).with_context(ctx)?)
        }
        _ => return Ok(None),
    }))
}
