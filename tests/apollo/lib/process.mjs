// What every harness process shares: its admin HTTP server, the ready line, a bounded life.
//
// Ports may be 0 (the OS picks a free one, so tests never race for ports); the process then
// prints one line `CAPACITY_APOLLO_READY {json}` with the URLs it really listens on. It exits on
// SIGTERM/SIGINT, when its parent process goes away (a killed test run leaves nothing behind),
// and after --max-lifetime-s if given.

import http from 'node:http';
import { BadRequest } from './instrument.mjs';

export const READY_PREFIX = 'CAPACITY_APOLLO_READY ';

/** Fail loudly on a missing or bad option: one line on stderr, exit code 2. */
export function usageError(message) {
  process.stderr.write(`${process.argv[1]}: ${message}\n`);
  process.exit(2);
}

export function parsePort(value, option) {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    usageError(`${option} must be an integer port in 0..65535, got '${value}'`);
  }
  return port;
}

/** Parse repeated `name=url` options into [{name, url}]. */
export function parseSubgraphs(values) {
  return (values ?? []).map((value) => {
    const at = value.indexOf('=');
    if (at <= 0) usageError(`--subgraph expects name=url, got '${value}'`);
    return { name: value.slice(0, at), url: value.slice(at + 1) };
  });
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequest('request body is not valid JSON');
  }
}

/**
 * Start the admin server: `routes` maps "METHOD /path" to a function of the parsed JSON body
 * returning the JSON answer. Resolves to its base URL.
 */
export function startAdminServer({ host, port, routes }) {
  const server = http.createServer(async (req, res) => {
    const path = new URL(req.url, 'http://admin').pathname;
    const route = routes[`${req.method} ${path}`];
    let status = 200;
    let answer;
    try {
      if (!route) {
        status = 404;
        answer = { error: `no route ${req.method} ${path}`, routes: Object.keys(routes) };
      } else {
        answer = await route(await readJson(req));
      }
    } catch (error) {
      status = error.status ?? 500;
      answer = { error: error.message };
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const address = server.address();
      resolve({ server, url: `http://${host}:${address.port}` });
    });
  });
}

/** Print the ready line the Python fixture waits for. */
export function announceReady(info) {
  process.stdout.write(`${READY_PREFIX}${JSON.stringify({ pid: process.pid, ...info })}\n`);
}

/** Stop on signals, parent death or after maxLifetimeS; `stop` closes the servers. */
export function boundLifetime({ name, maxLifetimeS, stop }) {
  let stopping = false;
  const exit = async (why, code = 0) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`${name}: stopping (${why})\n`);
    const force = setTimeout(() => process.exit(code), 5000);
    force.unref();
    try {
      await stop();
    } finally {
      process.exit(code);
    }
  };
  process.on('SIGTERM', () => exit('SIGTERM'));
  process.on('SIGINT', () => exit('SIGINT'));
  const parentPid = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid !== parentPid) exit(`parent ${parentPid} is gone`, 1);
  }, 1000);
  watch.unref();
  if (maxLifetimeS > 0) {
    setTimeout(() => exit(`max lifetime ${maxLifetimeS} s reached`, 1), maxLifetimeS * 1000).unref();
  }
}

/** The standard ApolloServer logger, quiet below warn unless --verbose. */
export function makeLogger(verbose) {
  const noop = () => {};
  return {
    debug: verbose ? console.error : noop,
    info: verbose ? console.error : noop,
    warn: console.error,
    error: console.error,
  };
}
