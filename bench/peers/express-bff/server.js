// express-bff: bff-web's three read pages (and bff-partner's product feed, `GET /v1/products`, below) as a
// Node team would write them with Express 5, one process,
// no cluster: pinned to one CPU like bff-web. Each page has bff-web's JSON, field for field and in the same
// order, and makes the same downstream calls with the same paths and query strings:
// - `GET /api/product-page/{id}` (bff-web/src/product_page.rs), scope `products:read`: in parallel the
//   product (`/products/{id}`, required), its reviews with the rating histogram
//   (`/reviews?product={id}&limit=5`, optional) and its related products (`/products/{id}/related?limit=8`,
//   optional; 0 with RELATED_PRODUCTS=0 calls nothing), the last followed by the prices and stock of the
//   product and every related product in one batch call per service (`/prices?ids=42,…`,
//   `/inventory?ids=42,…`). Two dependent rounds.
// - `GET /api/categories/{slug}/products?sort=&limit=&cursor=` (bff-web/src/listing.rs), scope
//   `products:read`: the page of products (`/products?category=&sort=&limit=[&cursor=]`, required: an
//   unknown category is a 404) and the category's facets (`/categories/{slug}/facets`, optional) in
//   parallel, then one batch call per service for the page's prices and stock. Two rounds. `sort`, `limit`
//   (1 to 100, default 24) and `cursor` are checked as bff-web checks them: a bad one is a 400
//   INVALID_PARAMETER naming it in `errors`. The service's cursor reaches the client wrapped as
//   bff-web's cursor.rs wraps it: base64url(cursor) "." base64url(HMAC-SHA256(key, "{slug} {sort}\n" +
//   cursor)), with node:crypto; a cursor altered or from another listing is a 400 naming `cursor`. The key
//   is CURSOR_SECRET, else 32 random bytes per process (bff-web's `[web] cursor_secret`, same default).
// - `GET /api/me/dashboard` (bff-web/src/dashboard.rs), scopes `profile:read` and `orders:read`: the user
//   is the token's subject `user-{id}` (else 403 USER_REQUIRED). The profile (`/users/{id}`, required), the
//   newest orders (`/orders?user=&limit=5`, optional) and the recommendations
//   (`/recommendations?user=&limit=6`, optional) in parallel, then the products of every order line and
//   recommendation in one batch call (`/products?ids=…`, sorted and without repeats, optional `products`)
//   and the recommendations' prices in another (`/prices?ids=…`, optional `price`). Two rounds.
// - Batching: lists of products get their prices, stock and cards from the services' batch endpoints, one
//   call per service per page, never one per item; no call for an empty list. Prices are shown as the
//   pricing service gives them (its `discount_percent`), amounts formatted `12.99 EUR`, as bff-web's views.rs.
// - Optional parts that fail are `null` (or leave their products without a price or availability), named
//   in `missing` (keys sorted, as bff-web's BTreeMap) and in `BFF-Partial` with bff-web's causes
//   (`timeout`, `unavailable`, `bad_status`, `not_found`, `invalid`). A required part that fails answers at
//   once (Promise.all) with bff-web's problem: 404 NOT_FOUND `product 42 not found` / `category x not found`
//   / `user 7 not found`, else 502/504 DOWNSTREAM_* naming the service. Pages carry bff-web's
//   Cache-Control (`private, max-age=30, stale-while-revalidate=60` on the catalog pages, `private,
//   no-cache` on the dashboard).
// - Auth: the Bearer JWT verified on every request with jose against the issuer's JWKS (createRemoteJWKSet:
//   loaded at start, cached 5 min, refetched on an unknown kid at most every 30 s, as bff-web does):
//   signature, exp/nbf with 30 s leeway, iss, aud `bff-web`, only ES256/RS256, `sub` and `tid` required,
//   then the route's scopes in bff-web's order (bff-web/src/lib.rs). Failures are problem+json with
//   bff-web's codes.
// - Calls go on one undici Pool per service: keep-alive, up to 64 connections (bff-web's pool_max_idle),
//   500 ms connect and 2 s header/body timeouts (bff-web's defaults), with bff-web's downstream headers:
//   accept, x-request-id, X-Auth-Subject/-Tenant/-Scopes, and the caller's traceparent/tracestate as sent
//   (no tracer here, so no child span id).
// - One JSON access-log line per request, as bff-web writes one, by pino writing asynchronously (bff-web
//   has a background log writer).
// - Compression as bff-web's server stack does it (tower-http): br or gzip as the client prefers, at
//   quality/level 4, for answers of 1 KiB and more, with the `compression` package (1.8, which has br).
// - No ETag: bff-web sends a strong ETag on every page (SHA-256 of the body, with 304s for If-None-Match);
//   Express would hash every body with its weak ETag, which the benchmark's clients never use, so it is off
//   here as in the first version of this peer. No X-Powered-By.
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import { constants as zlib } from 'node:zlib';
import compression from 'compression';
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
const RELATED_SHOWN = Number(env.RELATED_PRODUCTS ?? 8); // [web] related_products
const ORDERS_SHOWN = Number(env.DASHBOARD_ORDERS ?? 5); // [web] dashboard_orders
const RECOMMENDATIONS_SHOWN = Number(env.DASHBOARD_RECOMMENDATIONS ?? 6); // [web] dashboard_recommendations
const LISTING_LIMIT = 24; // listing.rs DEFAULT_LIMIT
const LISTING_MAX_LIMIT = 100; // listing.rs MAX_LIMIT
const SORTS = ['relevance', 'price_asc', 'price_desc', 'rating', 'newest']; // shared-schema's ProductSort
const CURSOR_KEY = env.CURSOR_SECRET ? Buffer.from(env.CURSOR_SECRET) : randomBytes(32);
const CATALOG_PAGE_CACHE = 'private, max-age=30, stale-while-revalidate=60';
const USER_PAGE_CACHE = 'private, no-cache';
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
const users = pool(env.USERS_URL ?? 'http://127.0.0.1:17005');
const orders = pool(env.ORDERS_URL ?? 'http://127.0.0.1:17006');
const recommendations = pool(env.RECOMMENDATIONS_URL ?? 'http://127.0.0.1:17007');
const log = pino({ base: { service: 'express-bff' } }, pino.destination({ dest: 1, sync: false }));

const TIMEOUTS = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const failed = (cause) => Object.assign(new Error(cause), { cause, downstream: true }); // cause as in BFF-Partial

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

// An optional part: its value, or null with the part named in `missing` and `BFF-Partial` (each part and
// cause once, in the order they failed). VIEW turns the answer into the page's shape: an answer that does
// not have the expected shape is `invalid`, as a body bff-web cannot deserialise.
function optional(res, part, call, view = (x) => x) {
  return call.then(view).catch((error) => {
    const cause = error.downstream ? error.cause : 'invalid';
    const { degraded } = res.locals;
    if (!degraded.some(([name, was]) => name === part && was === cause)) degraded.push([part, cause]);
    return null;
  });
}

// Sends a page: `BFF-Partial` when parts degraded, the route's Cache-Control, the JSON.
function send(res, cacheControl, page) {
  const { degraded } = res.locals;
  if (degraded.length) res.set('bff-partial', degraded.map(([part, cause]) => `${part}=${cause}`).join(', '));
  res.set('cache-control', cacheControl).json(page);
}

// The page's `missing`: each degraded part with its cause, keys sorted.
const missing = (res) => Object.fromEntries(res.locals.degraded.toSorted(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

function problem(res, status, code, detail, headers = {}, extra = {}) {
  res.status(status).set(headers).type('application/problem+json').send(JSON.stringify({
    type: `https://errors.bff.dev/${code.toLowerCase().replaceAll('_', '-')}`, title: STATUS_CODES[status], status, detail, code,
    ...extra,
  }));
}

const DOWNSTREAM_FAILURES = {
  timeout: [504, 'DOWNSTREAM_TIMEOUT', 'did not answer within 2s'], unavailable: [502, 'DOWNSTREAM_UNAVAILABLE', 'is unavailable'],
};

// A required part failed: its 404 is the resource's (gateway-core's `fetching`), anything else the service's.
function requiredFailed(res, error, resource, id, service) {
  if (!error.downstream) throw error;
  if (error.cause === 'not_found') return problem(res, 404, 'NOT_FOUND', `${resource} ${id} not found`);
  const [status, code, what] = DOWNSTREAM_FAILURES[error.cause] ?? [502, 'DOWNSTREAM_BAD_RESPONSE', 'gave an invalid answer'];
  return problem(res, status, code, `the ${service} service ${what}`);
}

class InvalidParameter extends Error {
  constructor(name, reason) {
    super(`the query parameter ${name} ${reason}`);
    this.param = { name, reason };
  }
}

const AUTH_CODES = {
  ERR_JWT_EXPIRED: 'AUTH_TOKEN_EXPIRED', ERR_JWS_SIGNATURE_VERIFICATION_FAILED: 'AUTH_BAD_SIGNATURE',
  ERR_JWKS_NO_MATCHING_KEY: 'AUTH_UNKNOWN_KEY', ERR_JOSE_ALG_NOT_ALLOWED: 'AUTH_ALGORITHM_REJECTED',
  ERR_JWT_CLAIM_VALIDATION_FAILED: 'AUTH_INVALID_CLAIMS',
};

// Verifies the token for AUDIENCE, then requires each of SCOPES in turn (the BFF's route layers).
const authenticateFor = (audience) => (...required) => async (req, res, next) => {
  const bearer = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!bearer) return problem(res, 401, 'AUTH_MISSING', 'no credentials', { 'www-authenticate': 'Bearer' });
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(bearer[1], jwks, { ...VERIFY, audience }));
  } catch (error) {
    if (error instanceof TypeError || ['ERR_JWKS_TIMEOUT', 'ERR_JOSE_GENERIC'].includes(error.code)) {
      return problem(res, 503, 'AUTH_KEYS_UNAVAILABLE', 'the signing keys are unavailable; retry later');
    }
    const code = { iss: 'AUTH_WRONG_ISSUER', aud: 'AUTH_WRONG_AUDIENCE' }[error.claim] ?? AUTH_CODES[error.code];
    return problem(res, 401, code ?? 'AUTH_TOKEN_MALFORMED', error.message, { 'www-authenticate': 'Bearer error="invalid_token"' });
  }
  const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [];
  for (const scope of required) {
    if (!scopes.includes(scope)) {
      return problem(res, 403, 'AUTH_INSUFFICIENT_SCOPE', `missing scope ${scope}`, {
        'www-authenticate': `Bearer error="insufficient_scope", error_description="missing scope ${scope}", scope="${scope}"`,
      });
    }
  }
  res.locals.identity = { subject: claims.sub, tenant: claims.tid };
  res.locals.headers = { // built once per request, shared by its calls
    accept: 'application/json', 'x-request-id': res.locals.requestId,
    'x-auth-subject': claims.sub, 'x-auth-tenant': claims.tid, 'x-auth-scopes': scopes.join(' '),
    ...(req.headers.traceparent && { traceparent: req.headers.traceparent }),
    ...(req.headers.tracestate && { tracestate: req.headers.tracestate }),
  };
  next();
};

const authenticate = authenticateFor(VERIFY.audience);

// --- the views (bff-web/src/views.rs) -----------------------------------------------------------------

// `1299` EUR as `12.99 EUR`.
function formatted(minor, currency) {
  const amount = Math.abs(minor);
  return `${minor < 0 ? '-' : ''}${Math.trunc(amount / 100)}.${String(amount % 100).padStart(2, '0')} ${currency}`;
}
const money = (minor, currency) => ({ amountMinor: minor, currency, formatted: formatted(minor, currency) });
const priceView = (x) => ({
  currency: x.currency, amountMinor: x.amount_minor, listAmountMinor: x.list_amount_minor,
  discountPercent: x.discount_percent ?? 0, formatted: formatted(x.amount_minor, x.currency),
});
const availability = (x) => ({ inStock: x.available > 0, available: x.available, warehouse: x.warehouse });
const card = (p) => ({ id: p.id, name: p.name, brand: p.brand, category: p.category, imageUrl: p.image_url });
const byProduct = (items, view) => new Map(items.map((item) => [item.product_id, view(item)]));
const batchPath = (path, ids) => `${path}?ids=${ids.join(',')}`;

// The prices of IDS from one batch call (part `price`): empty when pricing failed, no call for no ids.
async function prices(res, ids) {
  if (!ids.length) return new Map();
  const batch = await optional(res, 'price', getJson(pricing, batchPath('/prices', ids), res.locals.headers),
    (x) => byProduct(x.items, priceView));
  return batch ?? new Map();
}

// The stock of IDS from one batch call (part `availability`).
async function stock(res, ids) {
  if (!ids.length) return new Map();
  const batch = await optional(res, 'availability', getJson(inventory, batchPath('/inventory', ids), res.locals.headers),
    (x) => byProduct(x.items, availability));
  return batch ?? new Map();
}

// Prices and stock of IDS, one call per service, in parallel.
async function offers(res, ids) {
  const [priced, stocked] = await Promise.all([prices(res, ids), stock(res, ids)]);
  return (product) => ({ product, price: priced.get(product.id) ?? null, availability: stocked.get(product.id) ?? null });
}

// Products IDS as cards by id, from one batch call (part `products`); null when products failed.
function productCards(res, ids) {
  if (!ids.length) return Promise.resolve(new Map());
  return optional(res, 'products', getJson(products, batchPath('/products', ids), res.locals.headers),
    (x) => new Map(x.items.map((p) => [p.id, card(p)])));
}

// --- the pages -----------------------------------------------------------------------------------------

const app = express();
app.disable('x-powered-by');
app.set('etag', false);
// bff-web: tower-http's CompressionLayer, br or gzip at quality 4, over 1 KiB.
app.use(compression({ threshold: 1024, level: 4, brotli: { params: { [zlib.BROTLI_PARAM_QUALITY]: 4 } } }));

const TEMPLATES = { // the access log's route, as the BFF's router template
  '/v1/products': '/v1/products',
  '/api/product-page/:id': '/api/product-page/{id}',
  '/api/categories/:slug/products': '/api/categories/{slug}/products',
  '/api/me/dashboard': '/api/me/dashboard',
};

app.use((req, res, next) => { // the access log: one line per request, with what bff-web's line carries
  const started = performance.now();
  const requestId = res.locals.requestId = req.headers['x-request-id'] ?? randomUUID();
  res.locals.degraded = [];
  res.setHeader('x-request-id', requestId);
  res.on('finish', () => log.info({
    method: req.method, route: (req.route && TEMPLATES[req.route.path]) ?? 'unmatched', status: res.statusCode,
    latency_ms: performance.now() - started, subject: res.locals.identity?.subject, tenant: res.locals.identity?.tenant,
    request_id: requestId,
  }, 'request served'));
  next();
});

// The product page: the product, its reviews, its related products with the prices and stock of all.
app.get('/api/product-page/:id', authenticate('products:read'), async (req, res) => {
  const id = Number(req.params.id);
  if (!/^\+?\d+$/.test(req.params.id) || !Number.isSafeInteger(id)) { // u64's parse takes a `+`
    return problem(res, 400, 'BAD_REQUEST', `bad request: ${JSON.stringify(req.params.id)} is not a product id`);
  }
  const h = res.locals.headers;
  // The product's id is in the path: the related products and the offers wait neither for it nor for the reviews.
  const related = async () => {
    const cards = RELATED_SHOWN === 0 ? [] : await optional(res, 'related',
      getJson(products, `/products/${id}/related?limit=${RELATED_SHOWN}`, h), (x) => x.items.map(card));
    const offer = await offers(res, [id, ...(cards ?? []).map((c) => c.id)]);
    return [cards, offer];
  };
  let product, digest, cards, offer;
  try {
    [product, digest, [cards, offer]] = await Promise.all([
      getJson(products, `/products/${id}`, h),
      optional(res, 'reviews', getJson(reviews, `/reviews?product=${id}&limit=${REVIEWS_SHOWN}`, h), (x) => ({
        // One decimal, rounded as bff-web rounds its f32.
        averageRating: Math.round(Math.fround(Math.fround(x.average_rating) * 10)) / 10,
        total: x.total,
        histogram: Object.fromEntries((x.histogram ?? [0, 0, 0, 0, 0]).slice(0, 5).map((count, i) => [String(i + 1), count])),
        top: x.items.map((r) => ({ rating: r.rating, title: r.title, body: r.body, createdAt: r.created_at })),
      })),
      related(),
    ]);
  } catch (error) {
    return requiredFailed(res, error, 'product', id, 'products');
  }
  const main = offer({ id });
  send(res, CATALOG_PAGE_CACHE, {
    product: {
      id: product.id, sku: product.sku, name: product.name, description: product.description, brand: product.brand,
      category: product.category, imageUrl: product.image_url,
    },
    price: main.price,
    availability: main.availability,
    reviews: digest,
    related: cards && cards.map(offer),
    missing: missing(res),
  });
});

// Listing cursors (bff-web/src/cursor.rs): the service's cursor and an HMAC-SHA256 tag over it and its listing.
const listingOf = (slug, sort) => `${slug} ${sort}`;
const cursorTag = (listing, cursor) => createHmac('sha256', CURSOR_KEY).update(`${listing}\n`).update(cursor).digest();
const signCursor = (listing, cursor) =>
  `${Buffer.from(cursor).toString('base64url')}.${cursorTag(listing, cursor).toString('base64url')}`;
const utf8 = new TextDecoder('utf-8', { fatal: true });

// Unpadded base64url as the base64 crate reads it: canonical only, else null.
function base64url(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : null;
}

// The service's cursor inside SIGNED, if SIGNED was issued for LISTING.
function openCursor(listing, signed) {
  const dot = signed.indexOf('.');
  if (dot < 0) return null;
  const cursor = base64url(signed.slice(0, dot));
  const tag = base64url(signed.slice(dot + 1));
  if (!cursor || !tag) return null;
  let text;
  try {
    text = utf8.decode(cursor);
  } catch {
    return null;
  }
  const expected = cursorTag(listing, cursor);
  return tag.length === expected.length && timingSafeEqual(tag, expected) ? text : null;
}

// The listing's query, checked in bff-web's order: each bad parameter is an InvalidParameter naming it.
function listingQuery(url, slug) {
  const at = url.indexOf('?');
  const params = new URLSearchParams(at < 0 ? '' : url.slice(at + 1));
  const one = (name) => {
    const values = params.getAll(name);
    if (values.length > 1) throw new InvalidParameter(name, 'is given more than once');
    return values[0];
  };
  const sortParam = one('sort');
  if (sortParam !== undefined && !SORTS.includes(sortParam)) {
    throw new InvalidParameter('sort', `must be one of ${SORTS.join(', ')}`);
  }
  const sort = sortParam ?? SORTS[0];
  const limitParam = one('limit');
  const limit = limitParam === undefined ? LISTING_LIMIT : (/^\+?\d+$/.test(limitParam) ? Number(limitParam) : NaN);
  if (!(limit >= 1 && limit <= LISTING_MAX_LIMIT)) {
    throw new InvalidParameter('limit', `must be a whole number from 1 to ${LISTING_MAX_LIMIT}`);
  }
  const cursorParam = one('cursor');
  const cursor = cursorParam === undefined ? undefined : openCursor(listingOf(slug, sort), cursorParam);
  if (cursor === null) {
    throw new InvalidParameter('cursor',
      'is not a cursor this listing issued (it was altered, or belongs to another category or order)');
  }
  return { sort, limit, cursor };
}

// Every byte but ASCII letters and digits percent-encoded (percent-encoding's NON_ALPHANUMERIC).
const encodeAll = (text) => encodeURIComponent(text).replace(/[-_.!~*'()]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

// A category's listing: a page of products and the facets, then their prices and stock.
app.get('/api/categories/:slug/products', authenticate('products:read'), async (req, res) => {
  const { slug } = req.params;
  let query;
  try {
    query = listingQuery(req.url, slug);
  } catch (error) {
    if (!(error instanceof InvalidParameter)) throw error;
    return problem(res, 400, 'INVALID_PARAMETER', error.message, {}, { errors: [error.param] });
  }
  // The slug goes into the service's query: only letters, digits and dashes name a category.
  if (!/^[a-z0-9-]+$/.test(slug)) return problem(res, 404, 'NOT_FOUND', `category ${slug} not found`);
  const { sort, limit, cursor } = query;
  const h = res.locals.headers;
  let path = `/products?category=${slug}&sort=${sort}&limit=${limit}`;
  if (cursor !== undefined) path += `&cursor=${encodeAll(cursor)}`;
  let page, facets;
  try {
    [page, facets] = await Promise.all([
      getJson(products, path, h),
      optional(res, 'facets', getJson(products, `/categories/${slug}/facets`, h), (x) => ({
        total: x.total,
        inStock: x.in_stock,
        brands: x.brands.map((b) => ({ brand: b.brand, count: b.count })),
        priceBands: x.price_bands.map((b) => ({ minMinor: b.min_minor, maxMinor: b.max_minor ?? null, count: b.count })),
      })),
    ]);
  } catch (error) {
    return requiredFailed(res, error, 'category', slug, 'products');
  }
  const cards = page.items.map(card);
  const offer = await offers(res, cards.map((c) => c.id));
  const next = page.next_cursor ?? null;
  send(res, CATALOG_PAGE_CACHE, {
    category: slug,
    sort,
    items: cards.map(offer),
    facets,
    pageInfo: { limit, nextCursor: next === null ? null : signCursor(listingOf(slug, sort), next) },
    missing: missing(res),
  });
});

// The signed-in user's home: profile, newest orders, recommendations; then their products and prices.
app.get('/api/me/dashboard', authenticate('profile:read', 'orders:read'), async (req, res) => {
  const { subject } = res.locals.identity;
  const digits = /^user-(\+?\d+)$/.exec(subject)?.[1];
  const user = digits === undefined ? 0 : Number(digits);
  if (!(Number.isSafeInteger(user) && user > 0)) {
    return problem(res, 403, 'USER_REQUIRED', 'this page is for signed-in users of the shop');
  }
  const h = res.locals.headers;
  let profile, recent, recommended;
  try {
    [profile, recent, recommended] = await Promise.all([
      getJson(users, `/users/${user}`, h),
      optional(res, 'orders', getJson(orders, `/orders?user=${user}&limit=${ORDERS_SHOWN}`, h), (x) => x.items),
      optional(res, 'recommendations',
        getJson(recommendations, `/recommendations?user=${user}&limit=${RECOMMENDATIONS_SHOWN}`, h), (x) => x.items),
    ]);
  } catch (error) {
    return requiredFailed(res, error, 'user', user, 'users');
  }
  const recommendedIds = (recommended ?? []).map((item) => item.product_id);
  const lineIds = (recent ?? []).flatMap((order) => order.lines.map((line) => line.product_id));
  const productIds = [...new Set([...lineIds, ...recommendedIds])].sort((a, b) => a - b);
  const [cards, priced] = await Promise.all([productCards(res, productIds), prices(res, recommendedIds)]);
  const cardOf = (id) => cards?.get(id) ?? null;
  send(res, USER_PAGE_CACHE, {
    profile: { id: profile.id, name: profile.name, email: profile.email, tier: profile.tier },
    recentOrders: recent && recent.map((order) => ({
      id: order.id,
      status: order.status,
      createdAt: order.created_at,
      total: money(order.total_minor, order.currency),
      lines: order.lines.map((line) => ({
        productId: line.product_id, product: cardOf(line.product_id), quantity: line.quantity,
        unitPrice: money(line.unit_price_minor, order.currency),
      })),
    })),
    recommendations: recommended && recommended.map((item) => ({
      product: cardOf(item.product_id), price: priced.get(item.product_id) ?? null, reason: item.reason,
    })),
    missing: missing(res),
  });
});

// bff-partner's product feed, `GET /v1/products?limit=&cursor=&category=&updated_since=`
// (bff-partner/src/v1/products.rs), scope `products:read` for the audience `bff-partner`: the page in id
// order (`/products?sort=id&limit=[&category=][&updated_since=][&cursor=]`), then its prices and stock in
// one batch call per service, both required (a partner's answer is all or nothing: a failure is the
// service's 502/504). The next cursor is signed over the filters as bff-partner signs it.
const PARTNER_LIMIT = 20;
const iso = (seconds) => new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
const feedOf = (category, since) => `products ${category ?? '*'} ${since ?? '*'}`;
app.get('/v1/products', authenticateFor('bff-partner')('products:read'), async (req, res) => {
  const at = req.url.indexOf('?');
  const params = new URLSearchParams(at < 0 ? '' : req.url.slice(at + 1));
  const errors = [];
  const limitParam = params.get('limit');
  const limit = limitParam === null ? PARTNER_LIMIT : (/^\d+$/.test(limitParam) ? Number(limitParam) : NaN);
  if (!(limit >= 1 && limit <= 100)) errors.push({ name: 'limit', reason: 'must be a whole number from 1 to 100' });
  const category = params.get('category') ?? undefined;
  if (category !== undefined && !/^[a-z0-9-]{1,64}$/.test(category)) {
    errors.push({ name: 'category', reason: "must be a category slug: 1 to 64 of a-z, 0-9 and '-'" });
  }
  const sinceParam = params.get('updated_since');
  const sinceMillis = sinceParam === null ? undefined : Date.parse(sinceParam);
  if (Number.isNaN(sinceMillis)) errors.push({ name: 'updated_since', reason: 'must be an ISO 8601 UTC time' });
  const since = sinceMillis === undefined ? undefined : Math.floor(sinceMillis / 1000);
  const cursorParam = params.get('cursor');
  const cursor = cursorParam === null ? undefined : openCursor(feedOf(category, since), cursorParam);
  if (cursor === null) errors.push({ name: 'cursor', reason: 'is not a cursor of this listing' });
  if (errors.length) return problem(res, 422, 'INVALID_QUERY', `${errors.length} query parameters are invalid`, {}, { errors });
  let path = `/products?sort=id&limit=${limit}`;
  if (category !== undefined) path += `&category=${category}`;
  if (since !== undefined) path += `&updated_since=${since}`;
  if (cursor !== undefined) path += `&cursor=${encodeAll(cursor)}`;
  const h = res.locals.headers;
  let page, prices, stock;
  try {
    page = await getJson(products, path, h);
    const ids = page.items.map((p) => p.id);
    [prices, stock] = ids.length
      ? await Promise.all([getJson(pricing, batchPath('/prices', ids), h), getJson(inventory, batchPath('/inventory', ids), h)])
      : [{ items: [] }, { items: [] }];
  } catch (error) {
    return requiredFailed(res, error, 'category', category ?? '*', 'products');
  }
  const priced = new Map(prices.items.map((x) => [x.product_id, x]));
  const stocked = new Map(stock.items.map((x) => [x.product_id, x]));
  if (page.items.some((p) => !priced.has(p.id) || !stocked.has(p.id))) {
    return problem(res, 502, 'DOWNSTREAM_NOT_FOUND', 'a price or stock of the page is missing');
  }
  const next = page.next_cursor ?? null;
  res.json({
    items: page.items.map((p) => {
      const price = priced.get(p.id);
      const level = stocked.get(p.id);
      return {
        id: p.id, sku: p.sku, name: p.name, brand: p.brand, category: p.category,
        price: { amount_minor: price.amount_minor, list_amount_minor: price.list_amount_minor, currency: price.currency },
        stock: { available: level.available, warehouse: level.warehouse },
        created_at: iso(p.created_at), updated_at: iso(p.updated_at),
      };
    }),
    next_cursor: next === null ? null : signCursor(feedOf(category, since), next),
  });
});

app.use((req, res) => problem(res, 404, 'ROUTE_NOT_FOUND', `no route for ${req.method} ${req.path}`));
app.use((error, req, res, _next) => { log.error({ err: error }, 'request failed'); problem(res, 500, 'INTERNAL', 'internal error'); });

await jwks.reload(); // the keys before the first request, as bff-web's readiness waits for them
app.listen(PORT, (error) => {
  if (error) throw error;
  log.info({ port: PORT }, 'listening');
});
