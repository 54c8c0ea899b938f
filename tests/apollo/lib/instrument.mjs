// Exact counters and fault injection for one Apollo process (subgraph or gateway).
//
// The tests compare the toolkit's failure count with these counters, so every figure here is
// counted before the response leaves the server: once a client holds a response, the stats it
// then reads include that response. Injected faults are deterministic by default (the k-th
// matching resolver call fails when floor(k * rate) steps up, so n calls give exactly
// floor(n * rate) faults); a `seed` makes them pseudo-random but repeatable instead.

import { GraphQLError } from 'graphql';
import { rng } from './data.mjs';

export const DEFAULT_FAULT_FIELDS = ['Query.*', 'Mutation.*'];
export const DEFAULT_FAULT_CODE = 'INJECTED_FAULT';

const FAULT_KEYS = new Set(['error_rate', 'fields', 'code', 'message', 'seed', 'delay_ms']);

/** An Error the admin server turns into HTTP 400 with this message. */
export class BadRequest extends Error {
  constructor(message) {
    super(message);
    this.status = 400;
  }
}

function globToRegExp(glob) {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

function increment(map, key, by = 1) {
  map[key] = (map[key] ?? 0) + by;
}

/** What `POST /admin/faults` sets: which resolver calls fail, how often, with which code. */
export class FaultInjector {
  constructor(service) {
    this.service = service;
    this.configure({});
  }

  /** Replace the fault settings; an unknown key or a bad value throws BadRequest. */
  configure(body) {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new BadRequest('faults: expected a JSON object');
    }
    for (const key of Object.keys(body)) {
      if (!FAULT_KEYS.has(key)) {
        throw new BadRequest(`faults: unknown key '${key}' (known: ${[...FAULT_KEYS].join(', ')})`);
      }
    }
    const errorRate = body.error_rate ?? 0;
    if (typeof errorRate !== 'number' || !(errorRate >= 0 && errorRate <= 1)) {
      throw new BadRequest(`faults: error_rate must be a number in 0..1, got ${JSON.stringify(errorRate)}`);
    }
    const fields = body.fields ?? DEFAULT_FAULT_FIELDS;
    if (!Array.isArray(fields) || fields.some((f) => typeof f !== 'string' || !f)) {
      throw new BadRequest('faults: fields must be a list of "Type.field" patterns (* is a wildcard)');
    }
    const delayMs = body.delay_ms ?? 0;
    if (typeof delayMs !== 'number' || !(delayMs >= 0 && delayMs <= 60000)) {
      throw new BadRequest(`faults: delay_ms must be a number in 0..60000, got ${JSON.stringify(delayMs)}`);
    }
    const seed = body.seed ?? null;
    if (seed !== null && !Number.isInteger(seed)) {
      throw new BadRequest(`faults: seed must be an integer or null, got ${JSON.stringify(seed)}`);
    }
    for (const key of ['code', 'message']) {
      if (body[key] !== undefined && (typeof body[key] !== 'string' || !body[key])) {
        throw new BadRequest(`faults: ${key} must be a non-empty string`);
      }
    }
    this.settings = {
      error_rate: errorRate,
      fields,
      code: body.code ?? DEFAULT_FAULT_CODE,
      message: body.message ?? null,
      seed,
      delay_ms: delayMs,
    };
    this.patterns = fields.map(globToRegExp);
    this.random = seed === null ? null : rng(seed);
    this.matchingCalls = 0;
    return this.settings;
  }

  matches(field) {
    return this.patterns.some((re) => re.test(field));
  }

  /** For one resolver call: the delay to add and whether it fails (advances the counters). */
  decide(field) {
    const { error_rate: rate, delay_ms: delayMs } = this.settings;
    if ((rate === 0 && delayMs === 0) || !this.matches(field)) {
      return { delayMs: 0, fail: false };
    }
    this.matchingCalls += 1;
    const k = this.matchingCalls;
    let fail;
    if (this.random === null) {
      fail = Math.floor(k * rate + 1e-9) > Math.floor((k - 1) * rate + 1e-9);
    } else {
      fail = this.random() < rate;
    }
    return { delayMs, fail, k };
  }

  error(field, k) {
    const message = this.settings.message ?? `injected fault in ${this.service} ${field} (call ${k})`;
    return new GraphQLError(message, {
      extensions: { code: this.settings.code, service: this.service, field },
    });
  }
}

/** Counters one process keeps; `snapshot()` is what `GET /admin/stats` returns. */
export class Stats {
  constructor(service) {
    this.service = service;
    this.reset();
  }

  reset() {
    this.startedAt = new Date().toISOString();
    this.operations = 0;
    this.operationsWithErrors = 0;
    this.operationsByName = {};
    this.errorCodes = {};
    this.httpMethods = {};
    this.clientNames = {};
    this.headerCounts = {};
    this.lastHeaders = null;
    this.persistedQueries = { requests: 0, hits: 0, registered: 0, not_found: 0 };
    this.resolverCalls = {};
    this.resolverErrors = {};
    this.injectedErrors = {};
  }

  resolverCalled(field) {
    increment(this.resolverCalls, field);
  }

  resolverFailed(field, injected) {
    increment(this.resolverErrors, field);
    if (injected) increment(this.injectedErrors, field);
  }

  /** Called from the plugin's willSendResponse: one finished GraphQL operation. */
  operationDone(ctx) {
    this.operations += 1;
    const http = ctx.request.http;
    if (http) {
      increment(this.httpMethods, http.method);
      const headers = {};
      for (const [name, value] of http.headers) {
        headers[name] = value;
        increment(this.headerCounts, name);
      }
      this.lastHeaders = headers;
      const client = http.headers.get('apollographql-client-name');
      if (client) increment(this.clientNames, client);
    }
    increment(this.operationsByName, ctx.operationName ?? ctx.request.operationName ?? '(anonymous)');
    if (ctx.request.extensions?.persistedQuery) {
      this.persistedQueries.requests += 1;
      if (ctx.metrics.persistedQueryHit) this.persistedQueries.hits += 1;
      if (ctx.metrics.persistedQueryRegister) this.persistedQueries.registered += 1;
    }
    const body = ctx.response.body;
    const errors = body?.kind === 'single' ? body.singleResult.errors : undefined;
    if (errors?.length) {
      this.operationsWithErrors += 1;
      for (const error of errors) {
        const code = error.extensions?.code ?? '(none)';
        increment(this.errorCodes, code);
        if (code === 'PERSISTED_QUERY_NOT_FOUND') this.persistedQueries.not_found += 1;
      }
    }
  }

  snapshot(extra = {}) {
    const sum = (map) => Object.values(map).reduce((a, b) => a + b, 0);
    return {
      service: this.service,
      started_at: this.startedAt,
      operations: this.operations,
      operations_with_errors: this.operationsWithErrors,
      operations_by_name: this.operationsByName,
      error_codes: this.errorCodes,
      http_methods: this.httpMethods,
      client_names: this.clientNames,
      header_counts: this.headerCounts,
      last_headers: this.lastHeaders,
      persisted_queries: this.persistedQueries,
      resolver_calls: this.resolverCalls,
      resolver_calls_total: sum(this.resolverCalls),
      resolver_errors: this.resolverErrors,
      resolver_errors_total: sum(this.resolverErrors),
      injected_errors: this.injectedErrors,
      injected_errors_total: sum(this.injectedErrors),
      ...extra,
    };
  }
}

/** An Apollo Server plugin that counts every operation into `stats` before it is sent. */
export function statsPlugin(stats) {
  return {
    async requestDidStart() {
      return {
        async willSendResponse(ctx) {
          stats.operationDone(ctx);
        },
      };
    },
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wrap every resolver function in `resolvers` (in place) to count calls and inject faults. */
export function instrument(resolvers, injector, stats) {
  for (const [type, fields] of Object.entries(resolvers)) {
    for (const [name, resolve] of Object.entries(fields)) {
      if (typeof resolve !== 'function') continue;
      const field = `${type}.${name}`;
      fields[name] = async (...args) => {
        stats.resolverCalled(field);
        const { delayMs, fail, k } = injector.decide(field);
        if (delayMs > 0) await sleep(delayMs);
        if (fail) {
          stats.resolverFailed(field, true);
          throw injector.error(field, k);
        }
        try {
          return await resolve(...args);
        } catch (error) {
          stats.resolverFailed(field, false);
          throw error;
        }
      };
    }
  }
  return resolvers;
}
