//! Grafana dashboards as JSON: every PromQL query they run (panel targets,
//! nested rows, and `label_values(metric, label)` template variables).

use std::collections::BTreeSet;

use serde_json::Value;

/// One query of a dashboard: where it is, and the expression.
#[derive(Debug, Clone)]
pub struct Query {
    pub place: String,
    pub expr: String,
}

/// Every PromQL expression in `dashboard`.
pub fn queries(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    while let Some(panel) = panels.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested);
        }
        let title = panel["title"].as_str().unwrap_or("untitled");
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push(Query {
                    place: format!(
                        "panel {title:?} target {}",
                        t["refId"].as_str().unwrap_or("?")
                    ),
                    expr: expr.to_owned(),
                });
            }
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .unwrap_or_default();
        if let Some(expr) = label_values_metric(q) {
            out.push(Query {
                place: format!("variable ${}", var["name"].as_str().unwrap_or("?")),
                expr,
            });
        }
    }
    out
}

/// The series selector of `label_values(selector, label)`; none for `label_values(label)`.
fn label_values_metric(q: &str) -> Option<String> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, _label) = inner.rsplit_once(',')?;
    Some(selector.trim().to_owned())
}

/// Metric names (histogram series folded to the histogram) used by `dashboard`.
pub fn metric_names(dashboard: &Value) -> BTreeSet<String> {
    queries(dashboard)
        .iter()
        .flat_map(|q| crate::promql::metric_names(&q.expr))
        .map(|m| crate::promql::base_name(&m).to_owned())
        .collect()
}

/// Structural problems: a dashboard Grafana would refuse or render empty.
pub fn check_structure(name: &str, d: &Value) -> crate::Problems {
    let mut p = crate::Problems::new();
    for field in ["uid", "title", "panels", "schemaVersion"] {
        if d.get(field).is_none() {
            p.push(format!("{name}: no {field}"));
        }
    }
    let mut ids = BTreeSet::new();
    for panel in d["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("untitled");
        if let Some(id) = panel["id"].as_u64()
            && !ids.insert(id)
        {
            p.push(format!("{name}: panel id {id} is used twice"));
        }
        if panel["type"] != "row" && panel["targets"].as_array().is_none_or(|t| t.is_empty()) {
            p.push(format!("{name}: panel {title:?} has no query"));
        }
        if panel["gridPos"].get("w").is_none() {
            p.push(format!("{name}: panel {title:?} has no gridPos"));
        }
    }
    p
}
