//! Gates: what a canary must show, next to the stable revision measured
//! over the same interval, before it gets more traffic. One gate is one
//! expression about the canary:
//!
//! ```text
//! error_rate <= stable + 1pp      canary's error rate at most stable's plus 1 percentage point
//! p99 <= 1.5 * stable + 5ms       canary's p99 at most 1.5 x stable's, plus 5 ms
//! p99 <= 250ms                    an absolute bound
//! error_rate < 0.5%
//! ```
//!
//! Metrics: `error_rate` (failed over all requests, in percent), `p50`,
//! `p90`, `p99` (latency). A bound is a number with a unit (`pp` or `%` for
//! an error rate, `us`/`ms`/`s` for a latency), or `[FACTOR *] stable [+|-
//! NUMBER UNIT]`. Operators: `<=`, `<`.

use std::fmt;

use super::measure::{Measurement, Sample};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// Percent of requests that failed.
    ErrorRate,
    /// Latency percentile (50, 90, 99), in µs.
    Latency(u8),
}

impl Metric {
    /// The value of this metric in `s`: percent, or µs.
    pub fn of(self, s: &Sample) -> f64 {
        match self {
            Metric::ErrorRate => s.error_rate_percent(),
            Metric::Latency(50) => s.p50_us as f64,
            Metric::Latency(90) => s.p90_us as f64,
            Metric::Latency(_) => s.p99_us as f64,
        }
    }

    fn text(self, v: f64) -> String {
        match self {
            Metric::ErrorRate => format!("{v:.2}%"),
            Metric::Latency(_) => format_us(v),
        }
    }
}

/// `1.2ms`, `850us`, `1.50s`.
pub fn format_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2}s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{:.1}ms", us / 1000.0)
    } else {
        format!("{us:.0}us")
    }
}

/// One gate, parsed: `metric op factor * stable + offset`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// As written.
    pub expr: String,
    pub metric: Metric,
    /// `<` when true, `<=` otherwise.
    pub strict: bool,
    /// Multiplies stable's value; 0 for an absolute bound.
    pub factor: f64,
    /// Added, in the metric's unit (percentage points, µs).
    pub offset: f64,
}

/// The default gates (see the module docs). The 5 ms on the latency gate
/// keeps sub-millisecond noise between two idle revisions from failing a
/// healthy canary; on a real cluster it is small next to a p99.
pub const DEFAULT_GATES: &[&str] = &["error_rate <= stable + 1pp", "p99 <= 1.5 * stable + 5ms"];

/// Requests each revision must have served in an interval before it is judged.
pub const DEFAULT_MIN_REQUESTS: u64 = 100;

pub const GATE_SYNTAX: &str = "write METRIC OP BOUND, e.g. 'error_rate <= stable + 1pp', 'p99 <= 1.5 * stable + 5ms', \
     'p99 < 250ms', 'error_rate <= 0.5%'; METRIC: error_rate p50 p90 p99; OP: <= <; \
     BOUND: NUMBER UNIT or [FACTOR *] stable [+|- NUMBER UNIT]; UNIT: pp or % (error_rate), us ms s (latency)";

impl Gate {
    pub fn parse(raw: &str) -> Result<Gate, String> {
        let bad = |why: &str| format!("bad gate {raw:?}: {why}; {GATE_SYNTAX}");
        let (left, strict, right) = if let Some((l, r)) = raw.split_once("<=") {
            (l, false, r)
        } else if let Some((l, r)) = raw.split_once('<') {
            (l, true, r)
        } else {
            return Err(bad("no operator (<= or <)"));
        };
        let metric = match left.trim() {
            "error_rate" => Metric::ErrorRate,
            "p50" => Metric::Latency(50),
            "p90" => Metric::Latency(90),
            "p99" => Metric::Latency(99),
            "" => return Err(bad("no metric before the operator")),
            other => return Err(bad(&format!("unknown metric {other:?}"))),
        };
        let right: String = right.chars().filter(|c| !c.is_whitespace()).collect();
        if right.is_empty() {
            return Err(bad("no bound after the operator"));
        }
        let (factor, offset) = match right.find("stable") {
            None => (0.0, quantity(metric, &right).map_err(|e| bad(&e))?),
            Some(at) => {
                let before = &right[..at];
                let after = &right[at + "stable".len()..];
                let factor = match before {
                    "" => 1.0,
                    f => f
                        .strip_suffix('*')
                        .or_else(|| f.strip_suffix('x'))
                        .and_then(|n| n.parse::<f64>().ok())
                        .filter(|n| n.is_finite() && *n > 0.0)
                        .ok_or_else(|| {
                            bad(&format!("{f:?} before stable is not a positive FACTOR *"))
                        })?,
                };
                let offset = match after.chars().next() {
                    None => 0.0,
                    Some('+') => quantity(metric, &after[1..]).map_err(|e| bad(&e))?,
                    Some('-') => -quantity(metric, &after[1..]).map_err(|e| bad(&e))?,
                    Some(_) => return Err(bad(&format!("{after:?} after stable"))),
                };
                (factor, offset)
            }
        };
        Ok(Gate {
            expr: raw.trim().to_owned(),
            metric,
            strict,
            factor,
            offset,
        })
    }

    /// The bound for the canary, given stable's sample.
    pub fn limit(&self, stable: &Sample) -> f64 {
        self.factor * self.metric.of(stable) + self.offset
    }

    /// `None` when the canary passes; else why not, with the numbers.
    pub fn failure(&self, m: &Measurement) -> Option<String> {
        let observed = self.metric.of(&m.canary);
        let limit = self.limit(&m.stable);
        let holds = if self.strict {
            observed < limit
        } else {
            observed <= limit
        };
        (!holds).then(|| {
            format!(
                "{}: canary {} > {}",
                self.expr,
                self.metric.text(observed),
                self.metric.text(limit)
            )
        })
    }
}

/// `1pp`, `0.5%` (percentage points) or `5ms`, `800us`, `1s` (µs).
fn quantity(metric: Metric, text: &str) -> Result<f64, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    match (metric, unit) {
        (Metric::ErrorRate, "pp" | "%") => Ok(n),
        (Metric::Latency(_), "us") => Ok(n),
        (Metric::Latency(_), "ms") => Ok(n * 1000.0),
        (Metric::Latency(_), "s") => Ok(n * 1_000_000.0),
        (Metric::ErrorRate, u) => Err(format!(
            "an error rate is in pp or %, not {u:?} (in {text:?})"
        )),
        (Metric::Latency(_), u) => Err(format!(
            "a latency is in us, ms or s, not {u:?} (in {text:?})"
        )),
    }
}

/// The gates and the evidence they need.
#[derive(Debug, Clone)]
pub struct Gates {
    pub gates: Vec<Gate>,
    /// Each revision must have served this many requests in the interval.
    pub min_requests: u64,
}

impl Default for Gates {
    fn default() -> Gates {
        Gates {
            gates: DEFAULT_GATES
                .iter()
                .map(|g| Gate::parse(g).expect("the default gates parse"))
                .collect(),
            min_requests: DEFAULT_MIN_REQUESTS,
        }
    }
}

/// What an interval says about the canary.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    Pass,
    /// Too few requests to judge; measure again.
    Wait(String),
    Fail(Vec<String>),
}

impl Gates {
    pub fn judge(&self, m: &Measurement) -> Judgement {
        let failures: Vec<String> = self.gates.iter().filter_map(|g| g.failure(m)).collect();
        let few: Vec<String> = [("stable", &m.stable), ("canary", &m.canary)]
            .iter()
            .filter(|(_, s)| s.requests < self.min_requests)
            .map(|(who, s)| {
                format!(
                    "{who} served {} of the {} requests needed",
                    s.requests, self.min_requests
                )
            })
            .collect();
        // A canary that already fails the error gate on the evidence there is
        // is not given more: errors are not noise the way latency is.
        let errors_fail = failures.iter().any(|f| f.starts_with("error_rate"))
            && m.canary.errors >= self.min_requests.div_ceil(10).max(1);
        if few.is_empty() || errors_fail {
            if failures.is_empty() {
                Judgement::Pass
            } else {
                Judgement::Fail(failures)
            }
        } else {
            Judgement::Wait(few.join(", "))
        }
    }
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Judgement::Pass => f.write_str("pass"),
            Judgement::Wait(why) => write!(f, "wait: {why}"),
            Judgement::Fail(why) => write!(f, "fail: {}", why.join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(requests: u64, errors: u64, p99_ms: f64) -> Sample {
        Sample {
            requests,
            errors,
            p50_us: 0,
            p90_us: 0,
            p99_us: (p99_ms * 1000.0) as u64,
        }
    }

    fn m(stable: Sample, canary: Sample) -> Measurement {
        Measurement { stable, canary }
    }

    #[test]
    fn the_defaults_hold_a_canary_to_stable() {
        let gates = Gates::default();
        let healthy = m(sample(900, 0, 10.0), sample(100, 1, 14.0));
        assert_eq!(gates.judge(&healthy), Judgement::Pass);
        let erring = m(sample(900, 0, 10.0), sample(100, 30, 10.0));
        match gates.judge(&erring) {
            Judgement::Fail(why) => assert!(why[0].contains("canary 30.00% > 1.00%"), "{why:?}"),
            other => panic!("{other:?}"),
        }
        let slow = m(sample(900, 0, 10.0), sample(100, 0, 21.0));
        match gates.judge(&slow) {
            Judgement::Fail(why) => assert!(why[0].contains("canary 21.0ms > 20.0ms"), "{why:?}"),
            other => panic!("{other:?}"),
        }
        let few = m(sample(900, 0, 10.0), sample(40, 0, 10.0));
        assert!(
            matches!(gates.judge(&few), Judgement::Wait(w) if w.contains("canary served 40 of the 100"))
        );
        // Failing writes are judged before the request count is reached.
        let failing_early = m(sample(900, 0, 10.0), sample(40, 20, 10.0));
        assert!(matches!(gates.judge(&failing_early), Judgement::Fail(_)));
    }

    #[test]
    fn expressions_parse_with_units_factors_and_offsets() {
        let g = Gate::parse("p99 <= 1.5 * stable + 5ms").unwrap();
        assert_eq!((g.factor, g.offset, g.strict), (1.5, 5000.0, false));
        let g = Gate::parse("error_rate<stable-0.5pp").unwrap();
        assert_eq!((g.factor, g.offset, g.strict), (1.0, -0.5, true));
        let g = Gate::parse("p50 <= 2x stable").unwrap();
        assert_eq!(g.factor, 2.0);
        let g = Gate::parse("p90 < 1s").unwrap();
        assert_eq!((g.factor, g.offset), (0.0, 1_000_000.0));
        assert_eq!(Gate::parse("error_rate <= 2%").unwrap().offset, 2.0);
    }

    #[test]
    fn bad_expressions_say_what_is_wrong_on_one_line() {
        for (raw, why) in [
            ("p99 >= 5ms", "no operator"),
            ("latency <= 5ms", "unknown metric \"latency\""),
            ("p99 <= 5", "not \"\""),
            ("error_rate <= stable + 1ms", "an error rate is in pp or %"),
            ("p99 <= -2 * stable", "not a positive FACTOR"),
            ("p99 <=", "no bound"),
            ("p99 <= stable * 2", "after stable"),
        ] {
            let e = Gate::parse(raw).unwrap_err();
            assert!(e.contains(why), "{raw}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
