//! `POST /api/orders`: checkout.
//!
//! The body is checked here, field by field, before anything is called:
//! `{"lines": [{"productId": 42, "quantity": 1}]}` with 1 to
//! [`NewOrder::MAX_LINES`] lines, each a product id and a quantity of 1 to
//! [`NewOrderLine::MAX_QUANTITY`], and nothing else. Another content type is a 415,
//! JSON that does not parse a 400 naming where it broke, and a body of
//! the wrong shape a 422 listing every invalid field (`invalid_params`,
//! JSON Pointers). The order then goes to the orders service for the
//! verified user, which prices it and computes its total; the answer is a
//! `201` with `Location` and the created order in the page's shape.
//!
//! The route is idempotent (gateway-core's `IdempotencyLayer`): it needs an
//! `Idempotency-Key`, and a retry with the same key is placed once.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use gateway_core::{
    Error, RequestContext,
    downstream::{DownstreamError, Downstreams},
    error::ProblemDetails,
    server::has_json_body,
};
use serde_json::Value;
use shared_schema::{
    InvalidParam,
    accounts::{NewOrder, NewOrderLine, ORDERS, Order},
};

use crate::orders::OrderView;

/// Why a checkout was refused before or by the orders service.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The body is not JSON.
    #[error("the body must be application/json")]
    NotJson,
    /// The body does not parse.
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// The orders service refused the order.
    #[error("the orders service refused the order ({0})")]
    Refused(StatusCode),
}

impl ProblemDetails for CheckoutError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotJson => "UNSUPPORTED_MEDIA_TYPE",
            Self::Malformed(_) => "MALFORMED_JSON",
            Self::Refused(_) => "ORDER_REJECTED",
        }
    }

    fn client_detail(&self) -> String {
        match self {
            Self::Refused(_) => {
                "the order was refused: a product does not exist or cannot be ordered".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// The lines of a checkout body, or every field that is wrong with it.
fn order_lines(body: &[u8]) -> Result<Vec<NewOrderLine>, Error> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        CheckoutError::Malformed(format!(
            "{} at line {}, column {}",
            match error.classify() {
                serde_json::error::Category::Eof => "it ends too early",
                _ => "unexpected input",
            },
            error.line(),
            error.column()
        ))
    })?;
    let mut invalid = Vec::new();
    let mut problem = |name: String, reason: &str| {
        invalid.push(InvalidParam {
            name,
            reason: reason.to_owned(),
        });
    };
    let Some(object) = value.as_object() else {
        problem(String::new(), "must be an object with lines");
        return Err(Error::invalid_body(invalid));
    };
    for field in object.keys().filter(|field| *field != "lines") {
        problem(
            format!("/{}", escape(field)),
            "is not a field of a checkout",
        );
    }
    let lines = match object.get("lines") {
        None => {
            problem("/lines".to_owned(), "is required");
            &Vec::new()
        }
        Some(Value::Array(lines)) => {
            if lines.is_empty() || lines.len() > NewOrder::MAX_LINES {
                problem(
                    "/lines".to_owned(),
                    &format!("must have 1 to {} lines", NewOrder::MAX_LINES),
                );
            }
            lines
        }
        Some(_) => {
            problem("/lines".to_owned(), "must be an array of lines");
            &Vec::new()
        }
    };
    let mut checked = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        let at = |field: &str| format!("/lines/{index}{field}");
        let Some(line) = line.as_object() else {
            problem(at(""), "must be an object with productId and quantity");
            continue;
        };
        for field in line
            .keys()
            .filter(|field| !matches!(field.as_str(), "productId" | "quantity"))
        {
            problem(
                at(&format!("/{}", escape(field))),
                "is not a field of a line",
            );
        }
        let product_id = match line.get("productId") {
            None => {
                problem(at("/productId"), "is required");
                None
            }
            Some(id) => {
                let id = id.as_u64().filter(|id| *id > 0);
                if id.is_none() {
                    problem(at("/productId"), "must be a positive whole number");
                }
                id
            }
        };
        let quantity = match line.get("quantity") {
            None => {
                problem(at("/quantity"), "is required");
                None
            }
            Some(quantity) => {
                let quantity = quantity.as_u64().filter(|quantity| {
                    (1..=u64::from(NewOrderLine::MAX_QUANTITY)).contains(quantity)
                });
                if quantity.is_none() {
                    problem(
                        at("/quantity"),
                        &format!(
                            "must be a whole number from 1 to {}",
                            NewOrderLine::MAX_QUANTITY
                        ),
                    );
                }
                quantity
            }
        };
        if let (Some(product_id), Some(quantity)) = (product_id, quantity) {
            checked.push(NewOrderLine {
                product_id,
                quantity: quantity as u32,
            });
        }
    }
    if invalid.is_empty() {
        Ok(checked)
    } else {
        Err(Error::invalid_body(invalid))
    }
}

/// A member name as a JSON Pointer token (RFC 6901).
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

pub(crate) async fn post_order(
    State(services): State<Downstreams>,
    context: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    if !has_json_body(&headers) {
        return Err(CheckoutError::NotJson.into());
    }
    let lines = order_lines(&body)?;
    let user = context.user_id()?;
    let order: Order = services
        .client(ORDERS.name)
        .post(
            "/orders",
            &NewOrder {
                user_id: user,
                lines,
            },
            &context,
        )
        .await
        .map_err(|error| match error {
            DownstreamError::Status { status, .. } if status.is_client_error() => {
                CheckoutError::Refused(status).into()
            }
            other => Error::from(other),
        })?;
    let location = HeaderValue::try_from(format!("/api/orders/{}", order.id))
        .expect("a number is header-safe");
    let view = OrderView::with_products(order, &services, &context).await?;
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(view),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(body: &str) -> Vec<(String, String)> {
        match order_lines(body.as_bytes()) {
            Ok(lines) => panic!("valid: {lines:?}"),
            Err(error) => {
                let problem = error.problem();
                assert_eq!(problem.status, 422, "{problem:?}");
                assert_eq!(problem.code, "INVALID_BODY");
                problem
                    .invalid_params
                    .into_iter()
                    .map(|param| (param.name, param.reason))
                    .collect()
            }
        }
    }

    #[test]
    fn a_good_body_gives_its_lines() {
        let lines = order_lines(
            br#"{"lines":[{"productId":42,"quantity":1},{"productId":7,"quantity":99}]}"#,
        )
        .expect("valid");
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[1].product_id, lines[1].quantity), (7, 99));
    }

    #[test]
    fn every_invalid_field_is_listed() {
        let names = |found: Vec<(String, String)>| -> Vec<String> {
            found.into_iter().map(|(name, _)| name).collect()
        };
        assert_eq!(
            names(invalid(
                r#"{"lines":[{"productId":0,"quantity":100},{"quantity":"2","colour":"red"},7],"coupon":"X"}"#
            )),
            [
                "/coupon",
                "/lines/0/productId",
                "/lines/0/quantity",
                "/lines/1/colour",
                "/lines/1/productId",
                "/lines/1/quantity",
                "/lines/2",
            ]
        );
        assert_eq!(names(invalid(r#"{"lines":[]}"#)), ["/lines"]);
        assert_eq!(names(invalid(r#"{}"#)), ["/lines"]);
        assert_eq!(names(invalid(r#"{"lines":{}}"#)), ["/lines"]);
        assert_eq!(names(invalid(r#"[1]"#)), [""]);
        let too_many = format!(
            r#"{{"lines":[{}]}}"#,
            vec![r#"{"productId":1,"quantity":1}"#; NewOrder::MAX_LINES + 1].join(",")
        );
        assert_eq!(names(invalid(&too_many)), ["/lines"]);
        assert_eq!(
            names(invalid(
                r#"{"a/b":1,"lines":[{"productId":1,"quantity":1}]}"#
            )),
            ["/a~1b"]
        );
    }

    #[test]
    fn json_that_does_not_parse_says_where() {
        let error =
            order_lines(b"{\"lines\": [\n  {\"productId\": 1,}\n]}").expect_err("malformed");
        let problem = error.problem();
        assert_eq!(
            (problem.status, problem.code.as_str()),
            (400, "MALFORMED_JSON")
        );
        assert!(
            problem
                .detail
                .as_deref()
                .is_some_and(|detail| detail.contains("line 2")),
            "{problem:?}"
        );
    }
}
