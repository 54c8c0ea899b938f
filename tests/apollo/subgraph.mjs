// Run one subgraph (@apollo/subgraph on @apollo/server's standalone server) plus its admin API.
//
//   node subgraph.mjs --name master-data|finance [--host 127.0.0.1] [--port 0] [--admin-port 0]
//                     [--max-lifetime-s 0] [--verbose]
//
// GraphQL is served at the root URL (any path, e.g. /graphql, as the standalone server does).
// Admin API (JSON, on --admin-port): GET /admin/stats, GET|POST|DELETE /admin/faults,
// POST /admin/reset (faults off, counters zero, data back to its seeded state).

import { parseArgs } from 'node:util';
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { generate } from './lib/data.mjs';
import { FaultInjector, Stats, instrument, statsPlugin } from './lib/instrument.mjs';
import {
  announceReady,
  boundLifetime,
  makeLogger,
  parsePort,
  startAdminServer,
  usageError,
} from './lib/process.mjs';
import { SUBGRAPHS } from './subgraphs/index.mjs';

async function main() {
  const { values } = parseArgs({
    options: {
      name: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      'admin-port': { type: 'string', default: '0' },
      'max-lifetime-s': { type: 'string', default: '0' },
      verbose: { type: 'boolean', default: false },
    },
  });
  const module = SUBGRAPHS[values.name];
  if (!module) {
    usageError(`--name must be one of ${Object.keys(SUBGRAPHS).join(', ')}, got '${values.name}'`);
  }
  const state = { data: generate() };
  const stats = new Stats(module.name);
  const faults = new FaultInjector(module.name);
  const resolvers = instrument(module.createResolvers(state), faults, stats);

  const server = new ApolloServer({
    schema: buildSubgraphSchema([{ typeDefs: module.typeDefs, resolvers }]),
    plugins: [statsPlugin(stats)],
    logger: makeLogger(values.verbose),
  });
  const { url } = await startStandaloneServer(server, {
    listen: { host: values.host, port: parsePort(values.port, '--port') },
  });
  const admin = await startAdminServer({
    host: values.host,
    port: parsePort(values['admin-port'], '--admin-port'),
    routes: {
      'GET /admin/stats': () => stats.snapshot({ faults: faults.settings }),
      'GET /admin/faults': () => faults.settings,
      'POST /admin/faults': (body) => faults.configure(body),
      'DELETE /admin/faults': () => faults.configure({}),
      'POST /admin/reset': () => {
        faults.configure({});
        stats.reset();
        state.data = generate();
        return { reset: true };
      },
    },
  });
  boundLifetime({
    name: module.name,
    maxLifetimeS: Number(values['max-lifetime-s']),
    stop: async () => {
      admin.server.close();
      await server.stop();
    },
  });
  announceReady({ service: module.name, role: 'subgraph', url, admin_url: admin.url });
}

await main();
