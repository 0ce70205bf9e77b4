//! The webhooks service: subscriptions per tenant, and the signed delivery
//! of events to them, retried with exponential backoff.
//!
//! - `POST /subscriptions` (`{"url", "events"}`) subscribes the caller's
//!   tenant (`X-Auth-Tenant`, required) and answers the subscription with
//!   its `secret`, the only time the secret is shown;
//! - `GET /subscriptions`: the tenant's subscriptions, without secrets;
//! - `DELETE /subscriptions/{id}`: 204, or 404 for another tenant's.
//!
//! When the orders service places an order it publishes `order.created`
//! here (`Webhooks::publish`); every subscription of the order's tenant
//! to it gets a POST of the event ([`Event`]) with `Webhook-Id` (the event's
//! id, the same on every retry) and `Webhook-Signature: t=<unix>,v1=<hex
//! HMAC-SHA256 of "<t>.<body>">`, signed afresh for each attempt. An answer
//! other than 2xx, or none within `timeout`, is retried after
//! `initial_backoff`, doubling each time, up to `max_attempts` in all.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, Request, StatusCode, header},
    routing::{delete, get},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use gateway_core::{
    config::{ConfigError, HumanDuration, Validate},
    tls::{ClientTls, WebConnector},
};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use ring::hmac;
use serde::{Deserialize, Serialize};
use shared_schema::{
    accounts::Order,
    webhooks::{
        Amount, EVENT_ID_HEADER, EVENTS, Event, NewSubscription, ORDER_CREATED, OrderCreated,
        SIGNATURE_HEADER, Subscription,
    },
};

use crate::Rejection;

/// How deliveries are made (`[webhooks]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Attempts of one delivery in all, the first included (default 6).
    pub max_attempts: u32,
    /// The wait before the first retry, doubled before each next one
    /// (default `1s`: retries after 1, 2, 4, 8 and 16 seconds).
    pub initial_backoff: HumanDuration,
    /// How long an attempt waits for the receiver's answer (default `5s`).
    pub timeout: HumanDuration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: HumanDuration::from_secs(1),
            timeout: HumanDuration::from_secs(5),
        }
    }
}

impl Validate for WebhooksConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=20).contains(&self.max_attempts) {
            return Err(ConfigError::rule(
                "webhooks.max_attempts",
                "must be 1 to 20",
            ));
        }
        Ok(())
    }
}

/// A subscription with its tenant and its secret.
#[derive(Debug, Clone)]
struct Subscriber {
    tenant: String,
    subscription: Subscription,
    secret: String,
}

/// The subscriptions and the deliverer; shared by the webhooks and orders services.
#[derive(Debug)]
pub struct Webhooks {
    config: WebhooksConfig,
    subscribers: RwLock<BTreeMap<u64, Subscriber>>,
    next_subscription: AtomicU64,
    next_event: AtomicU64,
    client: Client<WebConnector, Full<Bytes>>,
}

impl Webhooks {
    /// No subscriptions yet; deliveries as `config` says.
    pub(crate) fn new(config: WebhooksConfig) -> Self {
        let tls = ClientTls::load(None).expect("the public roots load");
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout.get()));
        Self {
            client: Client::builder(TokioExecutor::new()).build(tls.connector(connector)),
            config,
            subscribers: RwLock::new(BTreeMap::new()),
            next_subscription: AtomicU64::new(1),
            next_event: AtomicU64::new(1),
        }
    }

    /// Delivers `order.created` for `order` to every subscriber of its
    /// tenant, each in its own task.
    pub(crate) fn publish(self: &Arc<Self>, order: &Order) {
        let event = Event {
            id: format!("evt_{}", self.next_event.fetch_add(1, Ordering::Relaxed)),
            event_type: ORDER_CREATED.to_owned(),
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            data: OrderCreated {
                order_id: order.id,
                status: order.status,
                total: Amount {
                    amount_minor: order.total_minor,
                    currency: order.currency.clone(),
                },
            },
        };
        let body = Bytes::from(serde_json::to_vec(&event).expect("an event serialises"));
        let subscribers: Vec<Subscriber> = self
            .subscribers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|subscriber| {
                subscriber.tenant == order.tenant
                    && subscriber
                        .subscription
                        .events
                        .iter()
                        .any(|wanted| wanted == ORDER_CREATED)
            })
            .cloned()
            .collect();
        for subscriber in subscribers {
            tokio::spawn(
                self.clone()
                    .deliver(subscriber, event.id.clone(), body.clone()),
            );
        }
    }

    /// Delivers `body` to `subscriber`, retrying with backoff.
    async fn deliver(self: Arc<Self>, subscriber: Subscriber, event_id: String, body: Bytes) {
        let url = &subscriber.subscription.url;
        let mut backoff = self.config.initial_backoff.get();
        for attempt in 1..=self.config.max_attempts {
            let outcome = self.attempt(&subscriber, &event_id, &body).await;
            match outcome {
                Ok(status) if status.is_success() => {
                    tracing::info!(url, event = event_id, attempt, "webhook delivered");
                    return;
                }
                Ok(status) => {
                    tracing::info!(url, event = event_id, attempt, %status, "webhook refused");
                }
                Err(reason) => {
                    tracing::info!(
                        url,
                        event = event_id,
                        attempt,
                        reason,
                        "webhook not delivered"
                    );
                }
            }
            if attempt < self.config.max_attempts {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        tracing::warn!(
            url,
            event = event_id,
            attempts = self.config.max_attempts,
            "webhook given up"
        );
    }

    async fn attempt(
        &self,
        subscriber: &Subscriber,
        event_id: &str,
        body: &Bytes,
    ) -> Result<StatusCode, String> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let request = Request::post(&subscriber.subscription.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "demo-services-webhooks/1")
            .header(EVENT_ID_HEADER, event_id)
            .header(
                SIGNATURE_HEADER,
                signature(&subscriber.secret, timestamp, body),
            )
            .body(Full::new(body.clone()))
            .map_err(|error| error.to_string())?;
        let response =
            tokio::time::timeout(self.config.timeout.get(), self.client.request(request))
                .await
                .map_err(|_| format!("no answer within {:?}", self.config.timeout.get()))?
                .map_err(|error| error.to_string())?;
        Ok(response.status())
    }
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed by secret>`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let hex: String = tag
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("t={timestamp},v1={hex}")
}

type Shared = State<Arc<Webhooks>>;

/// The caller's tenant, which every endpoint needs.
fn tenant(headers: &HeaderMap) -> Result<String, Rejection> {
    headers
        .get("x-auth-tenant")
        .and_then(|value| value.to_str().ok())
        .filter(|tenant| !tenant.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "TENANT_REQUIRED",
                "subscriptions belong to a tenant: X-Auth-Tenant is required",
            )
        })
}

/// `POST /subscriptions`, `GET /subscriptions`, `DELETE /subscriptions/{id}`.
pub(crate) fn router(webhooks: Arc<Webhooks>) -> Router {
    async fn create(
        State(webhooks): Shared,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(StatusCode, Json<Subscription>), Rejection> {
        let tenant = tenant(&headers)?;
        let new: NewSubscription = serde_json::from_slice(&body).map_err(|error| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "INVALID_SUBSCRIPTION",
                error.to_string(),
            )
        })?;
        let absolute = new.url.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
        });
        if !absolute
            || new.events.is_empty()
            || new
                .events
                .iter()
                .any(|event| !EVENTS.contains(&event.as_str()))
        {
            return Err(Rejection::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_SUBSCRIPTION",
                format!("an http(s) URL and events from {EVENTS:?}"),
            ));
        }
        let secret = format!(
            "whsec_{}",
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        );
        let subscription = Subscription {
            id: webhooks.next_subscription.fetch_add(1, Ordering::Relaxed),
            url: new.url,
            events: new.events,
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            secret: None,
        };
        webhooks
            .subscribers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                subscription.id,
                Subscriber {
                    tenant,
                    subscription: subscription.clone(),
                    secret: secret.clone(),
                },
            );
        Ok((
            StatusCode::CREATED,
            Json(Subscription {
                secret: Some(secret),
                ..subscription
            }),
        ))
    }
    async fn list(
        State(webhooks): Shared,
        headers: HeaderMap,
    ) -> Result<Json<shared_schema::Page<Subscription>>, Rejection> {
        let tenant = tenant(&headers)?;
        let items = webhooks
            .subscribers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|subscriber| subscriber.tenant == tenant)
            .map(|subscriber| subscriber.subscription.clone())
            .collect();
        Ok(Json(shared_schema::Page {
            items,
            next_cursor: None,
        }))
    }
    async fn remove(
        State(webhooks): Shared,
        headers: HeaderMap,
        Path(id): Path<u64>,
    ) -> Result<StatusCode, Rejection> {
        let tenant = tenant(&headers)?;
        let mut subscribers = webhooks
            .subscribers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match subscribers.get(&id) {
            Some(subscriber) if subscriber.tenant == tenant => {
                subscribers.remove(&id);
                Ok(StatusCode::NO_CONTENT)
            }
            _ => Err(Rejection::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("subscription {id} not found"),
            )),
        }
    }
    Router::new()
        .route("/subscriptions", get(list).post(create))
        .route("/subscriptions/{id}", delete(remove))
        .with_state(webhooks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_hmac_of_the_timestamp_and_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }
}
