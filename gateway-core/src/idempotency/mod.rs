//! Idempotent requests: an unsafe request retried with the same
//! `Idempotency-Key` is carried out once.
//!
//! [`IdempotencyLayer`] is a route layer, inside authentication: records
//! are keyed by the verified tenant and subject and the key the client
//! chose, so no caller can read or block another's. For each request:
//!
//! - without `Idempotency-Key` it is a 400 (`IDEMPOTENCY_KEY_MISSING`); a key
//!   is 1 to 255 visible ASCII characters (`IDEMPOTENCY_KEY_INVALID`);
//! - the first request with a key claims it, runs, and its answer is kept
//!   for `[idempotency] ttl` (24 h) if it succeeded (2xx); any other answer
//!   (a refused body, a service's refusal, a 5xx) leaves the key
//!   free for a retry (a client that goes away mid-way leaves it free too);
//! - a retry with the same key and the same request (method, path and
//!   query, body: their SHA-256) gets the kept answer again, with
//!   `Idempotent-Replayed: true`, and the handler does not run;
//! - the same key with another request is a 422 (`IDEMPOTENCY_KEY_REUSED`);
//! - a retry while the first is still under way is a 409
//!   (`IDEMPOTENCY_IN_PROGRESS`, `Retry-After: 1`); a claim whose instance
//!   died is given up after `in_flight_timeout`.
//!
//! Records live in Redis when the process has one ([`crate::stores`]), so
//! every instance sees every key; otherwise in process, bounded. When Redis
//! does not answer, the request is refused with a 503
//! (`IDEMPOTENCY_UNAVAILABLE`): carrying it out unguarded could do it twice.

mod store;

use std::{
    future::Future,
    num::NonZeroU64,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};

use crate::{
    Error,
    config::{ConfigError, HumanDuration, Validate},
    error::ProblemDetails,
    identity::VerifiedIdentity,
    stores::SharedStores,
};
use store::{Claim, ClaimToken, IdempotencyStore, Kept};

/// The request header carrying the client's key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on an answer given again from the record.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Longest key accepted.
const MAX_KEY_LENGTH: usize = 255;
/// Default time a record is kept (`24h`).
const DEFAULT_TTL: HumanDuration = HumanDuration::from_secs(24 * 3600);
/// Default time a claim outlives an instance that died holding it (`1m`).
const DEFAULT_IN_FLIGHT_TIMEOUT: HumanDuration = HumanDuration::from_secs(60);
/// Default most records kept in process (100,000).
const DEFAULT_MAX_LOCAL_RECORDS: u64 = 100_000;
/// Answers larger than this are not kept: the next retry runs again.
const MAX_KEPT_BODY_BYTES: usize = 256 * 1024;
/// The headers of an answer a replay repeats.
const KEPT_HEADERS: [HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::ETAG];

/// Idempotent requests (`[idempotency]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// How long an answer is kept for retries (default `24h`).
    pub ttl: HumanDuration,
    /// How long a claim holds while its request runs, at most; past it a
    /// retry runs again (default `1m`; keep it above `server.request_timeout`).
    pub in_flight_timeout: HumanDuration,
    /// Most records kept in process when there is no Redis (default 100,000).
    pub max_local_records: NonZeroU64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            in_flight_timeout: DEFAULT_IN_FLIGHT_TIMEOUT,
            max_local_records: NonZeroU64::new(DEFAULT_MAX_LOCAL_RECORDS).expect("non-zero"),
        }
    }
}

impl Validate for IdempotencyConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.in_flight_timeout.get() > self.ttl.get() {
            return Err(ConfigError::rule(
                "idempotency.in_flight_timeout",
                "must not exceed idempotency.ttl",
            ));
        }
        Ok(())
    }
}

/// Why a request was not carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdempotencyError {
    /// No `Idempotency-Key`.
    #[error("this request needs an Idempotency-Key header, so that a retry is carried out once")]
    Missing,
    /// A key that is not 1 to 255 visible ASCII characters.
    #[error("the Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters")]
    Invalid,
    /// The key was used for another request.
    #[error("this Idempotency-Key was used for another request; use a new key for a new request")]
    Reused,
    /// The first request with the key is still under way.
    #[error("a request with this Idempotency-Key is still under way; retry once it is answered")]
    InProgress,
    /// The shared store did not answer.
    #[error("idempotency records are unavailable: {0}")]
    Unavailable(String),
}

impl ProblemDetails for IdempotencyError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Missing | Self::Invalid => StatusCode::BAD_REQUEST,
            Self::Reused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InProgress => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Missing => "IDEMPOTENCY_KEY_MISSING",
            Self::Invalid => "IDEMPOTENCY_KEY_INVALID",
            Self::Reused => "IDEMPOTENCY_KEY_REUSED",
            Self::InProgress => "IDEMPOTENCY_IN_PROGRESS",
            Self::Unavailable(_) => "IDEMPOTENCY_UNAVAILABLE",
        }
    }

    fn client_detail(&self) -> String {
        match self {
            Self::Unavailable(_) => {
                "idempotency records are unavailable; retry with the same key".to_owned()
            }
            other => other.to_string(),
        }
    }

    fn response_headers(&self, headers: &mut HeaderMap) {
        if matches!(self, Self::InProgress | Self::Unavailable(_)) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
    }
}

/// Makes a route's requests idempotent; see the module docs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IdempotencyLayer {
    store: Arc<IdempotencyStore>,
    /// Prefixes every record key, so two BFFs sharing a Redis never mix.
    bff: &'static str,
}

impl IdempotencyLayer {
    /// Records of `bff` in the Redis of `stores`, else in process, as
    /// `config` says.
    pub fn new(bff: &'static str, config: &IdempotencyConfig, stores: &SharedStores) -> Self {
        Self {
            store: Arc::new(IdempotencyStore::new(config, stores)),
            bff,
        }
    }
}

/// What claiming a key allows.
enum Begun {
    /// Carry the request out under this claim.
    Claimed(ClaimToken),
    /// Give the answer kept for the same request again.
    Replay(Kept),
}

impl IdempotencyLayer {
    /// Claims `key` for a request of `fingerprint`, or says why it may not
    /// run: the key holds another request (`Reused`), the same one still
    /// under way (`InProgress`), or the store did not answer.
    async fn begin(&self, key: &str, fingerprint: &str) -> Result<Begun, IdempotencyError> {
        match self.store.claim(key, fingerprint).await {
            Ok(Claim::Claimed(claim)) => Ok(Begun::Claimed(claim)),
            Ok(Claim::Kept(kept)) if kept.fingerprint == fingerprint => Ok(Begun::Replay(kept)),
            Ok(Claim::Kept(_) | Claim::InFlight { same: false }) => Err(IdempotencyError::Reused),
            Ok(Claim::InFlight { same: true }) => Err(IdempotencyError::InProgress),
            Err(error) => {
                tracing::warn!(%error, "idempotency store unavailable");
                Err(IdempotencyError::Unavailable(error.to_string()))
            }
        }
    }
}

/// What [`IdempotencyLayer::once`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayable<T> {
    /// The operation's answer, carried out now or kept from the first time.
    pub value: T,
    /// Whether it was kept from the first time (the operation did not run).
    pub replayed: bool,
}

impl IdempotencyLayer {
    /// Carries out `operation` once for `caller`'s `key` and `request` (the
    /// bytes that make two requests the same), with the rules of the module
    /// docs, for an operation whose key is not a header (a GraphQL
    /// mutation's `idempotencyKey` argument). Its `Ok` answer is kept and
    /// given again to a retry; an `Err` frees the key, so a retry runs again.
    pub async fn once<T, E, F>(
        &self,
        caller: &VerifiedIdentity,
        key: &str,
        request: &[u8],
        operation: F,
    ) -> Result<Replayable<T>, E>
    where
        T: Serialize + serde::de::DeserializeOwned,
        E: From<IdempotencyError>,
        F: Future<Output = Result<T, E>>,
    {
        let key = caller_key(self.bff, caller, key.as_bytes())?;
        let fingerprint = sha256_hex(&[request]);
        let claim = match self.begin(&key, &fingerprint).await? {
            Begun::Claimed(claim) => claim,
            Begun::Replay(kept) => {
                let value = serde_json::from_slice(&kept.body).map_err(|error| {
                    IdempotencyError::Unavailable(format!("an unreadable answer: {error}"))
                })?;
                return Ok(Replayable {
                    value,
                    replayed: true,
                });
            }
        };
        match operation.await {
            Ok(value) => {
                let kept = Kept {
                    fingerprint,
                    status: StatusCode::OK.as_u16(),
                    headers: Vec::new(),
                    body: serde_json::to_vec(&value).expect("an answer serialises"),
                };
                self.store.complete(claim, &kept).await;
                Ok(Replayable {
                    value,
                    replayed: false,
                })
            }
            Err(error) => {
                self.store.release(claim).await;
                Err(error)
            }
        }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotent<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotent {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`IdempotencyLayer`].
#[derive(Debug, Clone)]
pub struct Idempotent<S> {
    inner: S,
    layer: IdempotencyLayer,
}

impl<S> Service<Request> for Idempotent<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone is ready only once polled; keep the polled one for this call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let key = match record_key(layer.bff, &parts.headers, parts.extensions.get()) {
                Ok(key) => key,
                Err(refused) => return Ok(refused.into_response()),
            };
            // The body limit of the server has bounded it already.
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    return Ok(
                        Error::BadRequest(format!("the request body failed: {error}"))
                            .into_response(),
                    );
                }
            };
            let fingerprint = fingerprint(&parts, &body);
            let claim = match layer.begin(&key, &fingerprint).await {
                Ok(Begun::Claimed(claim)) => claim,
                Ok(Begun::Replay(kept)) => return Ok(replay(kept)),
                Err(refused) => return Ok(Error::from(refused).into_response()),
            };
            let request = Request::from_parts(parts, Body::from(body));
            let response = inner.call(request).await?;
            Ok(keep(&layer.store, claim, &fingerprint, response).await)
        })
    }
}

/// The record key of a request: the BFF, the verified caller and the
/// client's key.
fn record_key(
    bff: &str,
    headers: &HeaderMap,
    caller: Option<&Arc<VerifiedIdentity>>,
) -> Result<String, Error> {
    let mut keys = headers.get_all(IDEMPOTENCY_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.as_bytes(),
        (None, _) => return Err(IdempotencyError::Missing.into()),
        (Some(_), Some(_)) => return Err(IdempotencyError::Invalid.into()),
    };
    let caller = caller.ok_or_else(|| {
        Error::Internal("an idempotent route without a verified caller".to_owned())
    })?;
    Ok(caller_key(bff, caller, key)?)
}

/// The record key of `caller`'s `key`, if `key` is 1 to 255 visible ASCII
/// characters.
fn caller_key(
    bff: &str,
    caller: &VerifiedIdentity,
    key: &[u8],
) -> Result<String, IdempotencyError> {
    if key.is_empty()
        || key.len() > MAX_KEY_LENGTH
        || !key.iter().all(|byte| byte.is_ascii_graphic())
    {
        return Err(IdempotencyError::Invalid);
    }
    let key = std::str::from_utf8(key).expect("visible ASCII is UTF-8");
    // Tenant and subject are visible ASCII without ':' (identity rules), so
    // the parts cannot run into one another.
    Ok(format!(
        "idem:{{{bff}:{}}}:{}:{key}",
        caller.tenant, caller.subject
    ))
}

/// SHA-256 of what makes two requests the same: method, path and query, body.
fn fingerprint(parts: &http::request::Parts, body: &Bytes) -> String {
    let target = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    sha256_hex(&[
        parts.method.as_str().as_bytes(),
        b" ",
        target.as_bytes(),
        b"\n",
        body,
    ])
}

/// The SHA-256 of `parts` one after the other, in hex.
fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part);
    }
    context
        .finish()
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Keeps `response` under `claim` if it succeeded (2xx) and is not too
/// large, else frees the key; the response goes to the client either way.
/// An error is not kept: it may be a problem the server stack renders from
/// the response's extensions, which a record cannot hold, and a client
/// that fixes its request may retry it under the same key.
async fn keep(
    store: &IdempotencyStore,
    claim: ClaimToken,
    fingerprint: &str,
    response: Response,
) -> Response {
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            tracing::warn!(%error, "an idempotent answer's body failed");
            store.release(claim).await;
            return StatusCode::BAD_GATEWAY.into_response();
        }
    };
    if !parts.status.is_success() || body.len() > MAX_KEPT_BODY_BYTES {
        store.release(claim).await;
    } else {
        let kept = Kept {
            fingerprint: fingerprint.to_owned(),
            status: parts.status.as_u16(),
            headers: KEPT_HEADERS
                .iter()
                .filter_map(|name| {
                    let value = parts.headers.get(name)?.to_str().ok()?;
                    Some((name.as_str().to_owned(), value.to_owned()))
                })
                .collect(),
            body: body.to_vec(),
        };
        store.complete(claim, &kept).await;
    }
    Response::from_parts(parts, Body::from(body))
}

/// The kept answer, again.
fn replay(kept: Kept) -> Response {
    let status = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::OK);
    let mut response = (status, kept.body).into_response();
    for (name, value) in kept.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}
