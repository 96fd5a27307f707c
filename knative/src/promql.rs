//! Metric names in a PromQL expression: a small lexer that skips strings,
//! label matchers `{...}`, range and subquery brackets `[...]`, label lists
//! of `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`, function
//! names (an identifier followed by `(`), keywords and numbers. What is left
//! is a metric name. Histogram series (`_bucket`, `_sum`, `_count`) are
//! reported as the histogram's name.

use std::collections::BTreeSet;

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
    // Aggregation operators may stand before `by (...)`, away from their `(`.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised label list.
const LABEL_LIST: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Metric names used in `expr`, as written.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_until(&chars, i, '}'),
            '[' => i = skip_until(&chars, i, ']'),
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                // A Grafana variable ($__rate_interval, $service) is not a metric.
                let after_dollar = start > 0 && chars[start - 1] == '$';
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let is_call = j < chars.len() && chars[j] == '(';
                if LABEL_LIST.contains(&word.as_str()) {
                    if is_call {
                        i = skip_until(&chars, j, ')');
                    }
                } else if !after_dollar
                    && !is_call
                    && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str())
                {
                    out.insert(word);
                }
                continue;
            }
            c if c.is_ascii_digit() || c == '.' => {
                // Numbers, including 1e3 and 0x1f: letters glued to a number are part of it.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The histogram's name for one of its series, or the name itself.
pub fn base_name(series: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = series.strip_suffix(suffix) {
            return base;
        }
    }
    series
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Skips from the opening bracket at `start` past its closing one, minding
/// strings inside (label values may contain brackets).
fn skip_until(chars: &[char], start: usize, close: char) -> usize {
    let open = chars[start];
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(e: &str) -> Vec<String> {
        metric_names(e).into_iter().collect()
    }

    #[test]
    fn rate_with_labels_and_grouping() {
        assert_eq!(
            names(
                r#"sum by (route, status) (rate(http_requests_total{route!~"/metrics|/healthz", knative_service=~"$service"}[$__rate_interval]))"#
            ),
            ["http_requests_total"]
        );
    }

    #[test]
    fn histogram_quantile_and_binary_operators() {
        let e = r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m]))) / ignoring(knative_revision) group_left sum(x_total) > bool 0.5"#;
        assert_eq!(
            names(e),
            ["http_request_duration_seconds_bucket", "x_total"]
        );
        assert_eq!(
            base_name("http_request_duration_seconds_bucket"),
            "http_request_duration_seconds"
        );
    }

    #[test]
    fn topk_numbers_strings_and_offsets() {
        let e = r#"topk(15, sum by (area) (increase(aggregate_cases_by_area_total{area="a{b}"}[1h] offset 5m))) * 1e3"#;
        assert_eq!(names(e), ["aggregate_cases_by_area_total"]);
    }

    #[test]
    fn a_typo_shows_up() {
        assert_eq!(
            names("rate(http_request_total[1m])"),
            ["http_request_total"]
        );
    }
}
