//! Parsing a JWT and checking its claims, before any key is involved.
//!
//! Everything here is cheap and needs no network: a token that fails these
//! checks is rejected without looking up (let alone fetching) a key. The
//! checks close gaps `jsonwebtoken`'s own validation leaves open:
//!
//! - segments must be strict base64url (no padding, no stray bits), the header
//!   and claims JSON objects with no duplicate keys;
//! - `alg` must be one this gateway accepts; `none` never is;
//! - `jku`, `x5u`, `x5c` and `jwk` (key material named by the token itself)
//!   are refused outright, as is any `crit` extension;
//! - `exp`, `iss`, `aud`, `sub` and `tid` are required; `exp`, `nbf` and `iat`
//!   must be integers in a sane range, and `nbf`/`iat` may not be in the
//!   future beyond the leeway;
//! - `sub`, `tid` and scopes are restricted to characters that are safe in a
//!   header value, since they are forwarded to services as `X-Auth-*` headers.

use std::{collections::HashSet, fmt};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{
    Deserialize, Deserializer,
    de::{self, IgnoredAny, MapAccess, Visitor},
};

use shared_schema::{AuthMethod, Identity};

use super::AuthError;
use crate::identity::{InvalidIdentity, VerifiedIdentity};

/// Latest date accepted in a numeric claim: 9999-12-31T23:59:59Z.
const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// The signature algorithms this gateway verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Algorithm {
    /// HMAC with SHA-256, with the configured secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, with an RSA key from the JWKS.
    Rs256,
    /// ECDSA on P-256 with SHA-256, with an EC key from the JWKS.
    Es256,
}

impl Algorithm {
    fn parse(alg: &str) -> Result<Self, AuthError> {
        match alg {
            "HS256" => Ok(Self::Hs256),
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            _ => Err(AuthError::AlgorithmRejected),
        }
    }

    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Hs256 => jsonwebtoken::Algorithm::HS256,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

/// The JOSE header. Fields this gateway refuses are read only to be refused.
#[derive(Debug, Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
    #[serde(default)]
    jku: Option<IgnoredAny>,
    #[serde(default)]
    x5u: Option<IgnoredAny>,
    #[serde(default)]
    x5c: Option<IgnoredAny>,
    #[serde(default)]
    jwk: Option<IgnoredAny>,
}

/// A numeric date: a JSON integer of seconds since the epoch, in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NumericDate(u64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let seconds = u64::deserialize(deserializer)?;
        if seconds > MAX_NUMERIC_DATE {
            return Err(de::Error::custom("date out of range"));
        }
        Ok(Self(seconds))
    }
}

/// `aud`: one string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|one| one == audience),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<NumericDate>,
    #[serde(default)]
    nbf: Option<NumericDate>,
    #[serde(default)]
    iat: Option<NumericDate>,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    /// How the caller authenticated at the gateway: read from the gateway's
    /// own internal tokens only, ignored in any other.
    #[serde(default)]
    auth_method: Option<String>,
}

/// The claims of a token that passed every check of its [`ClaimPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    /// `sub`, `tid`, `scope` (split on spaces) and `azp` or `client_id`.
    pub(crate) identity: VerifiedIdentity,
    /// `exp` and `nbf`.
    pub(crate) validity: Validity,
}

/// When a token may be used: `nbf` (if any) to `exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    /// `exp`.
    pub(crate) expires_at: u64,
    /// `nbf`, when present.
    pub(crate) not_before: Option<u64>,
}

impl Validity {
    /// Whether `now` falls in the window, widened by `leeway` on both ends.
    pub(crate) fn is_current(&self, now: u64, leeway: u64) -> bool {
        now <= self.expires_at.saturating_add(leeway)
            && self
                .not_before
                .is_none_or(|not_before| not_before <= now.saturating_add(leeway))
    }
}

/// A token split and parsed, its signature not yet checked.
#[derive(Debug)]
pub(crate) struct UnverifiedToken<'a> {
    /// The accepted algorithm named by the header.
    pub(crate) algorithm: Algorithm,
    /// The key id named by the header.
    pub(crate) kid: Option<String>,
    /// `header.payload`, the signed bytes.
    pub(crate) signing_input: &'a str,
    /// The base64url signature.
    pub(crate) signature: &'a str,
    claims: RawClaims,
}

impl<'a> UnverifiedToken<'a> {
    /// Splits and parses `token`, checking its form and header.
    pub(crate) fn parse(token: &'a str, max_len: usize) -> Result<Self, AuthError> {
        if token.len() > max_len {
            return Err(AuthError::TokenTooLarge { limit: max_len });
        }
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(AuthError::Malformed("a JWT has exactly three segments"));
        };
        if header.is_empty() || payload.is_empty() {
            return Err(AuthError::Malformed("empty segment"));
        }
        if signature.is_empty() {
            return Err(AuthError::Malformed("the signature is missing"));
        }
        let header_json = decode_segment(header, "the header is not base64url")?;
        let claims_json = decode_segment(payload, "the payload is not base64url")?;
        if URL_SAFE_NO_PAD.decode(signature).is_err() {
            return Err(AuthError::Malformed("the signature is not base64url"));
        }

        reject_duplicate_keys(&header_json).map_err(|()| {
            AuthError::Malformed("the header is not a JSON object with unique keys")
        })?;
        let raw_header: RawHeader = serde_json::from_slice(&header_json)
            .map_err(|_| AuthError::Malformed("the header is not a valid JOSE header"))?;
        let algorithm = Algorithm::parse(&raw_header.alg)?;
        for (present, name) in [
            (raw_header.jku.is_some(), "jku"),
            (raw_header.x5u.is_some(), "x5u"),
            (raw_header.x5c.is_some(), "x5c"),
            (raw_header.jwk.is_some(), "jwk"),
        ] {
            if present {
                return Err(AuthError::UntrustedKeyReference(name));
            }
        }
        if raw_header.crit.is_some() {
            return Err(AuthError::UnsupportedCritical);
        }
        if let Some(typ) = &raw_header.typ {
            let accepted = ["JWT", "at+jwt", "application/at+jwt"];
            if !accepted
                .iter()
                .any(|accepted| typ.eq_ignore_ascii_case(accepted))
            {
                return Err(AuthError::Malformed("the token type is not JWT"));
            }
        }
        if raw_header
            .kid
            .as_ref()
            .is_some_and(|kid| kid.is_empty() || kid.len() > 256)
        {
            return Err(AuthError::Malformed("the key id is empty or too long"));
        }

        reject_duplicate_keys(&claims_json).map_err(|()| {
            AuthError::Malformed("the claims are not a JSON object with unique keys")
        })?;
        let claims: RawClaims =
            serde_json::from_slice(&claims_json).map_err(|error| claim_type_error(&error))?;
        Ok(Self {
            algorithm,
            kid: raw_header.kid,
            signing_input: &token[..header.len() + 1 + payload.len()],
            signature,
            claims,
        })
    }

    /// The claims, checked against `policy` at `now` (seconds since the epoch).
    pub(crate) fn claims(&self, policy: &ClaimPolicy<'_>, now: u64) -> Result<Claims, AuthError> {
        match policy.signer {
            Signer::Issuer => policy.check(&self.claims, now, AuthMethod::Jwt),
            Signer::Gateway => {
                let method = match self.claims.auth_method.as_deref() {
                    None => return Err(AuthError::MissingClaim("auth_method")),
                    Some("jwt") => AuthMethod::Jwt,
                    Some("api_key") => AuthMethod::ApiKey,
                    Some("opaque") => AuthMethod::Opaque,
                    Some(_) => return Err(AuthError::InvalidClaim("auth_method")),
                };
                policy.check(&self.claims, now, method)
            }
        }
    }
}

fn decode_segment(segment: &str, error: &'static str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed(error))
}

/// Names the claim whose type is wrong, from serde's message (`invalid type:
/// string "1", expected u64 at line 1 column 9` has no field name, so the
/// names are matched against the claim set instead).
fn claim_type_error(error: &serde_json::Error) -> AuthError {
    let message = error.to_string();
    for claim in [
        "exp",
        "nbf",
        "iat",
        "sub",
        "tid",
        "iss",
        "aud",
        "scope",
        "azp",
        "client_id",
        "auth_method",
    ] {
        if message.contains(&format!("`{claim}`")) {
            return AuthError::InvalidClaim(claim);
        }
    }
    if error.is_data() {
        AuthError::InvalidClaim("type")
    } else {
        AuthError::Malformed("the payload is not a JSON object")
    }
}

/// Fails unless `json` is an object whose keys are all distinct: a JSON
/// parser that keeps the last of two `sub`s must not see a different token
/// from one that keeps the first.
fn reject_duplicate_keys(json: &[u8]) -> Result<(), ()> {
    struct UniqueKeys;

    impl<'de> Visitor<'de> for UniqueKeys {
        type Value = ();

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key) {
                    return Err(de::Error::custom("duplicate key"));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }

    let mut deserializer = serde_json::Deserializer::from_slice(json);
    deserializer.deserialize_map(UniqueKeys).map_err(drop)?;
    deserializer.end().map_err(drop)
}

/// What the claims of every token must satisfy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimPolicy<'a> {
    /// The one accepted `iss`.
    pub(crate) issuer: &'a str,
    /// The audience `aud` must contain.
    pub(crate) audience: &'a str,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub(crate) leeway: u64,
    /// Who signs the tokens, which decides how the caller authenticated.
    pub(crate) signer: Signer,
}

/// Who signs the tokens a [`ClaimPolicy`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signer {
    /// The identity provider: the caller authenticated with this JWT.
    Issuer,
    /// The gateway, stating in `auth_method` how the caller authenticated
    /// (internal tokens, verified by services).
    Gateway,
}

/// The claims of an RFC 7662 introspection answer, checked as a JWT's are:
/// `None` when the token is not active. An answer that is not a JSON
/// object with a boolean `active` is [`AuthError::Malformed`].
pub(crate) fn introspected(
    policy: &ClaimPolicy<'_>,
    answer: &[u8],
    now: u64,
) -> Result<Option<Claims>, AuthError> {
    #[derive(Deserialize)]
    struct Activity {
        active: bool,
    }
    let activity: Activity =
        serde_json::from_slice(answer).map_err(|_| AuthError::Malformed("introspection answer"))?;
    if !activity.active {
        return Ok(None);
    }
    let raw: RawClaims =
        serde_json::from_slice(answer).map_err(|_| AuthError::Malformed("introspection answer"))?;
    policy.check(&raw, now, AuthMethod::Opaque).map(Some)
}

impl ClaimPolicy<'_> {
    fn check(&self, raw: &RawClaims, now: u64, method: AuthMethod) -> Result<Claims, AuthError> {
        let expires_at = raw.exp.ok_or(AuthError::MissingClaim("exp"))?.0;
        if now > expires_at.saturating_add(self.leeway) {
            return Err(AuthError::Expired);
        }
        let not_before = raw.nbf.map(|NumericDate(nbf)| nbf);
        if not_before.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(AuthError::NotYetValid);
        }
        if raw
            .iat
            .is_some_and(|NumericDate(iat)| iat > now.saturating_add(self.leeway))
        {
            return Err(AuthError::IssuedInFuture);
        }
        let subject = raw.sub.as_deref().ok_or(AuthError::MissingClaim("sub"))?;
        let tenant = raw.tid.as_deref().ok_or(AuthError::MissingClaim("tid"))?;
        let identity = Identity {
            subject: subject.to_owned(),
            tenant: tenant.to_owned(),
            scopes: raw
                .scope
                .as_deref()
                .unwrap_or_default()
                .split(' ')
                .filter(|scope| !scope.is_empty())
                .map(str::to_owned)
                .collect(),
            client: raw.azp.as_ref().or(raw.client_id.as_ref()).cloned(),
            auth_method: method,
        };
        let identity = VerifiedIdentity::new(identity).map_err(|invalid| {
            AuthError::InvalidClaim(match invalid {
                InvalidIdentity::Subject => "sub",
                InvalidIdentity::Tenant => "tid",
                InvalidIdentity::Scopes => "scope",
                InvalidIdentity::Client => "azp",
            })
        })?;
        // Last: every check above answers the same whatever the configured
        // issuer and audience are, so only these two can reveal them, and
        // the verifier names them only once the signature verifies.
        let issuer = raw.iss.as_deref().ok_or(AuthError::MissingClaim("iss"))?;
        if issuer != self.issuer {
            return Err(AuthError::WrongIssuer);
        }
        if !raw
            .aud
            .as_ref()
            .ok_or(AuthError::MissingClaim("aud"))?
            .contains(self.audience)
        {
            return Err(AuthError::WrongAudience);
        }
        Ok(Claims {
            identity,
            validity: Validity {
                expires_at,
                not_before,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: u64 = 1_800_000_000;
    const POLICY: ClaimPolicy<'static> = ClaimPolicy {
        issuer: "https://issuer.test",
        audience: "bff-web",
        leeway: 30,
        signer: Signer::Issuer,
    };

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn good_claims() -> Value {
        json!({
            "iss": "https://issuer.test", "aud": "bff-web", "sub": "user-1", "tid": "acme",
            "scope": "products:read orders:read", "exp": NOW + 60, "iat": NOW, "nbf": NOW
        })
    }

    fn token_with(header: &Value, claims: &Value) -> String {
        format!("{}.{}.c2ln", b64(header), b64(claims))
    }

    fn parse(token: &str) -> Result<Claims, AuthError> {
        UnverifiedToken::parse(token, 8192)?.claims(&POLICY, NOW)
    }

    fn with_claim(claim: &str, value: Value) -> Result<Claims, AuthError> {
        let mut claims = good_claims();
        claims[claim] = value;
        parse(&token_with(&json!({"alg": "RS256", "kid": "k1"}), &claims))
    }

    fn without_claim(claim: &str) -> Result<Claims, AuthError> {
        let mut claims = good_claims();
        claims.as_object_mut().expect("object").remove(claim);
        parse(&token_with(&json!({"alg": "RS256", "kid": "k1"}), &claims))
    }

    #[test]
    fn a_good_token_parses_into_claims() {
        let token = token_with(
            &json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}),
            &good_claims(),
        );
        let parsed = UnverifiedToken::parse(&token, 8192).expect("parses");
        assert_eq!(parsed.algorithm, Algorithm::Es256);
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.signature, "c2ln");
        assert!(
            token.starts_with(parsed.signing_input)
                && token[parsed.signing_input.len()..] == *".c2ln"
        );
        let claims = parsed.claims(&POLICY, NOW).expect("valid");
        assert_eq!(claims.identity.subject, "user-1");
        assert_eq!(claims.identity.tenant, "acme");
        assert_eq!(claims.identity.scopes, vec!["products:read", "orders:read"]);
    }

    #[test]
    fn time_claims_are_checked_with_the_leeway() {
        assert_eq!(with_claim("exp", json!(NOW - 31)), Err(AuthError::Expired));
        assert!(with_claim("exp", json!(NOW - 29)).is_ok());
        assert_eq!(
            with_claim("nbf", json!(NOW + 31)),
            Err(AuthError::NotYetValid)
        );
        assert!(with_claim("nbf", json!(NOW + 29)).is_ok());
        assert_eq!(
            with_claim("iat", json!(NOW + 31)),
            Err(AuthError::IssuedInFuture)
        );
        assert_eq!(without_claim("exp"), Err(AuthError::MissingClaim("exp")));
        assert!(without_claim("nbf").is_ok());
    }

    #[test]
    fn numeric_claims_must_be_integers_in_range() {
        assert_eq!(
            with_claim("exp", json!((NOW + 60).to_string())),
            Err(AuthError::InvalidClaim("type"))
        );
        assert_eq!(
            with_claim("exp", json!(1.8e9)),
            Err(AuthError::InvalidClaim("type"))
        );
        assert_eq!(
            with_claim("exp", json!(-1)),
            Err(AuthError::InvalidClaim("type"))
        );
        assert!(with_claim("exp", json!(u64::MAX)).is_err());
        assert!(with_claim("exp", json!(MAX_NUMERIC_DATE + 1)).is_err());
        assert_eq!(
            with_claim("nbf", json!(true)),
            Err(AuthError::InvalidClaim("type"))
        );
    }

    #[test]
    fn issuer_audience_subject_and_tenant_are_required_and_checked() {
        assert_eq!(
            with_claim("iss", json!("https://evil.test")),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(without_claim("iss"), Err(AuthError::MissingClaim("iss")));
        assert_eq!(
            with_claim("aud", json!("bff-mobile")),
            Err(AuthError::WrongAudience)
        );
        assert!(with_claim("aud", json!(["bff-mobile", "bff-web"])).is_ok());
        assert_eq!(without_claim("aud"), Err(AuthError::MissingClaim("aud")));
        assert_eq!(without_claim("sub"), Err(AuthError::MissingClaim("sub")));
        assert_eq!(
            with_claim("sub", json!(42)),
            Err(AuthError::InvalidClaim("type"))
        );
        assert_eq!(
            with_claim("sub", json!("user\r\nX-Auth-Tenant: evil")),
            Err(AuthError::InvalidClaim("sub"))
        );
        assert_eq!(
            with_claim("sub", json!("")),
            Err(AuthError::InvalidClaim("sub"))
        );
        assert_eq!(without_claim("tid"), Err(AuthError::MissingClaim("tid")));
        assert_eq!(
            with_claim("tid", json!("acme corp")),
            Err(AuthError::InvalidClaim("tid"))
        );
        assert_eq!(
            with_claim("scope", json!("a \"b")),
            Err(AuthError::InvalidClaim("scope"))
        );
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let header = b64(&json!({"alg": "RS256", "kid": "k1"}));
        let claims = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iss":"https://issuer.test","aud":"bff-web","sub":"user-1","sub":"admin","tid":"acme","exp":{}}}"#,
            NOW + 60
        ));
        assert!(matches!(
            parse(&format!("{header}.{claims}.c2ln")),
            Err(AuthError::Malformed(_))
        ));
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","alg":"RS256"}"#);
        let claims = b64(&good_claims());
        assert!(matches!(
            parse(&format!("{header}.{claims}.c2ln")),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn only_accepted_algorithms_pass() {
        for alg in [
            "none", "None", "NONE", "HS512", "RS512", "PS256", "EdDSA", "",
        ] {
            let token = token_with(&json!({"alg": alg}), &good_claims());
            assert_eq!(parse(&token), Err(AuthError::AlgorithmRejected), "{alg}");
        }
        let unsigned = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&good_claims()));
        assert!(parse(&unsigned).is_err());
    }

    #[test]
    fn key_references_and_critical_headers_are_refused() {
        for (field, value) in [
            ("jku", json!("https://evil.test/jwks.json")),
            ("x5u", json!("https://evil.test/cert.pem")),
            ("x5c", json!(["MIIB"])),
            ("jwk", json!({"kty": "oct", "k": "c2VjcmV0"})),
        ] {
            let token = token_with(
                &json!({"alg": "RS256", "kid": "k1", field: value}),
                &good_claims(),
            );
            assert!(
                matches!(parse(&token), Err(AuthError::UntrustedKeyReference(_))),
                "{field}"
            );
        }
        let token = token_with(
            &json!({"alg": "RS256", "kid": "k1", "crit": ["exp"], "exp": 1}),
            &good_claims(),
        );
        assert_eq!(parse(&token), Err(AuthError::UnsupportedCritical));
    }

    #[test]
    fn malformed_tokens_are_rejected_not_panicked_on() {
        let good = token_with(&json!({"alg": "RS256", "kid": "k1"}), &good_claims());
        let (header, rest) = good.split_once('.').expect("dot");
        let (payload, _) = rest.split_once('.').expect("dot");
        for bad in [
            String::new(),
            "abc".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            format!("{header}.{payload}."),
            format!("{header}.{payload}.%%%"),
            format!("!!!.{payload}.c2ln"),
            format!("{header}.!!!.c2ln"),
            format!("{header}=.{payload}.c2ln"),
            format!("{}.{payload}.c2ln", URL_SAFE_NO_PAD.encode("not json")),
            format!("{header}.{}.c2ln", URL_SAFE_NO_PAD.encode("[1,2]")),
            format!("{header}.{}.c2ln", URL_SAFE_NO_PAD.encode("{\"exp\":")),
            format!(
                "{}.{payload}.c2ln",
                b64(&json!({"alg": "RS256", "typ": "JWE"}))
            ),
            format!("{}.{payload}.c2ln", b64(&json!({"kid": "k1"}))),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            UnverifiedToken::parse(&"a".repeat(9000), 8192).err(),
            Some(AuthError::TokenTooLarge { limit: 8192 })
        );
    }

    #[test]
    fn current_claims_respect_expiry_and_not_before() {
        let claims = with_claim("nbf", json!(NOW + 10)).expect("valid within leeway");
        assert!(claims.validity.is_current(NOW, 30));
        assert!(!claims.validity.is_current(NOW + 100, 30));
        assert!(!claims.validity.is_current(NOW - 100, 30));
    }
}
