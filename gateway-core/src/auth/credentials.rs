//! Finding the one credential a request carries.
//!
//! A bearer token comes from `Authorization: Bearer <token>` or, where
//! configured (bff-web), from the session cookie; an API key from
//! `X-Api-Key`. A request carrying two credentials (two `Authorization`
//! headers, a header and a cookie that disagree, a token and an API key) is
//! refused rather than resolved by a rule an attacker could exploit.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::AuthError;

/// The API key header.
pub(crate) const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The credential of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential<'a> {
    /// A JWT in `Authorization` (and maybe in the cookie too).
    Bearer(&'a str),
    /// A JWT in the session cookie alone, which a browser attaches by itself.
    SessionCookie(&'a str),
    /// An API key.
    ApiKey(&'a str),
}

fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, AuthError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(AuthError::MultipleCredentials),
        (Some(value), None) => Ok(Some(value)),
    }
}

/// The token of `Bearer <token>`: one or more spaces after the scheme,
/// then printable ASCII without spaces or tabs.
fn bearer(value: &HeaderValue) -> Result<&str, AuthError> {
    let value = value.as_bytes();
    let space = value
        .iter()
        .position(|&byte| byte == b' ')
        .ok_or(AuthError::MalformedAuthorization)?;
    let (scheme, after_scheme) = value.split_at(space);
    let token_start = after_scheme
        .iter()
        .position(|&byte| byte != b' ')
        .unwrap_or(after_scheme.len());
    let token = &after_scheme[token_start..];
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() || !all_visible(token) {
        return Err(AuthError::MalformedAuthorization);
    }
    std::str::from_utf8(token).map_err(|_| AuthError::MalformedAuthorization)
}

/// Whether every byte is printable ASCII other than space. Hand-written
/// as a fold without an early exit so that it checks many bytes per
/// instruction: an RS256 token is 700 bytes, and `HeaderValue::to_str`
/// followed by a search for blanks read them one at a time, twice.
fn all_visible(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(true, |visible, &byte| visible & matches!(byte, b'!'..=b'~'))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    let mut found: Option<&str> = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((key, token)) = pair.trim().split_once('=') else {
                continue;
            };
            if key != name {
                continue;
            }
            match found {
                Some(previous) if previous != token => return Err(AuthError::MultipleCredentials),
                _ => found = Some(token),
            }
        }
    }
    Ok(found.filter(|token| !token.is_empty()))
}

/// The request's one credential.
pub(crate) fn extract<'a>(
    headers: &'a HeaderMap,
    session_cookie: Option<&str>,
) -> Result<Credential<'a>, AuthError> {
    let from_header = single(headers, &header::AUTHORIZATION)?
        .map(bearer)
        .transpose()?;
    let from_cookie = match session_cookie {
        Some(name) => cookie(headers, name)?,
        None => None,
    };
    let api_key = single(headers, &API_KEY)?
        .map(|key| key.to_str().map_err(|_| AuthError::MalformedAuthorization))
        .transpose()?;
    let token = match (from_header, from_cookie) {
        (Some(header), Some(cookie)) if header != cookie => {
            return Err(AuthError::MultipleCredentials);
        }
        (Some(header), _) => Some(Credential::Bearer(header)),
        (None, Some(cookie)) => Some(Credential::SessionCookie(cookie)),
        (None, None) => None,
    };
    match (token, api_key) {
        (Some(_), Some(_)) => Err(AuthError::MultipleCredentials),
        (Some(token), None) => Ok(token),
        (None, Some(key)) => Ok(Credential::ApiKey(key)),
        (None, None) => Err(AuthError::MissingCredentials),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::try_from(*name).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    #[test]
    fn bearer_tokens_are_read_from_authorization() {
        let map = headers(&[("authorization", "Bearer a.b.c")]);
        assert_eq!(extract(&map, None), Ok(Credential::Bearer("a.b.c")));
        let map = headers(&[("authorization", "bearer a.b.c")]);
        assert_eq!(extract(&map, None), Ok(Credential::Bearer("a.b.c")));
        let map = headers(&[("authorization", "BEARER   a.b.c")]);
        assert_eq!(extract(&map, None), Ok(Credential::Bearer("a.b.c")));
    }

    #[test]
    fn malformed_authorization_is_refused() {
        for value in [
            "a.b.c",
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwdw==",
            "Bearer Bearer a.b.c",
            "Bearer a.b.c extra",
            "Bearer a.b.c\textra",
            "Bearer\ta.b.c",
            "Token a.b.c",
            "Bearer a.b.é",
        ] {
            assert_eq!(
                extract(&headers(&[("authorization", value)]), None),
                Err(AuthError::MalformedAuthorization),
                "{value}"
            );
        }
    }

    #[test]
    fn every_byte_of_a_long_token_is_checked() {
        let token = format!("{}.{}.{}", "h".repeat(36), "p".repeat(300), "s".repeat(342));
        let accepted = headers(&[("authorization", &format!("Bearer {token}"))]);
        assert_eq!(
            extract(&accepted, None),
            Ok(Credential::Bearer(token.as_str()))
        );
        for at in [0, 17, 350, token.len() - 1] {
            // A space before the token only separates it from the scheme.
            let blanks = if at == 0 {
                &["\t", "é"][..]
            } else {
                &[" ", "\t", "é"]
            };
            for blank in blanks {
                let mut broken = token.clone();
                broken.replace_range(at..=at, blank);
                let refused = headers(&[("authorization", &format!("Bearer {broken}"))]);
                assert_eq!(
                    extract(&refused, None),
                    Err(AuthError::MalformedAuthorization),
                    "{blank:?} at {at}"
                );
            }
        }
    }

    #[test]
    fn two_credentials_are_refused() {
        let two = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer d.e.f"),
        ]);
        assert_eq!(extract(&two, None), Err(AuthError::MultipleCredentials));
        let disagree = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("cookie", "session=d.e.f"),
        ]);
        assert_eq!(
            extract(&disagree, Some("session")),
            Err(AuthError::MultipleCredentials)
        );
        let two_cookies = headers(&[("cookie", "session=a.b.c; session=d.e.f")]);
        assert_eq!(
            extract(&two_cookies, Some("session")),
            Err(AuthError::MultipleCredentials)
        );
        let key_and_token = headers(&[("authorization", "Bearer a.b.c"), ("x-api-key", "k")]);
        assert_eq!(
            extract(&key_and_token, None),
            Err(AuthError::MultipleCredentials)
        );
    }

    #[test]
    fn the_session_cookie_carries_a_token_only_where_configured() {
        let map = headers(&[("cookie", "theme=dark; session=a.b.c")]);
        assert_eq!(
            extract(&map, Some("session")),
            Ok(Credential::SessionCookie("a.b.c"))
        );
        assert_eq!(extract(&map, None), Err(AuthError::MissingCredentials));
        let agree = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("cookie", "session=a.b.c"),
        ]);
        assert_eq!(
            extract(&agree, Some("session")),
            Ok(Credential::Bearer("a.b.c")),
            "a browser attaches no Authorization header by itself"
        );
    }

    #[test]
    fn api_keys_and_nothing() {
        assert_eq!(
            extract(&headers(&[("x-api-key", "k-1")]), None),
            Ok(Credential::ApiKey("k-1"))
        );
        assert_eq!(
            extract(&headers(&[]), None),
            Err(AuthError::MissingCredentials)
        );
    }
}
