// The master-data subgraph: customers, vendors and products; owns the Customer entity.

import { GraphQLError, parse } from 'graphql';
import { customerId, page } from '../lib/data.mjs';

export const name = 'master-data';

export const typeDefs = parse(`#graphql
  extend schema
    @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])

  type Query {
    "One customer by id, null when unknown."
    customer(id: ID!): Customer
    "Customers, optionally filtered, in id order."
    customers(country: String, tier: String, offset: Int = 0, limit: Int = 20): [Customer!]
    vendor(id: ID!): Vendor
    vendors(offset: Int = 0, limit: Int = 20): [Vendor!]
    product(id: ID!): Product
    products(category: String, maxPrice: Float, offset: Int = 0, limit: Int = 20): [Product!]
  }

  type Mutation {
    createCustomer(input: CustomerInput!): Customer!
  }

  type Customer @key(fields: "id") {
    id: ID!
    name: String!
    email: String!
    country: String!
    tier: String!
    creditLimit: Float!
  }

  type Vendor @key(fields: "id") {
    id: ID!
    name: String!
    country: String!
    rating: Int!
    products(first: Int = 5): [Product!]!
  }

  type Product @key(fields: "id") {
    id: ID!
    sku: String!
    name: String!
    category: String!
    unitPrice: Float!
    vendor: Vendor
  }

  input CustomerInput {
    name: String!
    email: String!
    country: String!
    tier: String = "standard"
  }
`);

/** Resolvers over `state.data` (the generated data set, replaced on reset). */
export function createResolvers(state) {
  const byId = (map, id) => state.data[map].get(id) ?? null;
  return {
    Query: {
      customer: (_, { id }) => byId('customers', id),
      customers: (_, { country, tier, offset, limit }) =>
        page(
          [...state.data.customers.values()].filter(
            (c) => (country == null || c.country === country) && (tier == null || c.tier === tier),
          ),
          { offset, limit },
        ),
      vendor: (_, { id }) => byId('vendors', id),
      vendors: (_, { offset, limit }) => page([...state.data.vendors.values()], { offset, limit }),
      product: (_, { id }) => byId('products', id),
      products: (_, { category, maxPrice, offset, limit }) =>
        page(
          [...state.data.products.values()].filter(
            (p) =>
              (category == null || p.category === category) &&
              (maxPrice == null || p.unitPrice <= maxPrice),
          ),
          { offset, limit },
        ),
    },
    Mutation: {
      createCustomer: (_, { input }) => {
        if (!input.email.includes('@')) {
          throw new GraphQLError(`invalid email '${input.email}'`, {
            extensions: { code: 'BAD_USER_INPUT', field: 'email' },
          });
        }
        const id = customerId(state.data.customers.size + 1);
        const customer = { id, creditLimit: 100000, ...input };
        state.data.customers.set(id, customer);
        return customer;
      },
    },
    Customer: {
      __resolveReference: (ref) => byId('customers', ref.id),
    },
    Vendor: {
      __resolveReference: (ref) => byId('vendors', ref.id),
      products: (vendor, { first }) =>
        [...state.data.products.values()].filter((p) => p.vendorId === vendor.id).slice(0, first),
    },
    Product: {
      __resolveReference: (ref) => byId('products', ref.id),
      vendor: (product) => byId('vendors', product.vendorId),
    },
  };
}
