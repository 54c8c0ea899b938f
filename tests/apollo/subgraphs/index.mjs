// The harness's subgraphs by name; each module exports { name, typeDefs, createResolvers }.

import * as finance from './finance.mjs';
import * as masterData from './master-data.mjs';

export const SUBGRAPHS = { [masterData.name]: masterData, [finance.name]: finance };
