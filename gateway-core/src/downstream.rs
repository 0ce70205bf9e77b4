//! One pooled HTTP client per downstream service.
//!
//! A [`DownstreamClient`] is built once at start from its
//! [`DownstreamConfig`] and shared by every request: connections are kept
//! alive and reused, never opened per request. Each call forwards the trace
//! (`traceparent` with a child span id, `tracestate`, `x-request-id`), is
//! bounded by the service's timeout (which covers the body too) and by a
//! maximum response size, is measured in the `downstream_request_duration_seconds`
//! histogram, and fails with a [`DownstreamError`] that [`crate::Error`] maps
//! to 502 or 504.
//!
//! # Example
//!
//! ```no_run
//! use gateway_core::{RequestContext, downstream::{DownstreamClient, DownstreamConfig, ServiceName}};
//! use gateway_core::observability::Telemetry;
//! use shared_schema::catalog::Product;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let telemetry = Telemetry::new("bff-web");
//! let products = DownstreamClient::new(ServiceName::Products, &DownstreamConfig::local(7001), &telemetry)?;
//! let product: Product = products.get("/products/42", &RequestContext::detached()).await?;
//! # Ok(()) }
//! ```

use std::{
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant},
};

use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use shared_schema::{
    accounts::{Order, User},
    catalog::{Price, Product, StockLevel},
};

use crate::{
    config::{HumanDuration, ServiceUrl},
    context::RequestContext,
    observability::{DownstreamMetrics, REQUEST_ID, TRACEPARENT, TRACESTATE, Telemetry},
};

/// Header carrying the verified subject to services.
pub const AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
/// Header carrying the verified tenant to services.
pub const AUTH_TENANT: HeaderName = HeaderName::from_static("x-auth-tenant");
/// Header carrying the granted scopes (space separated) to services.
pub const AUTH_SCOPES: HeaderName = HeaderName::from_static("x-auth-scopes");

/// The downstream services of the platform (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceName {
    /// The product catalog.
    Products,
    /// Stock levels.
    Inventory,
    /// Prices.
    Pricing,
    /// Customer reviews.
    Reviews,
    /// User accounts.
    Users,
    /// Orders.
    Orders,
}

impl ServiceName {
    /// The name used in config, metrics and errors.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Products => "products",
            Self::Inventory => "inventory",
            Self::Pricing => "pricing",
            Self::Reviews => "reviews",
            Self::Users => "users",
            Self::Orders => "orders",
        }
    }

    /// The port demo-services serves it on by default.
    pub const fn default_port(self) -> u16 {
        match self {
            Self::Products => 7001,
            Self::Inventory => 7002,
            Self::Pricing => 7003,
            Self::Reviews => 7004,
            Self::Users => 7005,
            Self::Orders => 7006,
        }
    }
}

/// A resource a downstream service serves by numeric id: which service owns
/// it and where. The contracts' paths live here once, so every BFF asks for
/// a product the same way.
pub trait Resource: DeserializeOwned {
    /// The service that owns it.
    const SERVICE: ServiceName;
    /// `GET` path of the resource `id`.
    fn path(id: u64) -> String;
}

impl Resource for Product {
    const SERVICE: ServiceName = ServiceName::Products;
    fn path(id: u64) -> String {
        format!("/products/{id}")
    }
}

impl Resource for Price {
    const SERVICE: ServiceName = ServiceName::Pricing;
    fn path(id: u64) -> String {
        format!("/prices/{id}")
    }
}

impl Resource for StockLevel {
    const SERVICE: ServiceName = ServiceName::Inventory;
    fn path(id: u64) -> String {
        format!("/inventory/{id}")
    }
}

impl Resource for User {
    const SERVICE: ServiceName = ServiceName::Users;
    fn path(id: u64) -> String {
        format!("/users/{id}")
    }
}

impl Resource for Order {
    const SERVICE: ServiceName = ServiceName::Orders;
    fn path(id: u64) -> String {
        format!("/orders/{id}")
    }
}

/// Settings of one downstream service (`[downstream.<name>]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamConfig {
    /// Base URL, for example `http://products:7001`.
    pub url: ServiceUrl,
    /// Whole-call timeout, connect to last body byte (default `2s`).
    #[serde(default = "DownstreamConfig::default_timeout")]
    pub timeout: HumanDuration,
    /// Timeout to open a connection (default `500ms`).
    #[serde(default = "DownstreamConfig::default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// How long an idle pooled connection is kept (default `90s`).
    #[serde(default = "DownstreamConfig::default_pool_idle_timeout")]
    pub pool_idle_timeout: HumanDuration,
    /// Most idle connections kept open to the service (default 64).
    #[serde(default = "DownstreamConfig::default_pool_max_idle")]
    pub pool_max_idle: usize,
    /// Largest response body accepted, in bytes (default 4 MiB).
    #[serde(default = "DownstreamConfig::default_max_response_bytes")]
    pub max_response_bytes: NonZeroUsize,
}

impl DownstreamConfig {
    const fn default_timeout() -> HumanDuration {
        HumanDuration::from_secs(2)
    }
    const fn default_connect_timeout() -> HumanDuration {
        HumanDuration::from_millis(500)
    }
    const fn default_pool_idle_timeout() -> HumanDuration {
        HumanDuration::from_secs(90)
    }
    const fn default_pool_max_idle() -> usize {
        64
    }
    const fn default_max_response_bytes() -> NonZeroUsize {
        NonZeroUsize::new(4 * 1024 * 1024).expect("non-zero")
    }

    /// A service on `127.0.0.1:{port}` with default settings: the built-in
    /// defaults point at `demo-services`.
    pub fn local(port: u16) -> Self {
        Self::at(ServiceUrl::parse(&format!("http://127.0.0.1:{port}")).expect("a valid local URL"))
    }

    /// A service at `url` with default settings.
    pub fn at(url: ServiceUrl) -> Self {
        Self {
            url,
            timeout: Self::default_timeout(),
            connect_timeout: Self::default_connect_timeout(),
            pool_idle_timeout: Self::default_pool_idle_timeout(),
            pool_max_idle: Self::default_pool_max_idle(),
            max_response_bytes: Self::default_max_response_bytes(),
        }
    }
}

/// A downstream call that failed.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// No complete answer within the timeout.
    #[error("{service}: no answer within {timeout:?}")]
    Timeout {
        /// The service called.
        service: &'static str,
        /// Its configured timeout.
        timeout: Duration,
    },
    /// The service could not be reached or broke the connection.
    #[error("{service}: unavailable: {source}")]
    Unavailable {
        /// The service called.
        service: &'static str,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The service answered 404.
    #[error("{service}: not found")]
    NotFound {
        /// The service called.
        service: &'static str,
    },
    /// The service answered with an unexpected status.
    #[error("{service}: answered {status}")]
    Status {
        /// The service called.
        service: &'static str,
        /// What it answered.
        status: StatusCode,
    },
    /// The answer is not the expected JSON.
    #[error("{service}: invalid body: {source}")]
    InvalidBody {
        /// The service called.
        service: &'static str,
        /// Why it did not parse.
        source: serde_json::Error,
    },
    /// The answer is larger than the configured maximum.
    #[error("{service}: body larger than {limit} bytes")]
    BodyTooLarge {
        /// The service called.
        service: &'static str,
        /// The configured maximum.
        limit: usize,
    },
}

/// A client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for {service}: {source}")]
pub struct ClientBuildError {
    service: &'static str,
    source: reqwest::Error,
}

/// The client of one downstream service; cheap to clone.
#[derive(Debug, Clone)]
pub struct DownstreamClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: &'static str,
    /// Base URL without its trailing slash; paths are appended to it.
    base: String,
    client: reqwest::Client,
    timeout: Duration,
    max_response_bytes: usize,
    metrics: DownstreamMetrics,
}

impl DownstreamClient {
    /// Builds the pooled client of `service`.
    pub fn new(
        service: ServiceName,
        config: &DownstreamConfig,
        telemetry: &Telemetry,
    ) -> Result<Self, ClientBuildError> {
        let service = service.as_str();
        let client = reqwest::Client::builder()
            .timeout(config.timeout.get())
            .connect_timeout(config.connect_timeout.get())
            .pool_idle_timeout(config.pool_idle_timeout.get())
            .pool_max_idle_per_host(config.pool_max_idle)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| ClientBuildError { service, source })?;
        Ok(Self {
            inner: Arc::new(Inner {
                service,
                base: config.url.as_str().trim_end_matches('/').to_owned(),
                client,
                timeout: config.timeout.get(),
                max_response_bytes: config.max_response_bytes.get(),
                metrics: telemetry.downstream().clone(),
            }),
        })
    }

    /// The service's name, as used in metrics and errors.
    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// `GET {base}{path_and_query}`, decoding a JSON answer.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        context: &RequestContext,
    ) -> Result<T, DownstreamError> {
        let request = self.inner.client.get(self.url(path_and_query));
        self.send(request, context).await
    }

    /// `POST {base}{path}` with a JSON body, decoding a JSON answer.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        context: &RequestContext,
    ) -> Result<T, DownstreamError> {
        let body = serde_json::to_vec(body).map_err(|source| DownstreamError::InvalidBody {
            service: self.inner.service,
            source,
        })?;
        let request = self
            .inner
            .client
            .post(self.url(path))
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .body(body);
        self.send(request, context).await
    }

    fn url(&self, path_and_query: &str) -> String {
        debug_assert!(
            path_and_query.starts_with('/'),
            "downstream paths are absolute"
        );
        let mut url = String::with_capacity(self.inner.base.len() + path_and_query.len());
        url.push_str(&self.inner.base);
        url.push_str(path_and_query);
        url
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        context: &RequestContext,
    ) -> Result<T, DownstreamError> {
        let started = Instant::now();
        let result = self.exchange(with_context(request, context)).await;
        let outcome = match &result {
            Ok(_) => std::borrow::Cow::Borrowed("200"),
            Err(DownstreamError::Timeout { .. }) => "timeout".into(),
            Err(DownstreamError::NotFound { .. }) => "404".into(),
            Err(DownstreamError::Status { status, .. }) => status.as_u16().to_string().into(),
            Err(DownstreamError::Unavailable { .. }) => "error".into(),
            Err(DownstreamError::InvalidBody { .. } | DownstreamError::BodyTooLarge { .. }) => {
                "invalid".into()
            }
        };
        self.inner
            .metrics
            .observe(self.inner.service, outcome, started.elapsed());
        result
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, DownstreamError> {
        let service = self.inner.service;
        let transport = |source: reqwest::Error| {
            if source.is_timeout() {
                DownstreamError::Timeout {
                    service,
                    timeout: self.inner.timeout,
                }
            } else {
                DownstreamError::Unavailable { service, source }
            }
        };
        let mut response = request.send().await.map_err(transport)?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::NOT_FOUND => return Err(DownstreamError::NotFound { service }),
            status => return Err(DownstreamError::Status { service, status }),
        }
        let limit = self.inner.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(DownstreamError::BodyTooLarge { service, limit });
        }
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                return Err(DownstreamError::BodyTooLarge { service, limit });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body)
            .map_err(|source| DownstreamError::InvalidBody { service, source })
    }
}

/// Adds the trace headers and the identity headers the gateway sets itself.
fn with_context(
    mut request: reqwest::RequestBuilder,
    context: &RequestContext,
) -> reqwest::RequestBuilder {
    request = request
        .header(header::ACCEPT, HeaderValue::from_static("application/json"))
        .header(TRACEPARENT, context.trace.child_traceparent())
        .header(REQUEST_ID, context.request_id.clone());
    if let Some(state) = context.trace.tracestate() {
        request = request.header(TRACESTATE, state.clone());
    }
    if let Some(identity) = &context.identity {
        // Identity values were checked when the token was verified; a value
        // that is still not a valid header is dropped rather than sent mangled.
        if let Ok(subject) = HeaderValue::try_from(identity.subject.as_str()) {
            request = request.header(AUTH_SUBJECT, subject);
        }
        if let Ok(tenant) = HeaderValue::try_from(identity.tenant.as_str()) {
            request = request.header(AUTH_TENANT, tenant);
        }
        if let Ok(scopes) = HeaderValue::try_from(identity.scopes.join(" ")) {
            request = request.header(AUTH_SCOPES, scopes);
        }
    }
    request
}
