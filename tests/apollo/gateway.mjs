// Run an Apollo Federation gateway (@apollo/gateway on @apollo/server's standalone server).
//
//   development:  node gateway.mjs --subgraph master-data=URL --subgraph finance=URL [--port 0]
//                 (IntrospectAndCompose: composes from the subgraphs' own SDL at start-up)
//   production:   NODE_ENV=production node gateway.mjs --supergraph supergraph.graphql [--port 0]
//                 (a composed supergraph file, as production gateways run; introspection off)
//
// Options: --host 127.0.0.1, --admin-port 0, --max-lifetime-s 0, --verbose.
// Whether introspection is allowed follows Apollo Server's own default (off when
// NODE_ENV=production); persisted queries (APQ) keep Apollo Server's default (on).
// Admin API (JSON, on --admin-port): GET /admin/stats (operations, errors by code, HTTP
// methods, client names, headers seen, APQ counters), POST /admin/reset (counters zero).
// Always run with APOLLO_TELEMETRY_DISABLED=true: there is no network here.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ApolloGateway, IntrospectAndCompose } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';
import { Stats, statsPlugin } from './lib/instrument.mjs';
import {
  announceReady,
  boundLifetime,
  makeLogger,
  parsePort,
  parseSubgraphs,
  startAdminServer,
  usageError,
} from './lib/process.mjs';

async function main() {
  const { values } = parseArgs({
    options: {
      subgraph: { type: 'string', multiple: true },
      supergraph: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      'admin-port': { type: 'string', default: '0' },
      'max-lifetime-s': { type: 'string', default: '0' },
      verbose: { type: 'boolean', default: false },
    },
  });
  const subgraphs = parseSubgraphs(values.subgraph);
  if ((subgraphs.length > 0) === Boolean(values.supergraph)) {
    usageError('give either --subgraph name=url (repeated) or --supergraph FILE, not both');
  }
  let supergraphSdl;
  if (values.supergraph) {
    try {
      supergraphSdl = readFileSync(values.supergraph, 'utf8');
    } catch (error) {
      usageError(`--supergraph: cannot read ${values.supergraph}: ${error.message}`);
    }
  } else {
    supergraphSdl = new IntrospectAndCompose({ subgraphs });
  }
  const logger = makeLogger(values.verbose);
  const gateway = new ApolloGateway({ supergraphSdl, logger });
  const stats = new Stats('gateway');
  const server = new ApolloServer({ gateway, plugins: [statsPlugin(stats)], logger });
  const { url } = await startStandaloneServer(server, {
    listen: { host: values.host, port: parsePort(values.port, '--port') },
  });
  const mode = process.env.NODE_ENV === 'production' ? 'production' : 'development';
  const admin = await startAdminServer({
    host: values.host,
    port: parsePort(values['admin-port'], '--admin-port'),
    routes: {
      'GET /admin/stats': () => stats.snapshot({ mode }),
      'POST /admin/reset': () => {
        stats.reset();
        return { reset: true };
      },
    },
  });
  boundLifetime({
    name: 'gateway',
    maxLifetimeS: Number(values['max-lifetime-s']),
    stop: async () => {
      admin.server.close();
      await server.stop();
    },
  });
  announceReady({
    service: 'gateway',
    role: 'gateway',
    mode,
    schema_source: values.supergraph ? 'supergraph-file' : 'introspect-and-compose',
    url,
    admin_url: admin.url,
  });
}

await main();
