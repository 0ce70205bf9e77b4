// apollo-mobile: bff-mobile's GraphQL API (bff-mobile/schema.graphql, bff-mobile/src/schema.rs) as a Node team
// would write it with Apollo Server 5's startStandaloneServer (plain node:http since AS5, no Express). One
// process, no cluster. The queries: `product(id)` (the product screen), `products(first, after, category, sort)`
// (a category's listing, a Relay connection) and `me { profile orders(first, after) }`, with bff-mobile's types,
// nullability and semantics. The mutation `placeOrder` is left out: the benchmark does not send it.
// - Auth: the Bearer JWT verified on every request with jose against the issuer's JWKS, exactly as express-bff
//   does but for the audience `bff-mobile`; failures are GraphQL errors with HTTP 401/403. Every query needs
//   the scope `products:read`; `me.profile` needs `profile:read` and `me.orders` `orders:read`, else that
//   field's AUTH_INSUFFICIENT_SCOPE error. `me` is the token's subject `user-{id}` (else USER_REQUIRED).
// - Resolvers as bff-mobile's (product.rs, pages.rs, account.rs): the product first, then its `price` from
//   pricing, `stock` from inventory, `rating`/`topReviews` from reviews (`/reviews?product=ID&limit=10`, or
//   `/reviews?ids=…&limit=10` for several), each fetched only when a selected field needs it and through a
//   per-request DataLoader per service: one call per service per query, however many products the query
//   names (a listing's 20 prices are one `/prices?ids=`, every order line's product one `/products?ids=`). A
//   failed price, stock or reviews is that field null with an error at its path; a missing product is null.
// - Money as money.rs: `amountMinor` and `currency` as the service gives them, `formatted` by Intl.NumberFormat
//   (style currency) in the first language of Accept-Language, by q, that the app ships in (en, de, fr, es,
//   it, nl; else en), one formatter kept per language and currency: money.rs's table is CLDR's, which ICU
//   writes too, so both write the same strings.
// - Listings and orders as Relay connections over the services' offsets (`/products?category=&sort=&limit=
//   &cursor=OFFSET`, `/orders?user=&limit=&cursor=OFFSET`): each edge's cursor is the offset after it signed
//   with HMAC-SHA256 over the list it belongs to (gateway-core/src/cursor.rs: base64url(offset) "."
//   base64url(tag), node:crypto), so an altered cursor or one of another list is INVALID_ARGUMENT. The key is
//   CURSOR_SECRET, else 32 random bytes per process (bff-mobile's `[mobile] cursor_secret`, same default).
//   `first` is 1 to 50 (topReviews 1 to 10), else INVALID_ARGUMENT with bff-mobile's `invalidParams`.
// - Downstream calls: one undici Pool per service (keep-alive, 64 connections, 500 ms connect, 2 s timeouts:
//   bff-mobile's defaults), with bff-mobile's headers (accept, x-request-id, X-Auth-*, the caller's
//   traceparent/tracestate as sent).
// - Production settings: no introspection, no landing page, the cache-control plugin off (no cache hints
//   here; bff-mobile sends no Cache-Control), query depth at most 8 like bff-mobile (no complexity limit).
//   Apollo keeps parsed and validated documents in its LRU (its default), so a repeated query is parsed once.
//   Automatic persisted queries are on, Apollo's default, in its in-memory cache (shared by every caller,
//   where bff-mobile keeps them per tenant).
// - One JSON access-log line per request by pino, asynchronously, as bff-mobile writes one.
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { startStandaloneServer } from '@apollo/server/standalone';
import DataLoader from 'dataloader';
import { GraphQLError } from 'graphql';
import depthLimit from 'graphql-depth-limit';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import pino from 'pino';
import { Pool } from 'undici';

const env = process.env;
const VERIFY = {
  issuer: env.ISSUER ?? 'https://auth.demo.bff', audience: env.AUDIENCE ?? 'bff-mobile',
  algorithms: (env.ALGORITHMS ?? 'ES256,RS256').split(','), clockTolerance: 30, requiredClaims: ['exp', 'sub', 'tid'],
};
const TOP_REVIEWS = 10; // loaders.rs: reviews fetched with each product's summary, the most topReviews shows
const MAX_FIRST = 50; // pages.rs
const LOW_STOCK = 5; // product.rs: units at or below which stock is LOW
const LANGUAGES = new Set(['en', 'de', 'fr', 'es', 'it', 'nl']); // money.rs: the languages the app ships in
const CURSOR_KEY = env.CURSOR_SECRET ? Buffer.from(env.CURSOR_SECRET) : randomBytes(32);
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
const log = pino({ base: { service: 'apollo-mobile' } }, pino.destination({ dest: 1, sync: false }));

const TIMEOUTS = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const FAILURES = { // cause: [extensions.code, what the message says], as bff-mobile's errors
  timeout: ['DOWNSTREAM_TIMEOUT', 'did not answer within 2s'], unavailable: ['DOWNSTREAM_UNAVAILABLE', 'is unavailable'],
  not_found: ['DOWNSTREAM_NOT_FOUND', 'has no resource this answer needs'],
  bad_status: ['DOWNSTREAM_BAD_RESPONSE', 'gave an invalid answer'], invalid: ['DOWNSTREAM_BAD_RESPONSE', 'gave an invalid answer'],
};
const failed = (service, cause) => {
  const [code, what] = FAILURES[cause];
  return Object.assign(new GraphQLError(`the ${service} service ${what}`, { extensions: { code } }), { reason: cause });
};
const coded = (message, code, invalidParams) =>
  new GraphQLError(message, { extensions: { code, ...(invalidParams && { invalidParams }) } });
const invalidArgument = (name, reason) =>
  coded(`the argument ${name} ${reason}`, 'INVALID_ARGUMENT', [{ name, reason }]);
// A required resource's failure (fetching() in gateway-core): the service's 404 names the resource.
const fetching = (resource, id) => (error) => {
  throw error.reason === 'not_found' ? coded(`${resource} ${id} not found`, 'NOT_FOUND') : error;
};

// GETs one JSON document from a service; a failure is a GraphQLError naming its cause.
async function getJson(service, client, path, headers) {
  const answer = await client.request({ path, method: 'GET', headers }).catch((error) => {
    throw failed(service, TIMEOUTS.has(error.code) ? 'timeout' : 'unavailable');
  });
  if (answer.statusCode < 200 || answer.statusCode > 299) {
    await answer.body.dump(); // read it out, so that the connection goes back to the pool
    throw failed(service, answer.statusCode === 404 ? 'not_found' : 'bad_status');
  }
  return answer.body.json().catch((error) => { throw failed(service, TIMEOUTS.has(error.code) ? 'timeout' : 'invalid'); });
}

// A per-request loader of one resource by product id: `one(id)` for one id, `many(ids)` for several (the
// service's batch endpoint, answering { items, missing }).
function loader(service, client, { one, many }, keyOf, ifMissing, headers) {
  return new DataLoader(async (ids) => {
    if (ids.length === 1) {
      return [await getJson(service, client, one(ids[0]), headers)
        .catch((error) => (error.reason === 'not_found' ? ifMissing(service) : error))];
    }
    const batch = await getJson(service, client, many(ids), headers);
    const found = new Map(batch.items.map((item) => [keyOf(item), item]));
    return ids.map((id) => found.get(id) ?? ifMissing(service));
  });
}
const byId = (collection) => ({ one: (id) => `${collection}/${id}`, many: (ids) => `${collection}?ids=${ids.join(',')}` });

// Money (money.rs): the first language of Accept-Language, by preference, that the app ships in; else English.
function localeOf(acceptLanguage) {
  if (!acceptLanguage) return 'en';
  const ranges = [];
  for (const range of acceptLanguage.split(',')) {
    const [tag, ...parameters] = range.split(';').map((part) => part.trim());
    if (!tag) continue;
    const q = parameters.find((parameter) => parameter.startsWith('q='));
    const weight = q === undefined ? 1 : Number(q.slice(2));
    if (weight > 0) ranges.push([weight, tag]); // NaN (a bad q) is not > 0
  }
  ranges.sort((a, b) => b[0] - a[0]); // stable: equal weights keep the client's order
  for (const [, tag] of ranges) {
    const language = tag.split('-')[0].toLowerCase();
    if (LANGUAGES.has(language)) return language;
  }
  return 'en';
}
const formatters = new Map(); // `${locale} ${currency}` → [Intl.NumberFormat, minor units per major unit]
function formatMoney(locale, { amountMinor, currency }) {
  const key = `${locale} ${currency}`;
  let formatter = formatters.get(key);
  if (!formatter) {
    const format = new Intl.NumberFormat(locale, { style: 'currency', currency });
    formatter = [format, 10 ** format.resolvedOptions().maximumFractionDigits];
    formatters.set(key, formatter);
  }
  return formatter[0].format(amountMinor / formatter[1]);
}

// Cursors (gateway-core/src/cursor.rs): the service's offset and an HMAC-SHA256 tag over it and its list.
const cursorTag = (list, cursor) => createHmac('sha256', CURSOR_KEY).update(`${list}\n`).update(cursor).digest();
const signCursor = (list, cursor) =>
  `${Buffer.from(cursor).toString('base64url')}.${cursorTag(list, cursor).toString('base64url')}`;
// Unpadded base64url as the base64 crate reads it: canonical only, else null.
function base64url(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : null;
}
// The offset inside SIGNED, if SIGNED was issued for LIST; else null.
function openCursor(list, signed) {
  const dot = signed.indexOf('.');
  const cursor = dot < 0 ? null : base64url(signed.slice(0, dot));
  const tag = dot < 0 ? null : base64url(signed.slice(dot + 1));
  if (!cursor || !tag) return null;
  const expected = cursorTag(list, cursor);
  if (tag.length !== expected.length || !timingSafeEqual(tag, expected)) return null;
  const text = cursor.toString('latin1');
  return /^\+?\d+$/.test(text) ? Number(text) : null;
}

// Which page of LIST a query asks for (pages.rs PageRequest): `first` items after the cursor `after`.
function pageRequest(list, first, after) {
  if (!(Number.isInteger(first) && first >= 1 && first <= MAX_FIRST)) {
    throw invalidArgument('first', `must be 1 to ${MAX_FIRST}`);
  }
  const offset = after == null ? 0 : openCursor(list, after);
  if (offset === null) {
    throw invalidArgument('after', 'is not a cursor of this list (it was altered, or belongs to another list)');
  }
  return { offset, limit: first, query: `limit=${first}&cursor=${offset}` };
}
// The page's connection: NODES with their cursors (the offset after each), and pageInfo.
function connection(list, { offset }, nodes, hasNextPage) {
  const edges = nodes.map((node, index) => ({ cursor: signCursor(list, String(offset + index + 1)), node }));
  return {
    edges,
    pageInfo: {
      hasPreviousPage: offset > 0, hasNextPage,
      startCursor: edges[0]?.cursor ?? null, endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
}

// `scope`, or the error of a caller without it.
function requireScope(identity, scope) {
  if (!identity.scopes.includes(scope)) throw coded(`missing scope ${scope}`, 'AUTH_INSUFFICIENT_SCOPE');
}

const typeDefs = `#graphql
  type Query {
    "A product by id; null when it does not exist."
    product(id: ID!): Product
    "The products of a category in sort order, first (1 to 50) after the cursor after."
    products(first: Int! = 20, after: String, category: String!, sort: ProductSort! = RELEVANCE): ProductConnection!
    "The signed-in user; null, with USER_REQUIRED, for a caller that is not a user of the shop."
    me: Me!
  }
  "A product, trimmed for a phone screen."
  type Product {
    id: ID!
    name: String!
    "The main image's URL, for lists."
    image: String!
    "Every image's URL, the main one first, for the detail screen."
    images: [String!]!
    "Price to pay; null, with an error, when pricing failed."
    price: Money
    "Whether it can be ordered now; null, with an error, when inventory failed."
    stock: StockState
    "Stars and number of reviews; null, with an error, when reviews failed."
    rating: RatingSummary
    "The newest reviews, at most first (1 to 10); null, with an error, when reviews failed."
    topReviews(first: Int! = 3): [Review!]
  }
  type Money {
    "The amount in minor units of currency (cents for EUR): exact, for arithmetic."
    amountMinor: Int!
    "ISO 4217 currency code, for example EUR."
    currency: String!
    "The amount written out in the caller's language (Accept-Language); for display only."
    formatted: String!
  }
  enum StockState { IN_STOCK LOW OUT }
  type RatingSummary {
    "Mean stars, 1 to 5; 0 when there are no reviews."
    average: Float!
    count: Int!
  }
  type Review {
    rating: Int!
    title: String!
    body: String!
  }
  enum ProductSort { RELEVANCE PRICE_ASC PRICE_DESC RATING NEWEST }
  type PageInfo {
    hasPreviousPage: Boolean!
    hasNextPage: Boolean!
    startCursor: String
    endCursor: String
  }
  type ProductConnection {
    pageInfo: PageInfo!
    edges: [ProductEdge!]!
  }
  type ProductEdge {
    node: Product!
    cursor: String!
  }
  "Who is signed in."
  type Me {
    "The user's profile (scope profile:read)."
    profile: Profile!
    "The user's orders, newest first, first (1 to 50) after the cursor after (scope orders:read)."
    orders(first: Int! = 10, after: String): OrderConnection!
  }
  type Profile {
    id: ID!
    name: String!
    email: String!
    tier: String!
  }
  enum OrderStatus { PENDING PAID SHIPPED DELIVERED CANCELLED }
  type Order {
    id: ID!
    status: OrderStatus!
    total: Money!
    lines: [OrderLine!]!
  }
  type OrderLine {
    quantity: Int!
    "The product ordered; null when it no longer exists, or with an error when products failed."
    product: Product
  }
  type OrderConnection {
    pageInfo: PageInfo!
    edges: [OrderEdge!]!
  }
  type OrderEdge {
    node: Order!
    cursor: String!
  }
`;
const resolvers = {
  Query: {
    product: (_, { id }, { loaders }) => {
      if (!/^\+?\d+$/.test(id)) throw invalidArgument('id', 'must be a numeric product id');
      return loaders.product.load(Number(id));
    },
    products: async (_, { first, after, category, sort }, { headers }) => {
      // The slug goes into the service's query: letters, digits and dashes only, else no category.
      if (!/^[a-z0-9-]+$/.test(category)) throw coded(`category ${category} not found`, 'NOT_FOUND');
      const order = sort.toLowerCase();
      const list = `products ${category} ${order}`;
      const page = pageRequest(list, first, after);
      const found = await getJson('products', products, `/products?category=${category}&sort=${order}&${page.query}`,
        headers).catch(fetching('category', category));
      return connection(list, page, found.items, found.next_cursor != null);
    },
    me: (_, __, { identity }) => {
      const digits = /^user-(\+?\d+)$/.exec(identity.subject)?.[1];
      const user = digits === undefined ? 0 : Number(digits);
      if (!(Number.isSafeInteger(user) && user > 0)) {
        throw coded('this is for signed-in users of the shop', 'USER_REQUIRED');
      }
      return { user };
    },
  },
  Product: {
    image: (product) => product.image_url,
    images: (product) => [product.image_url],
    price: async (product, _, { loaders }) => {
      const price = await loaders.price.load(product.id);
      return { amountMinor: price.amount_minor, currency: price.currency };
    },
    stock: async (product, _, { loaders }) => {
      const { available } = await loaders.stock.load(product.id);
      return available === 0 ? 'OUT' : available <= LOW_STOCK ? 'LOW' : 'IN_STOCK';
    },
    rating: async (product, _, { loaders }) => {
      const summary = await loaders.reviews.load(product.id);
      return { average: summary.average_rating, count: summary.total };
    },
    topReviews: async (product, { first }, { loaders }) => {
      if (!(first >= 1 && first <= TOP_REVIEWS)) throw invalidArgument('first', `must be 1 to ${TOP_REVIEWS}`);
      const summary = await loaders.reviews.load(product.id);
      return summary.items.slice(0, first);
    },
  },
  Money: {
    formatted: (money, _, { locale }) => formatMoney(locale, money),
  },
  Me: {
    profile: async ({ user }, _, { identity, headers }) => {
      requireScope(identity, 'profile:read');
      return getJson('users', users, `/users/${user}`, headers).catch(fetching('user', user));
    },
    orders: async ({ user }, { first, after }, { identity, headers }) => {
      requireScope(identity, 'orders:read');
      const list = `orders ${identity.tenant} ${user}`;
      const page = pageRequest(list, first, after);
      const found = await getJson('orders', orders, `/orders?user=${user}&${page.query}`, headers)
        .catch(fetching('user', user));
      return connection(list, page, found.items, found.next_cursor != null);
    },
  },
  Order: {
    status: (order) => order.status.toUpperCase(),
    total: (order) => ({ amountMinor: order.total_minor, currency: order.currency }),
  },
  OrderLine: {
    product: (line, _, { loaders }) => loaders.product.load(line.product_id),
  },
};

const refused = (message, status, code, challenge) =>
  new GraphQLError(message, { extensions: { code, http: { status, headers: new Map([['www-authenticate', challenge]]) } } });

async function context({ req, res }) {
  const started = performance.now();
  const requestId = req.headers['x-request-id'] ?? randomUUID();
  let claims; // the access log: one line per request, with what bff-mobile's line carries
  res.setHeader('x-request-id', requestId);
  res.on('finish', () => log.info({
    method: req.method, route: '/graphql', status: res.statusCode, latency_ms: performance.now() - started,
    subject: claims?.sub, tenant: claims?.tid, request_id: requestId,
  }, 'request served'));
  const bearer = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? '');
  if (!bearer) throw refused('no credentials', 401, 'UNAUTHENTICATED', 'Bearer');
  try {
    ({ payload: claims } = await jwtVerify(bearer[1], jwks, VERIFY));
  } catch (error) {
    if (error instanceof TypeError || ['ERR_JWKS_TIMEOUT', 'ERR_JOSE_GENERIC'].includes(error.code)) { // the JWKS is unreachable
      throw new GraphQLError('the signing keys are unavailable; retry later', { extensions: { code: 'AUTH_KEYS_UNAVAILABLE', http: { status: 503 } } });
    }
    throw refused(error.message, 401, 'UNAUTHENTICATED', 'Bearer error="invalid_token"');
  }
  const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [];
  if (!scopes.includes('products:read')) {
    throw refused('missing scope products:read', 403, 'FORBIDDEN', 'Bearer error="insufficient_scope"');
  }
  const headers = { // built once per request, shared by its calls
    accept: 'application/json', 'x-request-id': requestId,
    'x-auth-subject': claims.sub, 'x-auth-tenant': claims.tid, 'x-auth-scopes': scopes.join(' '),
    ...(req.headers.traceparent && { traceparent: req.headers.traceparent }),
    ...(req.headers.tracestate && { tracestate: req.headers.tracestate }),
  };
  const failNotFound = (service) => failed(service, 'not_found');
  return {
    headers,
    identity: { subject: claims.sub, tenant: claims.tid, scopes },
    locale: localeOf(req.headers['accept-language']),
    loaders: {
      product: loader('products', products, byId('/products'), (p) => p.id, () => null, headers),
      price: loader('pricing', pricing, byId('/prices'), (p) => p.product_id, failNotFound, headers),
      stock: loader('inventory', inventory, byId('/inventory'), (s) => s.product_id, failNotFound, headers),
      reviews: loader('reviews', reviews, {
        one: (id) => `/reviews?product=${id}&limit=${TOP_REVIEWS}`,
        many: (ids) => `/reviews?ids=${ids.join(',')}&limit=${TOP_REVIEWS}`,
      }, (r) => r.product_id, failNotFound, headers),
    },
  };
}

const server = new ApolloServer({
  typeDefs, resolvers, introspection: false, validationRules: [depthLimit(8)],
  plugins: [ApolloServerPluginLandingPageDisabled(), ApolloServerPluginCacheControlDisabled()],
});
await jwks.reload(); // the keys before the first request, as bff-mobile's readiness waits for them
const { url } = await startStandaloneServer(server, { context, listen: { port: Number(env.PORT ?? 18095) } });
log.info({ url }, 'listening');
