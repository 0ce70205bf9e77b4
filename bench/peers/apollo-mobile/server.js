// apollo-mobile: bff-mobile's GraphQL API (bff-mobile/src/schema.rs, the benchmark's query
// `{ product(id: 42) { name price stock } }`) as a Node team would write it with Apollo Server
// 5's startStandaloneServer (plain node:http since AS5, no Express). One process, no cluster.
// - Auth: the Bearer JWT verified on every request with jose against the issuer's JWKS, exactly as
//   express-bff does but for the audience `bff-mobile`; failures are GraphQL errors with HTTP 401/403.
// - Resolvers as bff-mobile's: the product first, then `price`/`currency` from pricing and
//   `stock`/`inStock` from inventory, each fetched at most once per request (per-request DataLoaders,
//   which also batch several products into the services' `?ids=` calls) and only when selected. A
//   failed price or stock is that field null with an error at its path; a missing product is null.
// - Downstream calls: one undici Pool per service (keep-alive, 64 connections, 500 ms connect, 2 s
//   timeouts: bff-mobile's defaults), with bff-mobile's headers (accept, x-request-id, X-Auth-*,
//   the caller's traceparent/tracestate as sent).
// - Production settings: no introspection, no landing page, the cache-control plugin off (no cache
//   hints here; bff-mobile sends no Cache-Control), query depth at most 8 like bff-mobile. Apollo
//   keeps parsed and validated documents in its LRU (its default), so a repeated query is parsed once.
// - One JSON access-log line per request by pino, asynchronously, as bff-mobile writes one.
import { randomUUID } from 'node:crypto';
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
const jwks = createRemoteJWKSet(new URL(env.JWKS_URL ?? 'http://127.0.0.1:17000/.well-known/jwks.json'),
  { cacheMaxAge: 300_000, cooldownDuration: 30_000 });
const pool = (url) => new Pool(url, {
  connections: Number(env.POOL_CONNECTIONS ?? 64), keepAliveTimeout: 90_000,
  connect: { timeout: 500 }, headersTimeout: 2_000, bodyTimeout: 2_000,
});
const products = pool(env.PRODUCTS_URL ?? 'http://127.0.0.1:17001');
const inventory = pool(env.INVENTORY_URL ?? 'http://127.0.0.1:17002');
const pricing = pool(env.PRICING_URL ?? 'http://127.0.0.1:17003');
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

// A per-request loader of one resource by product id: `/one/{id}` for one id, `/many?ids=` for several.
function loader(service, client, path, keyOf, ifMissing, headers) {
  return new DataLoader(async (ids) => {
    if (ids.length === 1) {
      return [await getJson(service, client, `${path}/${ids[0]}`, headers)
        .catch((error) => (error.reason === 'not_found' ? ifMissing(service) : error))];
    }
    const batch = await getJson(service, client, `${path}?ids=${ids.join(',')}`, headers); // { items, missing }
    const found = new Map(batch.items.map((item) => [keyOf(item), item]));
    return ids.map((id) => found.get(id) ?? ifMissing(service));
  });
}

const typeDefs = `#graphql
  type Query {
    "A product by id; null when it does not exist."
    product(id: ID!): Product
  }
  "A product, trimmed for a phone screen."
  type Product {
    id: ID!
    name: String!
    brand: String!
    imageUrl: String!
    "Price to pay, in major units of currency; null, with an error, when pricing failed."
    price: Float
    currency: String
    "Units available now; null, with an error, when inventory failed."
    stock: Int
    inStock: Boolean
  }
`;
const resolvers = {
  Query: {
    product: (_, { id }, { loaders }) => {
      if (!/^\d+$/.test(id)) {
        throw new GraphQLError(`bad request: product id ${JSON.stringify(id)} is not numeric`, { extensions: { code: 'BAD_REQUEST' } });
      }
      return loaders.product.load(Number(id));
    },
  },
  Product: {
    imageUrl: (product) => product.image_url,
    price: async (product, _, { loaders }) => (await loaders.price.load(product.id)).amount_minor / 100,
    currency: async (product, _, { loaders }) => (await loaders.price.load(product.id)).currency,
    stock: async (product, _, { loaders }) => (await loaders.stock.load(product.id)).available,
    inStock: async (product, _, { loaders }) => (await loaders.stock.load(product.id)).available > 0,
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
  return {
    loaders: {
      product: loader('products', products, '/products', (p) => p.id, () => null, headers),
      price: loader('pricing', pricing, '/prices', (p) => p.product_id, (s) => failed(s, 'not_found'), headers),
      stock: loader('inventory', inventory, '/inventory', (s) => s.product_id, (s) => failed(s, 'not_found'), headers),
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
