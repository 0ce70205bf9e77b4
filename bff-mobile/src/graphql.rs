//! GraphQL over HTTP: `POST /graphql` with a JSON body, `GET /graphql?query=`.
//!
//! A body that is not a GraphQL request is a problem+json 400; a well-formed
//! request always gets a GraphQL response (200), whose `errors` say what
//! failed.

use async_graphql::Variables;
use axum::{
    Json,
    body::Bytes,
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use gateway_core::{Error, RequestContext};
use serde::Deserialize;

use crate::MobileSchema;

async fn execute(
    schema: &MobileSchema,
    request: async_graphql::Request,
    context: RequestContext,
) -> Response {
    Json(schema.execute(request.data(context)).await).into_response()
}

pub(crate) async fn post(
    State(schema): State<MobileSchema>,
    context: RequestContext,
    body: Bytes,
) -> Result<Response, Error> {
    let request: async_graphql::Request = serde_json::from_slice(&body).map_err(|error| {
        Error::BadRequest(format!("the body is not a GraphQL request: {error}"))
    })?;
    Ok(execute(&schema, request, context).await)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetParams {
    query: String,
    operation_name: Option<String>,
    variables: Option<String>,
}

pub(crate) async fn get(
    State(schema): State<MobileSchema>,
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
    Ok(execute(&schema, request, context).await)
}
