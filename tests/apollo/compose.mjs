// Compose the harness's subgraphs into a supergraph SDL file (what `rover supergraph compose`
// writes): the schema a production gateway runs from, with @link and @join__ directives.
//
//   node compose.mjs --subgraph master-data=http://127.0.0.1:PORT/ \
//                    --subgraph finance=http://127.0.0.1:PORT/ --out supergraph.graphql
//
// The subgraph SDL comes from the subgraph modules themselves (no server needs to run); the URLs
// are where the gateway will send each subgraph's fetches. Without --subgraph both subgraphs
// are composed with placeholder URLs. Composition errors: one line each on stderr, exit 1.

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { composeServices } from '@apollo/composition';
import { parseSubgraphs } from './lib/process.mjs';
import { SUBGRAPHS } from './subgraphs/index.mjs';

/** The supergraph SDL for `subgraphs` ([{name, url}]); throws with every composition error. */
function composeSupergraph(subgraphs) {
  const services = subgraphs.map(({ name, url }) => {
    const module = SUBGRAPHS[name];
    if (!module) {
      throw new Error(`unknown subgraph '${name}' (known: ${Object.keys(SUBGRAPHS).join(', ')})`);
    }
    return { name, url, typeDefs: module.typeDefs };
  });
  const result = composeServices(services);
  if (result.errors?.length) {
    throw new Error(result.errors.map((e) => `composition: ${e.message}`).join('\n'));
  }
  return result.supergraphSdl;
}

async function main() {
  const { values } = parseArgs({
    options: {
      subgraph: { type: 'string', multiple: true },
      out: { type: 'string' },
    },
  });
  let subgraphs = parseSubgraphs(values.subgraph);
  if (subgraphs.length === 0) {
    subgraphs = Object.keys(SUBGRAPHS).map((name) => ({ name, url: `http://${name}.invalid/` }));
  }
  let sdl;
  try {
    sdl = composeSupergraph(subgraphs);
  } catch (error) {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
  if (values.out) {
    writeFileSync(values.out, sdl);
  } else {
    process.stdout.write(sdl);
  }
}

await main();
