//! The OpenAPI document of the partner API: every answer it can give.
//!
//! The operations, their parameters, bodies and success answers come from
//! the handlers (`#[utoipa::path]` on each, gathered by the version's
//! router). What every route shares is the platform's, not the handler's,
//! so it is added here, once, from what each operation is:
//!
//! - every operation: 400 `BAD_REQUEST`, 408 and 413 (the server's body
//!   limits apply to any request), 429 `RATE_LIMITED` and
//!   `QUOTA_EXCEEDED`, 500, 503 and 504 `REQUEST_TIMEOUT`, and the
//!   `RateLimit-*` and `Quota-*` headers on every answer;
//! - an authenticated one (it has `security`): 401 with each `AUTH_*` code,
//!   `WWW-Authenticate` on a refused credential (400, 401, 403), 403 `AUTH_INSUFFICIENT_SCOPE`, 400
//!   `AUTH_AMBIGUOUS` (two credentials), and the `DOWNSTREAM_*` answers of
//!   the services it calls (502, 503, 504);
//! - one with a path parameter: 404 `NOT_FOUND`; with query parameters:
//!   422 `INVALID_QUERY`; with a body: 400 `MALFORMED_JSON`, 415 and 422
//!   `INVALID_BODY`;
//! - what only the handler knows, its `x-problems` extension (status to
//!   codes), which is folded in and removed.
//!
//! Each error answer's schema is the `Problem` schema with its `status`
//! and the `code`s it can carry, so a client, a contract test or a fuzzer
//! knows every answer before it happens.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// The `code`s a 401 can carry: the credential is missing or refused.
const UNAUTHENTICATED: &[&str] = &[
    "AUTH_MISSING",
    "AUTH_TOKEN_MALFORMED",
    "AUTH_ALGORITHM_REJECTED",
    "AUTH_HEADER_REJECTED",
    "AUTH_TOKEN_EXPIRED",
    "AUTH_TOKEN_NOT_YET_VALID",
    "AUTH_INVALID_CLAIMS",
    "AUTH_WRONG_ISSUER",
    "AUTH_WRONG_AUDIENCE",
    "AUTH_UNKNOWN_KEY",
    "AUTH_BAD_SIGNATURE",
    "AUTH_INVALID_API_KEY",
    "AUTH_METHOD_NOT_ACCEPTED",
    "AUTH_TOKEN_INACTIVE",
];

/// What each error status means, for its response's description.
fn meaning(status: u16) -> &'static str {
    match status {
        400 => "The request is malformed; `code` says how",
        401 => "The credential is missing or refused; `code` says why",
        403 => "The credential lacks the operation's scope",
        404 => "What the path names does not exist (or belongs to another tenant)",
        408 => "The body did not arrive in time",
        409 => {
            "A request with this `Idempotency-Key` is still under way; retry after `Retry-After`"
        }
        413 => "The body is too large",
        415 => "The body is not `application/json`",
        422 => "The request is understood but invalid; `errors` names each invalid field",
        429 => "The rate limit or the daily quota is exhausted; retry after `Retry-After`",
        500 => "A fault of the gateway; `trace_id` lets support find it",
        502 => "A service behind the API failed",
        503 => {
            "The API or a service behind it cannot answer now; retry after `Retry-After` when given"
        }
        504 => "The request or a service call ran out of time",
        _ => "An error",
    }
}

/// Adds to every operation of `document` the answers the platform gives
/// for it (see the module docs), and the schemas and headers they use.
pub fn complete(document: &mut Value) {
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                if is_method(method) {
                    complete_operation(operation);
                }
            }
        }
    }
    let components = document
        .as_object_mut()
        .expect("an OpenAPI document is an object")
        .entry("components")
        .or_insert_with(|| json!({}));
    let schemas = object_at(components, "schemas");
    schemas.insert("Problem".to_owned(), problem_schema());
    schemas.insert("InvalidField".to_owned(), invalid_field_schema());
    object_at(components, "headers").extend(headers());
    object_at(components, "securitySchemes").extend(security_schemes());
}

/// Marks the operations that `route` names (`"GET /v1/products/{id}"`, or
/// every operation of a version, `"v1"`) deprecated, with the 410 they
/// answer in a brownout and after the sunset, and the `Deprecation`,
/// `Sunset` and `Link` headers on every answer.
pub fn deprecate(document: &mut Value, route: &str) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        // The document itself stays, so partners can read what replaces a
        // retired version.
        let Some(item) = item
            .as_object_mut()
            .filter(|_| !path.ends_with("/openapi.json"))
        else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            let named = format!("{} {path}", method.to_uppercase());
            let in_version = path.starts_with(&format!("/{route}/"));
            if !is_method(method) || !(named == route || in_version) {
                continue;
            }
            operation["deprecated"] = json!(true);
            let responses = object_at(operation, "responses");
            responses.insert(
                "410".to_owned(),
                problem_response(
                    410,
                    "The operation is retired: past its sunset, or in a scheduled brownout before it; `detail` says what replaces it",
                    &["ROUTE_BROWNOUT".to_owned(), "ROUTE_SUNSET".to_owned()].into(),
                    rate_limit_headers(),
                ),
            );
            for answer in responses.values_mut() {
                object_at(answer, "headers").extend(
                    ["Deprecation", "Sunset", "Link"]
                        .into_iter()
                        .map(|name| (name.to_owned(), header_ref(name))),
                );
            }
        }
    }
    if let Some(headers) = document["components"]["headers"].as_object_mut() {
        headers.extend(deprecation_headers());
    }
}

fn is_method(name: &str) -> bool {
    matches!(
        name,
        "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
    )
}

/// The object under `key` of `value`, made when absent.
fn object_at<'a>(value: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    value
        .as_object_mut()
        .expect("an object")
        .entry(key)
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("an object")
}

fn complete_operation(operation: &mut Value) {
    let operation = operation
        .as_object_mut()
        .expect("an operation is an object");
    let authenticated = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|requirements| !requirements.is_empty());
    if !authenticated {
        operation.insert("security".to_owned(), json!([]));
    }
    let parameters_in = |place: &str| {
        operation
            .get("parameters")
            .and_then(Value::as_array)
            .is_some_and(|parameters| parameters.iter().any(|parameter| parameter["in"] == place))
    };
    let (in_path, in_query) = (parameters_in("path"), parameters_in("query"));
    let with_body = operation.contains_key("requestBody");

    let mut problems: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    let mut add = |status: u16, codes: &[&str]| {
        problems
            .entry(status)
            .or_default()
            .extend(codes.iter().map(|code| (*code).to_owned()));
    };
    add(400, &["BAD_REQUEST"]);
    // The server's body limits apply to every request, a GET with a body too.
    add(408, &["BODY_READ_TIMEOUT"]);
    add(413, &["PAYLOAD_TOO_LARGE"]);
    add(429, &["RATE_LIMITED", "QUOTA_EXCEEDED"]);
    add(500, &["INTERNAL"]);
    add(503, &["RATE_LIMIT_UNAVAILABLE", "UNAVAILABLE"]);
    add(504, &["REQUEST_TIMEOUT"]);
    if authenticated {
        add(400, &["AUTH_AMBIGUOUS"]);
        add(401, UNAUTHENTICATED);
        add(403, &["AUTH_INSUFFICIENT_SCOPE"]);
        add(
            502,
            &[
                "DOWNSTREAM_UNAVAILABLE",
                "DOWNSTREAM_BAD_RESPONSE",
                "DOWNSTREAM_NOT_FOUND",
            ],
        );
        add(
            503,
            &[
                "AUTH_KEYS_UNAVAILABLE",
                "AUTH_INTROSPECTION_UNAVAILABLE",
                "DOWNSTREAM_CIRCUIT_OPEN",
                "DOWNSTREAM_OVERLOADED",
            ],
        );
        add(504, &["DOWNSTREAM_TIMEOUT"]);
    }
    if in_path {
        add(404, &["NOT_FOUND"]);
    }
    if in_query {
        add(422, &["INVALID_QUERY"]);
    }
    if with_body {
        add(400, &["MALFORMED_JSON"]);
        add(415, &["UNSUPPORTED_MEDIA_TYPE"]);
        add(422, &["INVALID_BODY"]);
    }
    if let Some(Value::Object(own)) = operation.remove("x-problems") {
        for (status, codes) in own {
            let status: u16 = status.parse().expect("x-problems is keyed by status");
            let codes: Vec<&str> = codes
                .as_array()
                .expect("x-problems lists codes")
                .iter()
                .map(|code| code.as_str().expect("a code is a string"))
                .collect();
            add(status, &codes);
        }
    }

    let responses = operation
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses is an object");
    for answer in responses.values_mut() {
        object_at(answer, "headers").extend(rate_limit_headers());
    }
    for (status, codes) in problems {
        let mut headers = rate_limit_headers();
        match status {
            400 | 401 | 403 if authenticated => {
                headers.insert(
                    "WWW-Authenticate".to_owned(),
                    header_ref("WWW-Authenticate"),
                );
            }
            409 | 429 | 503 => {
                headers.insert("Retry-After".to_owned(), header_ref("Retry-After"));
            }
            _ => {}
        }
        responses.insert(
            status.to_string(),
            problem_response(status, meaning(status), &codes, headers),
        );
    }
}

/// An error answer: problem+json with `status` and one of `codes`.
fn problem_response(
    status: u16,
    description: &str,
    codes: &BTreeSet<String>,
    headers: Map<String, Value>,
) -> Value {
    json!({
        "description": description,
        "headers": headers,
        "content": {
            "application/problem+json": {
                "schema": {
                    "allOf": [
                        { "$ref": "#/components/schemas/Problem" },
                        {
                            "type": "object",
                            "properties": {
                                "status": { "const": status },
                                "code": { "enum": codes },
                            },
                        },
                    ],
                },
            },
        },
    })
}

fn header_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/headers/{name}") })
}

/// The rate limit's and the daily quota's headers, on every answer the
/// limiter saw (the quota's when the caller's plan has one).
fn rate_limit_headers() -> Map<String, Value> {
    [
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "RateLimit-Policy",
        "Quota-Limit",
        "Quota-Remaining",
        "Quota-Reset",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), header_ref(name)))
    .collect()
}

fn headers() -> Map<String, Value> {
    let integer = |description: &str| json!({ "description": description, "schema": { "type": "integer", "minimum": 0 } });
    let text =
        |description: &str| json!({ "description": description, "schema": { "type": "string" } });
    [
        (
            "RateLimit-Limit",
            integer("Requests the caller's bucket holds when full"),
        ),
        (
            "RateLimit-Remaining",
            integer("Requests left in the bucket now"),
        ),
        (
            "RateLimit-Reset",
            integer("Seconds until the bucket is full again"),
        ),
        (
            "RateLimit-Policy",
            text("The bucket's policy: its capacity and window, for example `100;w=2`"),
        ),
        (
            "Quota-Limit",
            integer("Requests the caller's plan allows in a UTC day"),
        ),
        ("Quota-Remaining", integer("Requests left today")),
        (
            "Quota-Reset",
            integer("Seconds until 00:00 UTC, when the day's count starts again"),
        ),
        ("Retry-After", integer("Seconds to wait before retrying")),
        (
            "WWW-Authenticate",
            text("The scheme and why the credential was refused: `error=\"invalid_request\"`, `\"invalid_token\"` or `\"insufficient_scope\"` (RFC 6750)"),
        ),
    ]
    .into_iter()
    .map(|(name, header)| (name.to_owned(), header))
    .collect()
}

fn deprecation_headers() -> Map<String, Value> {
    let text =
        |description: &str| json!({ "description": description, "schema": { "type": "string" } });
    [
        (
            "Deprecation",
            text("When the operation was deprecated, `@` and seconds since the Unix epoch (RFC 9745)"),
        ),
        (
            "Sunset",
            text("When the operation stops answering, an HTTP-date (RFC 8594)"),
        ),
        (
            "Link",
            text("`rel=\"successor-version\"`: what replaces the operation; `rel=\"deprecation\"`: how to migrate"),
        ),
    ]
    .into_iter()
    .map(|(name, header)| (name.to_owned(), header))
    .collect()
}

fn security_schemes() -> Map<String, Value> {
    [
        (
            "api_key",
            json!({
                "type": "apiKey",
                "in": "header",
                "name": "X-Api-Key",
                "description": "An API key issued to the partner; it carries the partner's tenant, plan and scopes",
            }),
        ),
        (
            "bearer",
            json!({
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An OAuth client-credentials access token for the audience `bff-partner`, with the operation's scope",
            }),
        ),
    ]
    .into_iter()
    .map(|(name, scheme)| (name.to_owned(), scheme))
    .collect()
}

/// The problem+json body (RFC 9457) every error answer carries.
fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "An error (RFC 9457). Switch on `code`, which is stable; `title` and `detail` are for people and may change.",
        "required": ["type", "title", "status", "code"],
        "properties": {
            "type": { "type": "string", "format": "uri", "description": "Identifies the kind of problem" },
            "title": { "type": "string", "description": "A short summary of the kind of problem" },
            "status": { "type": "integer", "description": "The HTTP status" },
            "detail": { "type": "string", "description": "What happened, for people" },
            "code": { "type": "string", "description": "The stable machine-readable code" },
            "trace_id": { "type": "string", "pattern": "^[0-9a-f]{32}$", "description": "The W3C trace id of the request, for support" },
            "errors": {
                "type": "array",
                "description": "On a 422, each invalid field",
                "items": { "$ref": "#/components/schemas/InvalidField" },
            },
        },
    })
}

fn invalid_field_schema() -> Value {
    json!({
        "type": "object",
        "required": ["name", "reason"],
        "properties": {
            "name": {
                "type": "string",
                "description": "A query parameter's name (`limit`), or a JSON Pointer into the body (`/lines/0/quantity`)",
            },
            "reason": { "type": "string", "description": "What is wrong with it" },
        },
    })
}
