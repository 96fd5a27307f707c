//! Ingress: Knative on Contour with the project's domain; the nginx host
//! forwards to Contour's envoy and rewrites Host to the Knative hostname of a
//! public Service.

use knative_manifests::assert_no_problems;

use crate::common;

fn domain() -> String {
    let platform = common::bundle("platform");
    let cm = platform
        .of_kind("ConfigMap")
        .find(|c| c["metadata"]["name"] == "config-domain")
        .expect("config-domain");
    let domains: Vec<String> = cm["data"]
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    assert_eq!(domains.len(), 1, "one domain in config-domain: {domains:?}");
    domains[0].clone()
}

#[test]
fn knative_uses_contour() {
    let platform = common::bundle("platform");
    let cm = platform
        .of_kind("ConfigMap")
        .find(|c| c["metadata"]["name"] == "config-network")
        .expect("config-network");
    assert_eq!(
        cm["data"]["ingress-class"],
        "contour.ingress.networking.knative.dev"
    );
}

#[test]
fn the_nginx_host_reaches_a_public_knative_service() {
    let domain = domain();
    let default = common::bundle("overlays/default");
    let mut problems = Vec::new();
    let ingresses: Vec<_> = default.ingresses().collect();
    assert!(
        !ingresses.is_empty(),
        "an nginx Ingress for the second host"
    );
    for ing in ingresses {
        let name = &ing.metadata.name;
        if ing.spec.ingress_class_name.as_deref() != Some("nginx") {
            problems.push(format!("Ingress {name}: ingressClassName nginx"));
        }
        let Some(vhost) = ing
            .metadata
            .annotations
            .get("nginx.ingress.kubernetes.io/upstream-vhost")
        else {
            problems.push(format!("Ingress {name}: no upstream-vhost: Knative routes by Host and would not know this one"));
            continue;
        };
        let target = default.services().find(|s| {
            let ns = s.metadata.namespace.as_deref().unwrap_or("default");
            *vhost == format!("{}.{ns}.{domain}", s.metadata.name)
        });
        match target {
            None => problems.push(format!("Ingress {name}: upstream-vhost {vhost} is not <service>.<namespace>.{domain} of a Knative Service")),
            Some(s) if s.metadata.labels.contains_key("networking.knative.dev/visibility") => {
                problems.push(format!("Ingress {name}: {} is cluster-local; Contour's external envoy does not serve it", s.metadata.name))
            }
            Some(_) => {}
        }
        for rule in &ing.spec.rules {
            if !rule.host.ends_with(&domain) || rule.host == *vhost {
                problems.push(format!("Ingress {name}: host {} should be a second name under {domain}, not the Knative one", rule.host));
            }
            for path in &rule.http.paths {
                let backend = &path.backend.service.name;
                let svc = default
                    .of_kind("Service")
                    .find(|s| s["apiVersion"] == "v1" && s["metadata"]["name"] == backend.as_str());
                let external = svc.and_then(|s| s["spec"]["externalName"].as_str());
                if external != Some("envoy.contour-external.svc.cluster.local") {
                    problems.push(format!("Ingress {name}: backend {backend} must be the ExternalName of Contour's envoy (contour-external)"));
                }
            }
        }
    }
    assert_no_problems("ingress", &problems);
}
