//! GraphQL over HTTP (the GraphQL-over-HTTP specification): `POST /graphql`
//! with a JSON body, `GET /graphql?query=` for queries only.
//!
//! - A POST must say `Content-Type: application/json`: without one, or
//!   with another (`text/plain`, a form: what a browser may send cross-site
//!   without a preflight), it is a 415. A GET needs no content type; it
//!   always carries `Authorization`, which no cross-site page can send
//!   without a preflight.
//! - A mutation over GET is a 405 with `Allow: POST`: GET must be safe.
//! - A client that accepts `application/graphql-response+json` gets it, with
//!   the specification's status codes: 400 for a request that cannot run (it
//!   does not parse, fails validation or is over a limit), with no `data`;
//!   200 once it ran. Others get `application/json` and a 200 for every
//!   well-formed request, as before the specification. An `Accept` that
//!   allows neither is a 406.
//! - A body that is not a GraphQL request is a problem+json 400.
//! - A POST may carry a batch, a JSON array of up to `max_batch_operations`
//!   requests: each is checked and run on its own, concurrently, and the
//!   answer is the array of their responses, in order (200). A larger batch
//!   runs none (`BATCH_TOO_LARGE`).
//!
//! Every request is checked against the limits of `[mobile]` before the
//! schema sees it ([`QueryLimits`]). Apps send the same few query texts over
//! and over, so parsed documents are kept by their text ([`ParsedQueries`]):
//! a repeated query skips the parser (a tenth of the product query's CPU)
//! and is still checked and validated, limits included, on every request.

use async_graphql::{
    Variables,
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
};
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use gateway_core::{
    Error, RequestContext, downstream::Downstreams, error::ProtocolError,
    ratelimit::RateLimitCharge, server::has_json_body,
};
use moka::sync::Cache;
use serde::Deserialize;
use shared_schema::catalog::{Price, Product, ProductReviews, StockLevel};

use crate::{
    MobileSchema,
    limits::QueryLimits,
    loaders::{Caller, loader},
    money::Locale,
    persisted::PersistedQueries,
};

/// Parsed query documents by query text, bounded by the bytes of text they
/// were parsed from (`[mobile] parsed_query_cache_bytes`; 0 keeps none).
/// Only documents that parsed are kept.
#[derive(Clone)]
pub(crate) struct ParsedQueries(Option<Cache<String, ExecutableDocument>>);

impl ParsedQueries {
    pub(crate) fn new(max_text_bytes: u64) -> Self {
        Self((max_text_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_text_bytes)
                .weigher(|text: &String, _| u32::try_from(text.len()).unwrap_or(u32::MAX).max(1))
                .build()
        }))
    }

    /// Gives `request` its parsed document: the kept one, or one parsed now
    /// and kept. A query that does not parse is left for the schema to report.
    fn prepare(&self, request: &mut async_graphql::Request) {
        let Some(cache) = &self.0 else { return };
        if let Some(document) = cache.get(request.query.as_str()) {
            request.set_parsed_query(document);
        } else if let Ok(document) = request.parsed_query() {
            let document = document.clone();
            cache.insert(request.query.clone(), document);
        }
    }
}

/// What the `/graphql` handlers share.
#[derive(Clone)]
pub(crate) struct Graphql {
    pub(crate) schema: MobileSchema,
    pub(crate) parsed: ParsedQueries,
    pub(crate) limits: QueryLimits,
    pub(crate) persisted: PersistedQueries,
    pub(crate) services: Downstreams,
    /// Points of complexity one rate-limit token pays for.
    pub(crate) complexity_per_token: usize,
}

/// The GraphQL-over-HTTP media type of a response.
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// How a response is sent, from the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answering {
    /// `application/graphql-response+json`, with the specification's status codes.
    GraphqlResponse,
    /// `application/json`, 200 for every well-formed request.
    Json,
}

impl Answering {
    /// The first acceptable of the two, or none (a 406). A missing `Accept`
    /// is `application/json`, as the specification asks.
    fn from_accept(headers: &HeaderMap) -> Option<Self> {
        let Some(accept) = headers.get(header::ACCEPT) else {
            return Some(Self::Json);
        };
        let mut json = false;
        for range in accept.to_str().ok()?.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|parameter| {
                parameter
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            if refused {
                continue;
            }
            if media.eq_ignore_ascii_case(GRAPHQL_RESPONSE_JSON) {
                return Some(Self::GraphqlResponse);
            }
            if ["application/json", "application/*", "*/*"]
                .iter()
                .any(|allowed| media.eq_ignore_ascii_case(allowed))
            {
                json = true;
            }
        }
        json.then_some(Self::Json)
    }

    /// `response` as this media type. A request that never ran (no data,
    /// no error at a path: it did not parse, failed validation or was over a
    /// limit) has no `data` entry, as the GraphQL specification asks, and
    /// under `application/graphql-response+json` is a 400.
    fn send(self, response: &async_graphql::Response) -> Response {
        let mut answer = if never_ran(response) {
            let mut answer = Json(without_data(response)).into_response();
            if self == Self::GraphqlResponse {
                *answer.status_mut() = StatusCode::BAD_REQUEST;
                answer.extensions_mut().insert(ProtocolError);
            }
            answer
        } else {
            Json(response).into_response()
        };
        self.label(&mut answer);
        answer
    }

    /// The responses of a batch, in order, as this media type: a 200, each
    /// response as [`Self::send`] writes its body.
    fn send_batch(self, responses: &[async_graphql::Response]) -> Response {
        let bodies: Vec<serde_json::Value> = responses
            .iter()
            .map(|response| match never_ran(response) {
                true => without_data(response),
                false => serde_json::to_value(response).unwrap_or_default(),
            })
            .collect();
        let mut answer = Json(bodies).into_response();
        self.label(&mut answer);
        answer
    }

    fn label(self, answer: &mut Response) {
        if self == Self::GraphqlResponse {
            answer.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/graphql-response+json; charset=utf-8"),
            );
        }
    }
}

/// Whether `response` is of a request that never ran: no data, and no
/// error at a path (it did not parse, failed validation or was over a limit).
fn never_ran(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}

/// The body of a response that never ran: its errors, without `data`.
fn without_data(response: &async_graphql::Response) -> serde_json::Value {
    serde_json::json!({ "errors": response.errors })
}

/// Whether the operation of `document` that runs (the one named, or the
/// only one) is a mutation.
fn is_mutation(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.is_some_and(|operation| operation.node.ty == OperationType::Mutation)
}

/// The answer to an `Accept` that allows neither GraphQL media type.
fn not_acceptable() -> Response {
    (
        StatusCode::NOT_ACCEPTABLE,
        "GraphQL answers are application/graphql-response+json or application/json",
    )
        .into_response()
}

/// Resolves `request`'s persisted query, checks it against the limits (the
/// text, then the parsed document; over GET, that it is no mutation),
/// registers a new persisted query that passed them, charges what it costs
/// beyond the route's one token to the caller's rate limit, then executes
/// it; at most `max_errors` errors come back. A refusal by a limit is a
/// GraphQL response; a mutation over GET and an empty bucket are refused
/// over HTTP (the `Err`: 405, 429).
async fn run(
    graphql: &Graphql,
    mut request: async_graphql::Request,
    context: RequestContext,
    locale: Locale,
    charge: Option<&RateLimitCharge>,
    over_get: bool,
) -> Result<async_graphql::Response, Response> {
    // The caller's identity, shared (not copied) while the context is moved
    // into the request's data below.
    let identity = context.identity.clone();
    let tenant = identity
        .as_deref()
        .map_or("", |identity| identity.tenant.as_str());
    let register = match graphql.persisted.resolve(&mut request, tenant).await {
        Ok(register) => register,
        Err(refused) => return Ok(refused.response()),
    };
    if let Err(refused) = graphql.limits.check_text(&request.query) {
        return Ok(refused.response());
    }
    graphql.parsed.prepare(&mut request);
    let operation_name = request.operation_name.clone();
    // Held aside while the document is borrowed; given back before it runs.
    let variables = std::mem::take(&mut request.variables);
    // A query that does not parse is left for the schema to report.
    if let Ok(document) = request.parsed_query() {
        if over_get && is_mutation(document, operation_name.as_deref()) {
            return Err((
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, HeaderValue::from_static("POST"))],
                "a mutation is sent with POST",
            )
                .into_response());
        }
        let cost = match graphql.limits.check_document(document, &variables) {
            Ok(cost) => cost,
            Err(refused) => return Ok(refused.response()),
        };
        let tokens = cost.div_ceil(graphql.complexity_per_token);
        if let Some(charge) = charge
            && tokens > 1
        {
            let extra = u32::try_from(tokens - 1).unwrap_or(u32::MAX);
            charge
                .charge(extra)
                .await
                .map_err(|refused| Error::from(refused).into_response())?;
        }
        if let Some(hash) = register {
            graphql
                .persisted
                .register(tenant, hash, &request.query)
                .await;
        }
    }
    request.variables = variables;
    let caller = Caller::new(&graphql.services, &context);
    let request = request
        .data(loader::<Product>(&caller))
        .data(loader::<Price>(&caller))
        .data(loader::<StockLevel>(&caller))
        .data(loader::<ProductReviews>(&caller))
        .data(locale)
        .data(context);
    let mut response = graphql.schema.execute(request).await;
    graphql.limits.cap_errors(&mut response);
    Ok(response)
}

/// `POST /graphql`: one operation, or a batch of them (a JSON array, each
/// checked and run on its own, concurrently, answered in order) of at most
/// `max_batch_operations`.
pub(crate) async fn post(
    State(graphql): State<Graphql>,
    context: RequestContext,
    charge: Option<Extension<RateLimitCharge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let charge = charge.as_ref().map(|Extension(charge)| charge);
    let locale = Locale::from_headers(&headers);
    if !has_json_body(&headers) {
        return Ok((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a GraphQL request is sent as application/json",
        )
            .into_response());
    }
    let Some(answering) = Answering::from_accept(&headers) else {
        return Ok(not_acceptable());
    };
    let not_a_request = |error: serde_json::Error| {
        Error::BadRequest(format!("the body is not a GraphQL request: {error}"))
    };
    // A batch is a JSON array; anything else is one request.
    let is_batch = body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[');
    if !is_batch {
        let request: async_graphql::Request =
            serde_json::from_slice(&body).map_err(not_a_request)?;
        return Ok(
            match run(&graphql, request, context, locale, charge, false).await {
                Ok(response) => answering.send(&response),
                Err(refused) => refused,
            },
        );
    }
    let requests: Vec<async_graphql::Request> =
        serde_json::from_slice(&body).map_err(not_a_request)?;
    if requests.is_empty() {
        return Err(Error::BadRequest("an empty batch".to_owned()));
    }
    if let Err(refused) = graphql.limits.check_batch(requests.len()) {
        return Ok(answering.send(&refused.response()));
    }
    let responses = futures_util::future::join_all(
        requests
            .into_iter()
            .map(|request| run(&graphql, request, context.clone(), locale, charge, false)),
    )
    .await
    .into_iter()
    .collect::<Result<Vec<_>, Response>>();
    Ok(match responses {
        Ok(responses) => answering.send_batch(&responses),
        Err(refused) => refused,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetParams {
    /// Absent when `extensions` names a persisted query.
    #[serde(default)]
    query: String,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

pub(crate) async fn get(
    State(graphql): State<Graphql>,
    context: RequestContext,
    charge: Option<Extension<RateLimitCharge>>,
    headers: HeaderMap,
    Query(params): Query<GetParams>,
) -> Result<Response, Error> {
    let charge = charge.as_ref().map(|Extension(charge)| charge);
    let mut request = async_graphql::Request::new(params.query);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.variables {
        let variables: serde_json::Value = serde_json::from_str(&variables)
            .map_err(|error| Error::BadRequest(format!("variables are not JSON: {error}")))?;
        request = request.variables(Variables::from_json(variables));
    }
    if let Some(extensions) = params.extensions {
        request.extensions = serde_json::from_str(&extensions).map_err(|error| {
            Error::BadRequest(format!("extensions are not a JSON object: {error}"))
        })?;
    }
    let Some(answering) = Answering::from_accept(&headers) else {
        return Ok(not_acceptable());
    };
    Ok(
        match run(
            &graphql,
            request,
            context,
            Locale::from_headers(&headers),
            charge,
            true,
        )
        .await
        {
            Ok(response) => answering.send(&response),
            Err(refused) => refused,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(parsed: &ParsedQueries) -> u64 {
        let cache = parsed.0.as_ref().expect("a cache");
        cache.run_pending_tasks();
        cache.entry_count()
    }

    #[test]
    fn documents_that_parse_are_kept_once_by_their_text_within_the_bound() {
        let query = "{ product(id: 1) { name } }";
        let parsed = ParsedQueries::new(1024);
        for _ in 0..3 {
            let mut request = async_graphql::Request::new(query);
            parsed.prepare(&mut request);
            assert!(request.parsed_query().is_ok());
        }
        assert_eq!(kept(&parsed), 1, "one document for one text");
        parsed.prepare(&mut async_graphql::Request::new(
            "{ product(id: 1) { name }",
        ));
        assert_eq!(kept(&parsed), 1, "a syntax error is not kept");

        let small = ParsedQueries::new(8);
        small.prepare(&mut async_graphql::Request::new(query));
        assert_eq!(kept(&small), 0, "a text larger than the bound is not kept");
        assert!(ParsedQueries::new(0).0.is_none(), "0 keeps none");
    }
}
