use std::collections::HashMap;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;

const HS_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";
const RS_PRIVATE: &str = include_str!("../../testdata/rs256-private.pem");
const RS_PUBLIC: &str = include_str!("../../testdata/rs256-public.pem");
const OTHER_RS_PRIVATE: &str = include_str!("../../testdata/other-rs256-private.pem");

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn hs(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn rs(claims: Value, private: &str) -> String {
    encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn headers(auth: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
    h
}

fn jwt_verifier(pairs: &[(&str, &str)]) -> Verifier {
    let cfg = JwtConfig::from_lookup(&lookup(pairs))
        .unwrap()
        .expect("a JWT key is configured");
    Verifier::open().jwt(Some(JwtVerifier::new(&cfg).unwrap()))
}

fn invalid(r: Result<(), Denied>) -> String {
    match r {
        Err(Denied::Invalid(m)) => m,
        other => panic!("expected an invalid-token refusal, got {other:?}"),
    }
}

#[test]
fn static_tokens_are_compared_whole() {
    let token = Secret::new("0123456789abcdef-token");
    let v = Verifier::internal(Some(&token));
    assert!(!v.is_open());
    assert_eq!(v.check(&headers("Bearer 0123456789abcdef-token")), Ok(()));
    assert_eq!(
        v.check(&headers("bearer   0123456789abcdef-token ")),
        Ok(()),
        "scheme is case-insensitive"
    );
    assert_eq!(v.check(&HeaderMap::new()), Err(Denied::Missing));
    for bad in [
        "Bearer 0123456789abcdef-toke",
        "Bearer 0123456789abcdef-token2",
        "Bearer ",
        "Basic 0123456789abcdef-token",
        "0123456789abcdef-token",
    ] {
        invalid(v.check(&headers(bad)));
    }
    let mut two = headers("Bearer 0123456789abcdef-token");
    two.append(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer other"),
    );
    assert!(invalid(v.check(&two)).contains("one Authorization header"));
    assert_eq!(v.describe(), "INTERNAL_TOKEN");
}

#[test]
fn no_credentials_configured_means_open() {
    let v = Verifier::internal(None);
    assert!(v.is_open());
    assert_eq!(v.check(&HeaderMap::new()), Ok(()));
}

#[test]
fn token_variables_are_checked_without_echoing_them() {
    assert_eq!(token_var(&lookup(&[]), "INGEST_TOKEN").unwrap(), None);
    assert_eq!(
        token_var(&lookup(&[("INGEST_TOKEN", "  ")]), "INGEST_TOKEN").unwrap(),
        None
    );
    let short = token_var(&lookup(&[("INGEST_TOKEN", "short-secret")]), "INGEST_TOKEN")
        .unwrap_err()
        .to_string();
    assert!(
        short.contains("INGEST_TOKEN")
            && short.contains("at least 16")
            && !short.contains("short-secret"),
        "{short}"
    );
    let spaced = token_var(
        &lookup(&[("INGEST_TOKEN", "has a space in the middle")]),
        "INGEST_TOKEN",
    )
    .unwrap_err()
    .to_string();
    assert!(
        spaced.contains("visible ASCII") && !spaced.contains("has a space"),
        "{spaced}"
    );
    let ok = token_var(
        &lookup(&[("INGEST_TOKEN", " secret-value-0123456789 ")]),
        "INGEST_TOKEN",
    )
    .unwrap()
    .unwrap();
    assert_eq!(ok.expose(), "secret-value-0123456789");
    assert_eq!(format!("{ok:?}"), "Secret(<redacted>)");
}

#[test]
fn hs256_tokens_need_a_valid_signature_and_exp() {
    let v = jwt_verifier(&[("JWT_HS256_SECRET", HS_SECRET)]);
    assert_eq!(
        v.check(&headers(&format!(
            "Bearer {}",
            hs(json!({"sub": "lab-7", "exp": now() + 60}))
        ))),
        Ok(())
    );
    assert!(
        invalid(v.check(&headers(&format!("Bearer {}", hs(json!({"sub": "lab-7"}))))))
            .contains("\"exp\"")
    );
    assert!(
        invalid(v.check(&headers(&format!(
            "Bearer {}",
            hs(json!({"exp": now() - JWT_LEEWAY_S - 60}))
        ))))
        .contains("expired")
    );
    // Within the leeway an expired token still passes (clock skew).
    assert_eq!(
        v.check(&headers(&format!(
            "Bearer {}",
            hs(json!({"exp": now() - 5}))
        ))),
        Ok(())
    );
    assert!(
        invalid(v.check(&headers(&format!(
            "Bearer {}",
            hs(json!({"exp": now() + 60, "nbf": now() + 3600}))
        ))))
        .contains("not valid yet")
    );
    let wrong_key = encode(
        &Header::new(Algorithm::HS256),
        &json!({"exp": now() + 60}),
        &EncodingKey::from_secret(b"another-secret-another-secret-another"),
    )
    .unwrap();
    assert!(invalid(v.check(&headers(&format!("Bearer {wrong_key}")))).contains("signature"));
    // A tampered payload fails the signature.
    let good = hs(json!({"exp": now() + 60, "sub": "a"}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"exp": now() + 60, "sub": "admin"}),
        &EncodingKey::from_secret(b"x"),
    )
    .unwrap();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        forged_payload.split('.').nth(1).unwrap(),
        parts[2]
    );
    invalid(v.check(&headers(&format!("Bearer {forged}"))));
}

#[test]
fn unsigned_and_other_algorithm_tokens_are_refused() {
    let b64 = base64_url;
    let v = jwt_verifier(&[("JWT_HS256_SECRET", HS_SECRET)]);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&json!({"exp": now() + 60}).to_string())
    );
    invalid(v.check(&headers(&format!("Bearer {none}"))));
    // RS256 tokens when only HS256 is configured.
    let rs_token = rs(json!({"exp": now() + 60}), RS_PRIVATE);
    assert!(invalid(v.check(&headers(&format!("Bearer {rs_token}")))).contains("not accepted"));
}

/// Algorithm confusion: an HS256 token "signed" with the RSA public key (which
/// is public) must not pass a service configured for RS256 only.
#[test]
fn the_rs256_public_key_is_not_an_hs256_secret() {
    let v = jwt_verifier(&[("JWT_RS256_PUBLIC_KEY", RS_PUBLIC)]);
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &json!({"exp": now() + 60}),
        &EncodingKey::from_secret(RS_PUBLIC.as_bytes()),
    )
    .unwrap();
    assert!(invalid(v.check(&headers(&format!("Bearer {confused}")))).contains("HS256"));
}

#[test]
fn rs256_tokens_are_checked_with_the_public_key() {
    let escaped = RS_PUBLIC.trim().replace('\n', "\\n");
    for v in [
        jwt_verifier(&[("JWT_RS256_PUBLIC_KEY", RS_PUBLIC)]),
        jwt_verifier(&[("JWT_RS256_PUBLIC_KEY", &escaped)]),
    ] {
        assert_eq!(
            v.check(&headers(&format!(
                "Bearer {}",
                rs(json!({"exp": now() + 60}), RS_PRIVATE)
            ))),
            Ok(())
        );
        assert!(
            invalid(v.check(&headers(&format!(
                "Bearer {}",
                rs(json!({"exp": now() + 60}), OTHER_RS_PRIVATE)
            ))))
            .contains("signature")
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    std::fs::write(&path, RS_PUBLIC).unwrap();
    let v = jwt_verifier(&[("JWT_RS256_PUBLIC_KEY_FILE", path.to_str().unwrap())]);
    assert_eq!(
        v.check(&headers(&format!(
            "Bearer {}",
            rs(json!({"exp": now() + 60}), RS_PRIVATE)
        ))),
        Ok(())
    );
}

#[test]
fn issuer_audience_and_scope_are_checked_when_configured() {
    let v = jwt_verifier(&[
        ("JWT_HS256_SECRET", HS_SECRET),
        ("JWT_ISSUER", "https://auth.example.org"),
        ("JWT_AUDIENCE", "covid-ingest"),
        ("JWT_REQUIRED_SCOPE", "cases:write"),
    ]);
    let base = json!({"exp": now() + 60, "iss": "https://auth.example.org", "aud": "covid-ingest", "scope": "cases:read cases:write"});
    let with = |k: &str, val: Value| {
        let mut c = base.clone();
        c[k] = val;
        headers(&format!("Bearer {}", hs(c)))
    };
    let without = |k: &str| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(k);
        headers(&format!("Bearer {}", hs(c)))
    };
    assert_eq!(
        v.check(&headers(&format!("Bearer {}", hs(base.clone())))),
        Ok(())
    );
    assert_eq!(
        v.check(&with("aud", json!(["other", "covid-ingest"]))),
        Ok(())
    );
    assert_eq!(v.check(&with("scp", json!(["cases:write"]))), Ok(()));
    assert!(invalid(v.check(&with("iss", json!("https://evil.example.org")))).contains("issuer"));
    assert!(invalid(v.check(&without("iss"))).contains("\"iss\""));
    assert!(invalid(v.check(&with("aud", json!("dashboard")))).contains("audience"));
    assert!(invalid(v.check(&without("aud"))).contains("\"aud\""));
    assert_eq!(
        v.check(&with("scope", json!("cases:read"))),
        Err(Denied::Scope("cases:write".into()))
    );
    assert_eq!(
        v.check(&without("scope")),
        Err(Denied::Scope("cases:write".into()))
    );
}

#[test]
fn an_audience_in_the_token_needs_one_configured() {
    let v = jwt_verifier(&[("JWT_HS256_SECRET", HS_SECRET)]);
    // Without JWT_AUDIENCE the audience is not checked at all.
    assert_eq!(
        v.check(&headers(&format!(
            "Bearer {}",
            hs(json!({"exp": now() + 60, "aud": "anything"}))
        ))),
        Ok(())
    );
}

#[test]
fn jwt_configuration_errors_name_the_variable() {
    let err = |pairs: &[(&str, &str)]| {
        JwtConfig::from_lookup(&lookup(pairs))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert!(err(&[("JWT_HS256_SECRET", "short")]).contains("JWT_HS256_SECRET"));
    assert!(!err(&[("JWT_HS256_SECRET", "short")]).contains("short\""));
    assert!(err(&[("JWT_AUDIENCE", "x")]).contains("JWT_AUDIENCE is set but no JWT key"));
    assert!(
        err(&[
            ("JWT_RS256_PUBLIC_KEY", RS_PUBLIC),
            ("JWT_RS256_PUBLIC_KEY_FILE", "/x")
        ])
        .contains("not both")
    );
    assert!(
        err(&[("JWT_RS256_PUBLIC_KEY_FILE", "/nonexistent/key.pem")])
            .contains("JWT_RS256_PUBLIC_KEY_FILE")
    );
    let cfg = JwtConfig::from_lookup(&lookup(&[("JWT_RS256_PUBLIC_KEY", "not a pem")]))
        .unwrap()
        .unwrap();
    assert!(
        JwtVerifier::new(&cfg)
            .map(|_| ())
            .unwrap_err()
            .to_string()
            .contains("PEM")
    );
    assert!(JwtConfig::from_lookup(&lookup(&[])).unwrap().is_none());
    let debug = format!(
        "{:?}",
        JwtConfig::from_lookup(&lookup(&[("JWT_HS256_SECRET", HS_SECRET)]))
            .unwrap()
            .unwrap()
    );
    assert!(!debug.contains(HS_SECRET), "{debug}");
}

#[test]
fn refusals_are_json_with_a_bearer_challenge() {
    let resp = Denied::Missing.into_response_for(false);
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="covid-realtime""#
    );
    let resp =
        Denied::Invalid("the JWT has expired: get a new one".into()).into_response_for(false);
    assert!(
        resp.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );
    let resp = Denied::Scope("cases:write".into()).into_response_for(false);
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        resp.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains(r#"scope="cases:write""#)
    );
    let grpc = Denied::Missing.into_response_for(true);
    assert_eq!(grpc.status(), StatusCode::OK);
    assert_eq!(grpc.headers()["grpc-status"], "16");
    assert_eq!(grpc_message("50% ü"), "50%25 %C3%BC");
}

fn base64_url(s: &str) -> String {
    // URL-safe base64 without padding, enough for hand-made JWT parts.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, x)| acc | (u32::from(*x) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn grpc_calls_carry_the_internal_token_only_when_there_is_one() {
    use tonic::service::Interceptor;

    let token = Secret::new("internal-token-0123456789");
    let sent = GrpcBearer::new(Some(&token))
        .call(tonic::Request::new(()))
        .unwrap();
    let value = sent.metadata().get("authorization").unwrap();
    assert_eq!(value.to_str().unwrap(), "Bearer internal-token-0123456789");
    assert!(value.is_sensitive(), "the token must never be logged");
    let open = GrpcBearer::new(None).call(tonic::Request::new(())).unwrap();
    assert!(open.metadata().get("authorization").is_none());
}
