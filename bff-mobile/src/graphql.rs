//! GraphQL over HTTP: `POST /graphql` with a JSON body, `GET /graphql?query=`.
//!
//! A body that is not a GraphQL request is a problem+json 400; a well-formed
//! request always gets a GraphQL response (200), whose `errors` say what
//! failed.
//!
//! Every request is checked against the limits of `[mobile]` before the
//! schema sees it ([`QueryLimits`]). Apps send the same few query texts over
//! and over, so parsed documents are kept by their text ([`ParsedQueries`]):
//! a repeated query skips the parser (a tenth of the product query's CPU)
//! and is still checked and validated, limits included, on every request.

use async_graphql::{Variables, parser::types::ExecutableDocument};
use axum::{
    Json,
    body::Bytes,
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use gateway_core::{Error, RequestContext};
use moka::sync::Cache;
use serde::Deserialize;

use crate::{MobileSchema, limits::QueryLimits};

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
}

/// Checks `request` against the limits (the text, then the parsed
/// document), then executes it; at most `max_errors` errors come back.
async fn execute(
    graphql: &Graphql,
    mut request: async_graphql::Request,
    context: RequestContext,
) -> Response {
    if let Err(refused) = graphql.limits.check_text(&request.query) {
        return Json(refused.response()).into_response();
    }
    graphql.parsed.prepare(&mut request);
    // A query that does not parse is left for the schema to report.
    if let Ok(document) = request.parsed_query()
        && let Err(refused) = graphql.limits.check_document(document)
    {
        return Json(refused.response()).into_response();
    }
    let mut response = graphql.schema.execute(request.data(context)).await;
    graphql.limits.cap_errors(&mut response);
    Json(response).into_response()
}

pub(crate) async fn post(
    State(graphql): State<Graphql>,
    context: RequestContext,
    body: Bytes,
) -> Result<Response, Error> {
    let request: async_graphql::Request = serde_json::from_slice(&body).map_err(|error| {
        Error::BadRequest(format!("the body is not a GraphQL request: {error}"))
    })?;
    Ok(execute(&graphql, request, context).await)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetParams {
    query: String,
    operation_name: Option<String>,
    variables: Option<String>,
}

pub(crate) async fn get(
    State(graphql): State<Graphql>,
    context: RequestContext,
    Query(params): Query<GetParams>,
) -> Result<Response, Error> {
    let mut request = async_graphql::Request::new(params.query);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.variables {
        let variables: serde_json::Value = serde_json::from_str(&variables)
            .map_err(|error| Error::BadRequest(format!("variables are not JSON: {error}")))?;
        request = request.variables(Variables::from_json(variables));
    }
    Ok(execute(&graphql, request, context).await)
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
