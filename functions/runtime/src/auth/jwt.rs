//! JWTs on a function's public writes: their settings (`JWT_*`) and the
//! check of each token's signature, times, issuer, audience and scope.

use anyhow::{Context as _, bail};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{Denied, JWT_LEEWAY_S, MIN_HS256_SECRET_BYTES, Secret};

/// JWT settings, for a function that accepts JWTs on its public writes.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// `JWT_HS256_SECRET`: shared secret of HS256 tokens.
    pub hs256_secret: Option<Secret>,
    /// `JWT_RS256_PUBLIC_KEY` (PEM text) or `JWT_RS256_PUBLIC_KEY_FILE` (a
    /// path to it): the key RS256 tokens are checked with.
    pub rs256_public_key_pem: Option<String>,
    /// `JWT_ISSUER`: when set, `iss` must be present and equal.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: when set, `aud` must be present and contain it.
    pub audience: Option<String>,
    /// `JWT_REQUIRED_SCOPE`: when set, a valid token whose `scope` (space
    /// separated) or `scp` (list) lacks it is answered 403.
    pub required_scope: Option<String>,
}

fn nonblank(lookup: &dyn Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    lookup(key)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

impl JwtConfig {
    /// `None` when no JWT key is configured.
    pub fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<JwtConfig>> {
        let hs256_secret = match nonblank(lookup, "JWT_HS256_SECRET") {
            Some(s) if s.len() < MIN_HS256_SECRET_BYTES => bail!(
                "JWT_HS256_SECRET is {} bytes long; HS256 needs at least {MIN_HS256_SECRET_BYTES} (e.g. `openssl rand -hex 32`)",
                s.len()
            ),
            s => s.map(Secret::new),
        };
        let pem =
            match (
                nonblank(lookup, "JWT_RS256_PUBLIC_KEY"),
                nonblank(lookup, "JWT_RS256_PUBLIC_KEY_FILE"),
            ) {
                (Some(_), Some(_)) => {
                    bail!("set JWT_RS256_PUBLIC_KEY or JWT_RS256_PUBLIC_KEY_FILE, not both")
                }
                // One-line env values often carry the PEM's newlines as `\n`.
                (Some(text), None) if !text.contains('\n') => Some(text.replace("\\n", "\n")),
                (Some(text), None) => Some(text),
                (None, Some(path)) => Some(std::fs::read_to_string(&path).with_context(|| {
                    format!("JWT_RS256_PUBLIC_KEY_FILE={path:?} cannot be read")
                })?),
                (None, None) => None,
            };
        let issuer = nonblank(lookup, "JWT_ISSUER");
        let audience = nonblank(lookup, "JWT_AUDIENCE");
        let required_scope = nonblank(lookup, "JWT_REQUIRED_SCOPE");
        if hs256_secret.is_none() && pem.is_none() {
            if let Some(key) = [
                ("JWT_ISSUER", &issuer),
                ("JWT_AUDIENCE", &audience),
                ("JWT_REQUIRED_SCOPE", &required_scope),
            ]
            .iter()
            .find_map(|(k, v)| v.is_some().then_some(k))
            {
                bail!(
                    "{key} is set but no JWT key is: set JWT_HS256_SECRET or JWT_RS256_PUBLIC_KEY(_FILE) too"
                );
            }
            return Ok(None);
        }
        Ok(Some(JwtConfig {
            hs256_secret,
            rs256_public_key_pem: pem,
            issuer,
            audience,
            required_scope,
        }))
    }
}

/// Checks JWTs: signature (HS256 and/or RS256, the algorithm picked by the
/// key, never by the token alone), `exp` (required), `nbf`, and `iss`/`aud`
/// when configured.
pub struct JwtVerifier {
    keys: Vec<(Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
    required_scope: Option<String>,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> anyhow::Result<JwtVerifier> {
        let mut keys = Vec::new();
        if let Some(s) = &config.hs256_secret {
            keys.push((
                Algorithm::HS256,
                DecodingKey::from_secret(s.expose().as_bytes()),
            ));
        }
        if let Some(pem) = &config.rs256_public_key_pem {
            let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                anyhow::anyhow!(
                    "the RS256 public key is not an RSA public key in PEM (BEGIN PUBLIC KEY): {e}"
                )
            })?;
            keys.push((Algorithm::RS256, key));
        }
        if keys.is_empty() {
            bail!("a JWT verifier needs JWT_HS256_SECRET or JWT_RS256_PUBLIC_KEY");
        }
        Ok(JwtVerifier {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            required_scope: config.required_scope.clone(),
        })
    }

    pub(super) fn algorithms(&self) -> Vec<&'static str> {
        self.keys
            .iter()
            .map(|(a, _)| {
                if *a == Algorithm::HS256 {
                    "HS256"
                } else {
                    "RS256"
                }
            })
            .collect()
    }

    pub(super) fn verify(&self, token: &str) -> Result<(), Denied> {
        let head = jsonwebtoken::decode_header(token)
            .map_err(|_| Denied::invalid("the bearer token is not a valid JWT"))?;
        let Some((alg, key)) = self.keys.iter().find(|(a, _)| *a == head.alg) else {
            return Err(Denied::invalid(format!(
                "JWTs signed with {:?} are not accepted here; accepted: {}",
                head.alg,
                self.algorithms().join(", ")
            )));
        };
        let mut v = Validation::new(*alg);
        v.leeway = JWT_LEEWAY_S;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Claims>(token, key, &v)
            .map_err(|e| Denied::invalid(self.explain(e.kind())))?;
        if let Some(scope) = &self.required_scope
            && !data.claims.has_scope(scope)
        {
            return Err(Denied::Scope(scope.clone()));
        }
        Ok(())
    }

    fn explain(&self, kind: &jsonwebtoken::errors::ErrorKind) -> String {
        use jsonwebtoken::errors::ErrorKind as K;
        match kind {
            K::ExpiredSignature => "the JWT has expired: get a new one".into(),
            K::ImmatureSignature => "the JWT is not valid yet (nbf is in the future)".into(),
            K::InvalidSignature => "the JWT signature does not verify".into(),
            K::InvalidIssuer => format!("the JWT issuer (iss) is not {:?}", self.issuer.as_deref().unwrap_or("")),
            K::InvalidAudience => match &self.audience {
                Some(a) => format!("the JWT audience (aud) does not include {a:?}"),
                None => "the JWT names an audience (aud) but this service is configured without JWT_AUDIENCE".into(),
            },
            K::MissingRequiredClaim(c) => format!("the JWT has no valid {c:?} claim; it is required"),
            K::InvalidAlgorithm => "the JWT algorithm does not match the key".into(),
            _ => "the bearer token is not a valid JWT".into(),
        }
    }
}

/// The claims read beyond what `jsonwebtoken` validates.
#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
}

impl Claims {
    fn has_scope(&self, wanted: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split_ascii_whitespace().any(|x| x == wanted))
            || self
                .scp
                .as_ref()
                .is_some_and(|l| l.iter().any(|x| x == wanted))
    }
}
