//! Query parameters, checked by hand so every mistake gets a 400 JSON error
//! naming the parameter (axum's own rejection is plain text).

use std::collections::HashMap;

use runtime::ApiError;

pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses the query string; refuses parameters the endpoint does not know.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let mut map = HashMap::new();
        for (k, v) in form_pairs(raw.unwrap_or("")) {
            if !allowed.contains(&k.as_str()) {
                let known = if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                };
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {k:?}; known: {known}"
                ))
                .with_field(Some(k), None));
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(
                    ApiError::bad_request(format!("query parameter {k:?} is given twice"))
                        .with_field(Some(k), None),
                );
            }
        }
        Ok(Params(map))
    }

    /// A whole number in `min..=max`, or `default` when absent.
    pub fn int(&self, key: &str, min: u32, max: u32, default: u32) -> Result<u32, ApiError> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{key} must be a whole number from {min} to {max}, got {v:?}"
                    ))
                    .with_field(Some(key.into()), None)
                }),
        }
    }

    /// A page cursor: an id as the API returned it.
    pub fn cursor(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v)
                if !v.is_empty()
                    && v.len() <= 64
                    && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') =>
            {
                Ok(Some(v.clone()))
            }
            Some(v) => Err(ApiError::bad_request(format!(
                "{key} must be a cursor returned as `next` by this API, got {v:?}"
            ))
            .with_field(Some(key.into()), None)),
        }
    }

    /// A text filter with the same rules as the case field it filters on.
    pub fn text(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => events::Text::parse(v)
                .map(|t| Some(t.to_string()))
                .map_err(|m| {
                    ApiError::bad_request(format!("{key} {m}")).with_field(Some(key.into()), None)
                }),
        }
    }
}

/// `application/x-www-form-urlencoded` pairs: `+` is a space, `%XX` a byte.
fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms() {
        assert_eq!(
            form_pairs("location=Pet%C3%A9n&state=active+now"),
            vec![
                ("location".into(), "Petén".into()),
                ("state".into(), "active now".into())
            ]
        );
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }

    #[test]
    fn refuses_bad_parameters() {
        let p = Params::parse(Some("n=0&limit=abc"), &["n", "limit"]).unwrap();
        assert!(p.int("n", 1, 50, 3).is_err());
        assert!(p.int("limit", 1, 100, 20).is_err());
        assert!(Params::parse(Some("x=1"), &["n"]).is_err());
        assert!(Params::parse(Some("n=1&n=2"), &["n"]).is_err());
        let p = Params::parse(Some("after=%7B%22%24gt%22%3A1%7D"), &["after"]).unwrap();
        assert!(p.cursor("after").is_err());
    }
}
