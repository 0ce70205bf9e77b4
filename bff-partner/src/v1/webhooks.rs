//! `POST /v1/webhooks`, `GET /v1/webhooks` and `DELETE /v1/webhooks/{id}`:
//! the partner's subscriptions to events, kept and delivered by the
//! webhooks service.
//!
//! bff-partner owns the contract: the scope (`webhooks:manage`), the
//! tenant (every call carries the partner's, and the service keeps each
//! tenant's subscriptions apart: another tenant's is a 404), and which
//! URLs may receive deliveries. A target must be `https`, and neither it
//! nor any address its host resolves to may be private, loopback,
//! link-local or otherwise internal, so a subscription cannot make the
//! platform call into its own network. `[partner] allow_http_webhooks`
//! lets a local receiver on loopback take them over plain `http`, for
//! development. The signing secret is in the answer that creates the
//! subscription, and never again.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use gateway_core::{
    Error, RequestContext,
    downstream::fetching,
    server::{created, json_body},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared_schema::{
    InvalidParam, Page,
    webhooks::{EVENTS, NewSubscription, ORDER_CREATED, Subscription, WEBHOOKS},
};
use utoipa::ToSchema;

use super::{Money, V1State, orders::PartnerOrderStatus, timestamp};

/// How long resolving a target's host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest target URL.
const MAX_URL_LENGTH: usize = 2048;

/// The body of `POST /v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where deliveries are POSTed: an `https` URL of a public host.
    #[schema(example = "https://erp.example.com/hooks/shop", max_length = 2048)]
    pub url: String,
    /// The events to deliver, at least one (default: every one, `order.created`).
    #[serde(default)]
    #[schema(min_items = 1)]
    pub events: Option<Vec<WebhookEventType>>,
}

/// An event a webhook can deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum WebhookEventType {
    /// An order of the tenant was placed.
    #[serde(rename = "order.created")]
    OrderCreated,
}

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    /// Its id.
    pub id: u64,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The events delivered.
    pub events: Vec<WebhookEventType>,
    /// When it was made (ISO 8601, UTC).
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A webhook subscription just made, with its signing secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    /// Its id.
    pub id: u64,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The events delivered.
    pub events: Vec<WebhookEventType>,
    /// When it was made (ISO 8601, UTC).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The key every delivery is signed with (`Webhook-Signature`). Shown
    /// in this answer only: keep it now.
    #[schema(example = "whsec_3q2-7wX9…")]
    pub secret: String,
}

/// The tenant's webhook subscriptions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookPage {
    /// Every subscription, oldest first.
    pub items: Vec<Webhook>,
}

/// What a delivery's body says (`POST` to the subscription's URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookEvent {
    /// The event's id, the same on every retry of its delivery: a receiver
    /// that saw it already can ignore it.
    #[schema(example = "evt_42")]
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: WebhookEventType,
    /// When it happened (ISO 8601, UTC).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// What it is about.
    pub data: OrderCreatedData,
}

/// The data of `order.created`. The whole order is `GET /v1/orders/{order_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderCreatedData {
    /// The order placed.
    pub order_id: u64,
    /// Its status when placed.
    pub status: PartnerOrderStatus,
    /// What it costs in all.
    pub total: Money,
}

/// The document's `webhooks` section: what a delivery of each event is,
/// and how a receiver checks that it came from the platform.
pub(crate) fn deliveries() -> Value {
    serde_json::json!({
        ORDER_CREATED: {
            "post": {
                "operationId": "orderCreated",
                "summary": "An order of the tenant was placed",
                "description": "POSTed to every subscription of the tenant to `order.created`. Check `Webhook-Signature` before trusting the body: it is `t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" keyed by the subscription's secret>`; compare in constant time and refuse a `t` more than five minutes old (docs/webhooks.md has examples in Python and JavaScript). Answer 2xx within 5 seconds; anything else is retried with exponential backoff (6 attempts in all, by default), with the same `Webhook-Id`.",
                "tags": ["webhooks"],
                "parameters": [
                    {
                        "name": "Webhook-Signature",
                        "in": "header",
                        "required": true,
                        "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256>` of `<t>.<raw body>` with the subscription's secret",
                        "schema": { "type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$" },
                    },
                    {
                        "name": "Webhook-Id",
                        "in": "header",
                        "required": true,
                        "description": "The event's id, the same on every retry",
                        "schema": { "type": "string" },
                    },
                ],
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/WebhookEvent" } } },
                },
                "responses": {
                    "2XX": { "description": "Received; any other answer, or none within 5 seconds, is retried" },
                },
            },
        },
    })
}

fn event_types(names: &[String]) -> Vec<WebhookEventType> {
    names
        .iter()
        .filter(|name| name.as_str() == ORDER_CREATED)
        .map(|_| WebhookEventType::OrderCreated)
        .collect()
}

impl From<Subscription> for Webhook {
    fn from(subscription: Subscription) -> Self {
        Self {
            id: subscription.id,
            events: event_types(&subscription.events),
            url: subscription.url,
            created_at: timestamp(subscription.created_at),
        }
    }
}

/// Why a target URL is refused, if it is: `allow_http` lets a loopback
/// target take plain `http` (development).
async fn refuse_target(url: &str, allow_http: bool) -> Option<String> {
    if url.len() > MAX_URL_LENGTH {
        return Some(format!("must be at most {MAX_URL_LENGTH} characters"));
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return Some("must be an absolute https URL".to_owned());
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some("must not carry credentials".to_owned());
    }
    let Some(host) = parsed.host() else {
        return Some("must name a host".to_owned());
    };
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addresses: Vec<IpAddr> = match host {
        url::Host::Ipv4(address) => vec![IpAddr::V4(address)],
        url::Host::Ipv6(address) => vec![IpAddr::V6(address)],
        url::Host::Domain(domain) => {
            match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((domain, port)))
                .await
            {
                Ok(Ok(found)) => found.map(|address| address.ip()).collect(),
                _ => return Some(format!("its host {domain} does not resolve")),
            }
        }
    };
    if addresses.is_empty() {
        return Some("its host does not resolve".to_owned());
    }
    let all_loopback = addresses.iter().all(IpAddr::is_loopback);
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http && all_loopback => {}
        "http" => {
            return Some(
                "must be https (plain http is allowed only to loopback, with [partner] allow_http_webhooks)"
                    .to_owned(),
            );
        }
        _ => return Some("must be an https URL".to_owned()),
    }
    if let Some(internal) = addresses
        .iter()
        .find(|address| is_internal(**address) && !(allow_http && address.is_loopback()))
    {
        return Some(format!(
            "must be a public address; {internal} is private, loopback, link-local or reserved"
        ));
    }
    None
}

/// Whether `address` is one a delivery must never reach: private,
/// loopback, link-local, shared (CGNAT), unspecified, multicast,
/// broadcast, documentation or otherwise reserved.
fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(address) => is_internal_v4(address),
        IpAddr::V6(address) => match address.to_ipv4_mapped() {
            Some(mapped) => is_internal_v4(mapped),
            None => is_internal_v6(address),
        },
    }
}

fn is_internal_v4(address: Ipv4Addr) -> bool {
    let [first, second, ..] = address.octets();
    address.is_private()
        || address.is_loopback()
        || address.is_link_local()
        || address.is_unspecified()
        || address.is_multicast()
        || address.is_broadcast()
        || address.is_documentation()
        || first == 0
        || (first == 100 && (64..128).contains(&second))
        || first >= 240
}

fn is_internal_v6(address: Ipv6Addr) -> bool {
    let first = address.segments()[0];
    address.is_loopback()
        || address.is_unspecified()
        || address.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && address.segments()[1] == 0x0db8
}

/// Subscribes the tenant to events. The answer holds the signing secret,
/// which is never shown again.
#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "webhooks",
    operation_id = "createWebhook",
    request_body = NewWebhook,
    responses((
        status = 201,
        description = "The subscription, with its signing secret",
        body = CreatedWebhook,
        headers(("Location" = String, description = "The subscription's URL, `/v1/webhooks/{id}`")),
    )),
    security(("api_key" = ["webhooks:manage"]), ("bearer" = ["webhooks:manage"])),
)]
pub(crate) async fn create_webhook(
    State(state): State<V1State>,
    context: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let body = json_body(&headers, &body)?;
    let new = check_new_webhook(&body, state.allow_http_webhooks).await?;
    let subscription: Subscription = state
        .services
        .client(WEBHOOKS.name)
        .post("/subscriptions", &new, &context)
        .await?;
    let secret = subscription.secret.clone().ok_or_else(|| {
        Error::Internal(
            "the webhooks service answered a new subscription without its secret".into(),
        )
    })?;
    let webhook = Webhook::from(subscription);
    Ok(created(
        format!("/v1/webhooks/{}", webhook.id),
        CreatedWebhook {
            id: webhook.id,
            url: webhook.url,
            events: webhook.events,
            created_at: webhook.created_at,
            secret,
        },
    ))
}

/// The body of a new webhook, or every field that is wrong with it.
async fn check_new_webhook(body: &Value, allow_http: bool) -> Result<NewSubscription, Error> {
    let mut invalid = Vec::new();
    let mut problem = |name: &str, reason: String| {
        invalid.push(InvalidParam {
            name: name.to_owned(),
            reason,
        });
    };
    let Some(object) = body.as_object() else {
        problem("", "must be an object with url".to_owned());
        return Err(Error::invalid_body(invalid));
    };
    for field in object
        .keys()
        .filter(|field| !matches!(field.as_str(), "url" | "events"))
    {
        problem(
            &format!("/{field}"),
            "is not a field of a webhook".to_owned(),
        );
    }
    let url = match object.get("url") {
        None => {
            problem("/url", "is required".to_owned());
            None
        }
        Some(Value::String(url)) => match refuse_target(url, allow_http).await {
            Some(reason) => {
                problem("/url", reason);
                None
            }
            None => Some(url.clone()),
        },
        Some(_) => {
            problem("/url", "must be a string".to_owned());
            None
        }
    };
    let events = match object.get("events") {
        None | Some(Value::Null) => EVENTS.iter().map(|event| (*event).to_owned()).collect(),
        Some(Value::Array(events))
            if !events.is_empty()
                && events
                    .iter()
                    .all(|event| event.as_str().is_some_and(|event| EVENTS.contains(&event))) =>
        {
            let mut events: Vec<String> = events
                .iter()
                .filter_map(|event| event.as_str().map(str::to_owned))
                .collect();
            events.dedup();
            events
        }
        Some(_) => {
            problem(
                "/events",
                format!("must list events from {}", EVENTS.join(", ")),
            );
            Vec::new()
        }
    };
    match url {
        Some(url) if invalid.is_empty() => Ok(NewSubscription { url, events }),
        _ => Err(Error::invalid_body(invalid)),
    }
}

/// The tenant's webhook subscriptions.
#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "webhooks",
    operation_id = "listWebhooks",
    responses((status = 200, description = "Every subscription of the tenant", body = WebhookPage)),
    security(("api_key" = ["webhooks:manage"]), ("bearer" = ["webhooks:manage"])),
)]
pub(crate) async fn list_webhooks(
    State(state): State<V1State>,
    context: RequestContext,
) -> Result<Json<WebhookPage>, Error> {
    let page: Page<Subscription> = state
        .services
        .client(WEBHOOKS.name)
        .get("/subscriptions", &context)
        .await?;
    Ok(Json(WebhookPage {
        items: page.items.into_iter().map(Webhook::from).collect(),
    }))
}

/// Ends a webhook subscription: nothing more is delivered to it.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    tag = "webhooks",
    operation_id = "deleteWebhook",
    params(("id" = u64, Path, description = "Subscription id", minimum = 1)),
    responses((status = 204, description = "The subscription is gone")),
    security(("api_key" = ["webhooks:manage"]), ("bearer" = ["webhooks:manage"])),
)]
pub(crate) async fn delete_webhook(
    State(state): State<V1State>,
    context: RequestContext,
    Path(id): Path<u64>,
) -> Result<StatusCode, Error> {
    state
        .services
        .client(WEBHOOKS.name)
        .delete(&format!("/subscriptions/{id}"), &context)
        .await
        .map_err(fetching("webhook", id))?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_public_https_targets_are_accepted() {
        for public in [
            "https://93.184.215.14/hooks",
            "https://[2606:4700::6810:84e5]/hook",
        ] {
            assert_eq!(refuse_target(public, false).await, None, "{public}");
        }
        for (internal, allow_http) in [
            ("http://93.184.215.14/hooks", false),
            ("https://10.0.0.8/hooks", false),
            ("https://192.168.1.1/hooks", false),
            ("https://172.16.0.1/hooks", false),
            ("https://169.254.169.254/latest/meta-data", false),
            ("https://100.64.0.1/", false),
            ("https://127.0.0.1/hooks", false),
            ("https://[::1]/hooks", false),
            ("https://[fe80::1]/hooks", false),
            ("https://[fd00::1]/hooks", false),
            ("https://[::ffff:10.0.0.1]/hooks", false),
            ("https://0.0.0.0/hooks", false),
            ("https://localhost/hooks", false),
            ("http://127.0.0.1:9000/hooks", false),
            ("http://10.0.0.8/hooks", true),
            ("https://user:pass@93.184.215.14/hooks", false),
            ("ftp://93.184.215.14/hooks", false),
            ("not a url", false),
        ] {
            assert!(
                refuse_target(internal, allow_http).await.is_some(),
                "{internal} is refused"
            );
        }
        assert_eq!(
            refuse_target("http://127.0.0.1:9000/hooks", true).await,
            None
        );
        assert_eq!(
            refuse_target("http://localhost:9000/hooks", true).await,
            None
        );
    }

    #[tokio::test]
    async fn every_wrong_field_of_a_new_webhook_is_named() {
        let error = check_new_webhook(
            &serde_json::json!({"url": "https://10.1.2.3/x", "events": ["order.shipped"], "secret": "mine"}),
            false,
        )
        .await
        .expect_err("invalid");
        let problem = error.problem();
        assert_eq!(
            (problem.status, problem.code.as_str()),
            (422, "INVALID_BODY")
        );
        let named: Vec<&str> = problem
            .errors
            .iter()
            .map(|error| error.name.as_str())
            .collect();
        assert_eq!(named, ["/secret", "/url", "/events"]);
        let good = check_new_webhook(
            &serde_json::json!({"url": "https://93.184.215.14/x"}),
            false,
        )
        .await
        .expect("valid");
        assert_eq!(good.events, [ORDER_CREATED]);
    }
}
