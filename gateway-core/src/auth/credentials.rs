//! Finding the one credential a request carries.
//!
//! A bearer token comes from `Authorization: Bearer <token>` or, where
//! configured (bff-web), from the session cookie; an API key from
//! `X-Api-Key`. A request carrying two credentials (two `Authorization`
//! headers, a header and a cookie that disagree, a token and an API key) is
//! refused rather than resolved by a rule an attacker could exploit.

use http::{HeaderMap, HeaderName, header};

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

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(AuthError::MultipleCredentials),
        (Some(value), None) => value
            .to_str()
            .map(Some)
            .map_err(|_| AuthError::MalformedAuthorization),
    }
}

fn bearer(value: &str) -> Result<&str, AuthError> {
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::MalformedAuthorization)?;
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.bytes().any(|byte| byte == b' ' || byte == b'\t')
    {
        return Err(AuthError::MalformedAuthorization);
    }
    Ok(token)
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
    let api_key = single(headers, &API_KEY)?;
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
        ] {
            assert_eq!(
                extract(&headers(&[("authorization", value)]), None),
                Err(AuthError::MalformedAuthorization),
                "{value}"
            );
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
