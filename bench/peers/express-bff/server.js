// express-bff: bff-web's product page, `GET /api/product-page/{id}` (bff-web/src/product_page.rs),
// as a Node team would write it with Express 5. One process, no cluster: pinned to one CPU like bff-web.
// - Auth: the Bearer JWT verified on every request with jose against the issuer's JWKS (createRemoteJWKSet:
//   loaded at start, cached 5 min, refetched on an unknown kid at most every 30 s, as bff-web does):
//   signature, exp/nbf with 30 s leeway, iss, aud `bff-web`, only ES256/RS256, `sub` and `tid` required,
//   scope `products:read`. Failures are problem+json with bff-web's codes.
// - The four legs in parallel on one undici Pool per service: keep-alive, up to 64 connections (bff-web's
//   pool_max_idle), 500 ms connect and 2 s header/body timeouts (bff-web's defaults), with bff-web's
//   downstream headers: accept, x-request-id, X-Auth-Subject/-Tenant/-Scopes, and the caller's
//   traceparent/tracestate as sent (no tracer here, so no child span id).
// - The product is required (404 when missing, else 502/504); price, availability and reviews are
//   optional: null, named in `missing` and in `BFF-Partial`, as in bff-web.
// - One JSON access-log line per request, as bff-web writes one, by pino writing asynchronously (bff-web
//   has a background log writer). No ETag (bff-web sends none; Express would hash every body), no X-Powered-By.
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import express from 'express';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import pino from 'pino';
import { Pool } from 'undici';

const env = process.env;
const PORT = Number(env.PORT ?? 18094);
const VERIFY = {
  issuer: env.ISSUER ?? 'https://auth.demo.bff', audience: env.AUDIENCE ?? 'bff-web',
  algorithms: (env.ALGORITHMS ?? 'ES256,RS256').split(','), clockTolerance: 30, requiredClaims: ['exp', 'sub', 'tid'],
};
const REVIEWS_SHOWN = Number(env.PRODUCT_PAGE_REVIEWS ?? 5); // bff-web's [web] product_page_reviews
const jwks = createRemoteJWKSet(new URL(env.JWKS_URL ?? 'http://127.0.0.1:17000/.well-known/jwks.json'),
  { cacheMaxAge: 300_000, cooldownDuration: 30_000 });
const pool = (url) => new Pool(url, {
  connections: Number(env.POOL_CONNECTIONS ?? 64), keepAliveTimeout: 90_000,
  connect: { timeout: 500 }, headersTimeout: 2_000, bodyTimeout: 2_000,
});
const products = pool(env.PRODUCTS_URL ?? 'http://127.0.0.1:17001');
const inventory = pool(env.INVENTORY_URL ?? 'http://127.0.0.1:17002');
const pricing = pool(env.PRICING_URL ?? 'http://127.0.0.1:17003');
const reviews = pool(env.REVIEWS_URL ?? 'http://127.0.0.1:17004');
const log = pino({ base: { service: 'express-bff' } }, pino.destination({ dest: 1, sync: false }));

const TIMEOUTS = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const failed = (cause) => Object.assign(new Error(cause), { cause }); // cause as in bff-web's BFF-Partial

// GETs one JSON document from a service; a failure names its cause.
async function getJson(client, path, headers) {
  const answer = await client.request({ path, method: 'GET', headers }).catch((error) => {
    throw failed(TIMEOUTS.has(error.code) ? 'timeout' : 'unavailable');
  });
  if (answer.statusCode < 200 || answer.statusCode > 299) {
    await answer.body.dump(); // read it out, so that the connection goes back to the pool
    throw failed(answer.statusCode === 404 ? 'not_found' : 'bad_status');
  }
  return answer.body.json().catch((error) => { throw failed(TIMEOUTS.has(error.code) ? 'timeout' : 'invalid'); });
}

function problem(res, status, code, detail, headers = {}) {
  res.status(status).set(headers).type('application/problem+json').send(JSON.stringify({
    type: `https://errors.bff.dev/${code.toLowerCase().replaceAll('_', '-')}`, title: STATUS_CODES[status], status, detail, code,
  }));
}

const PRODUCT_FAILURES = {
  timeout: [504, 'DOWNSTREAM_TIMEOUT', 'did not answer within 2s'], unavailable: [502, 'DOWNSTREAM_UNAVAILABLE', 'is unavailable'],
};
const AUTH_CODES = {
  ERR_JWT_EXPIRED: 'AUTH_TOKEN_EXPIRED', ERR_JWS_SIGNATURE_VERIFICATION_FAILED: 'AUTH_BAD_SIGNATURE',
  ERR_JWKS_NO_MATCHING_KEY: 'AUTH_UNKNOWN_KEY', ERR_JOSE_ALG_NOT_ALLOWED: 'AUTH_ALGORITHM_REJECTED',
  ERR_JWT_CLAIM_VALIDATION_FAILED: 'AUTH_INVALID_CLAIMS',
};

async function authenticate(req, res, next) {
  const bearer = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!bearer) return problem(res, 401, 'AUTH_MISSING', 'no credentials', { 'www-authenticate': 'Bearer' });
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(bearer[1], jwks, VERIFY));
  } catch (error) {
    if (error instanceof TypeError || ['ERR_JWKS_TIMEOUT', 'ERR_JOSE_GENERIC'].includes(error.code)) {
      return problem(res, 503, 'AUTH_KEYS_UNAVAILABLE', 'the signing keys are unavailable; retry later');
    }
    const code = { iss: 'AUTH_WRONG_ISSUER', aud: 'AUTH_WRONG_AUDIENCE' }[error.claim] ?? AUTH_CODES[error.code];
    return problem(res, 401, code ?? 'AUTH_TOKEN_MALFORMED', error.message, { 'www-authenticate': 'Bearer error="invalid_token"' });
  }
  const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [];
  if (!scopes.includes('products:read')) {
    return problem(res, 403, 'AUTH_INSUFFICIENT_SCOPE', 'missing scope products:read',
      { 'www-authenticate': 'Bearer error="insufficient_scope", scope="products:read"' });
  }
  res.locals.identity = { subject: claims.sub, tenant: claims.tid };
  res.locals.headers = { // built once per request, shared by its four calls
    accept: 'application/json', 'x-request-id': res.locals.requestId,
    'x-auth-subject': claims.sub, 'x-auth-tenant': claims.tid, 'x-auth-scopes': scopes.join(' '),
    ...(req.headers.traceparent && { traceparent: req.headers.traceparent }),
    ...(req.headers.tracestate && { tracestate: req.headers.tracestate }),
  };
  next();
}

const app = express();
app.disable('x-powered-by');
app.set('etag', false);

app.use((req, res, next) => { // the access log: one line per request, with what bff-web's line carries
  const started = performance.now();
  const requestId = res.locals.requestId = req.headers['x-request-id'] ?? randomUUID();
  res.setHeader('x-request-id', requestId);
  res.on('finish', () => log.info({
    method: req.method, route: req.route ? '/api/product-page/{id}' : 'unmatched', status: res.statusCode,
    latency_ms: performance.now() - started, subject: res.locals.identity?.subject, tenant: res.locals.identity?.tenant,
    request_id: requestId,
  }, 'request served'));
  next();
});

app.get('/api/product-page/:id', authenticate, async (req, res) => {
  const id = Number(req.params.id);
  if (!/^\d+$/.test(req.params.id) || !Number.isSafeInteger(id)) {
    return problem(res, 400, 'BAD_REQUEST', `bad request: ${JSON.stringify(req.params.id)} is not a product id`);
  }
  const h = res.locals.headers;
  const [product, price, stock, digest] = await Promise.allSettled([
    getJson(products, `/products/${id}`, h),
    getJson(pricing, `/prices/${id}`, h),
    getJson(inventory, `/inventory/${id}`, h),
    getJson(reviews, `/reviews?product=${id}&limit=${REVIEWS_SHOWN}`, h),
  ]);
  if (product.status === 'rejected') { // the page cannot do without it
    const { cause } = product.reason;
    if (cause === 'not_found') return problem(res, 404, 'NOT_FOUND', `product ${id} not found`);
    const [status, code, what] = PRODUCT_FAILURES[cause] ?? [502, 'DOWNSTREAM_BAD_RESPONSE', 'gave an invalid answer'];
    return problem(res, status, code, `the products service ${what}`);
  }
  const missing = {}; // optional parts that failed, with their cause
  const part = (name, leg, view) => (leg.status === 'fulfilled' ? view(leg.value) : ((missing[name] = leg.reason.cause ?? 'invalid'), null));
  const p = product.value;
  const page = {
    product: { id: p.id, sku: p.sku, name: p.name, description: p.description, brand: p.brand, category: p.category, imageUrl: p.image_url },
    price: part('price', price, (x) => ({
      currency: x.currency, amountMinor: x.amount_minor, listAmountMinor: x.list_amount_minor,
      discountPercent: x.list_amount_minor > 0
        ? Math.min(100, Math.max(0, 100 - Math.trunc((x.amount_minor * 100) / x.list_amount_minor))) : 0,
      formatted: `${Math.trunc(x.amount_minor / 100)}.${String(x.amount_minor % 100).padStart(2, '0')} ${x.currency}`,
    })),
    availability: part('availability', stock, (x) => ({ inStock: x.available > 0, available: x.available, warehouse: x.warehouse })),
    reviews: part('reviews', digest, (x) => ({
      averageRating: Math.round(x.average_rating * 10) / 10, total: x.total,
      top: x.items.map((r) => ({ rating: r.rating, title: r.title, body: r.body, createdAt: r.created_at })),
    })),
    missing,
  };
  const degraded = Object.entries(missing);
  if (degraded.length) res.set('bff-partial', degraded.map(([name, cause]) => `${name}=${cause}`).join(', '));
  res.json(page);
});

app.use((req, res) => problem(res, 404, 'ROUTE_NOT_FOUND', `no route for ${req.method} ${req.path}`));
app.use((error, req, res, _next) => { log.error({ err: error }, 'request failed'); problem(res, 500, 'INTERNAL', 'internal error'); });

await jwks.reload(); // the keys before the first request, as bff-web's readiness waits for them
app.listen(PORT, (error) => {
  if (error) throw error;
  log.info({ port: PORT }, 'listening');
});
