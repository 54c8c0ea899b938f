// The finance subgraph: invoices. `Invoice.customer` and line products are entity references
// the gateway resolves in master-data; finance adds `Customer.invoices` to master-data's entity.

import { GraphQLError, parse } from 'graphql';
import { invoiceId, invoiceLine, invoiceNumber, invoiceTotal, page } from '../lib/data.mjs';

export const name = 'finance';

export const typeDefs = parse(`#graphql
  extend schema
    @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])

  type Query {
    "One invoice by id, null when unknown."
    invoice(id: ID!): Invoice
    "Invoices, optionally filtered, in id order."
    invoices(customerId: ID, status: String, offset: Int = 0, limit: Int = 20): [Invoice!]
  }

  type Mutation {
    createInvoice(input: InvoiceInput!): Invoice!
    postInvoice(id: ID!): Invoice!
  }

  type Invoice @key(fields: "id") {
    id: ID!
    number: String!
    customer: Customer!
    lines: [InvoiceLine!]!
    currency: String!
    total: Float!
    status: String!
    dueDate: String!
  }

  type InvoiceLine {
    product: Product!
    quantity: Int!
    unitPrice: Float!
    amount: Float!
  }

  type Customer @key(fields: "id") {
    id: ID!
    "The customer's invoices, newest first."
    invoices(first: Int = 5): [Invoice!]!
  }

  type Product @key(fields: "id", resolvable: false) {
    id: ID!
  }

  input InvoiceLineInput {
    productId: ID!
    quantity: Int!
  }

  input InvoiceInput {
    customerId: ID!
    lines: [InvoiceLineInput!]!
    currency: String = "BDT"
  }
`);

function badInput(message, field) {
  return new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', field } });
}

/** Resolvers over `state.data` (the generated data set, replaced on reset). */
export function createResolvers(state) {
  const invoices = () => [...state.data.invoices.values()];
  return {
    Query: {
      invoice: (_, { id }) => state.data.invoices.get(id) ?? null,
      invoices: (_, { customerId, status, offset, limit }) =>
        page(
          invoices().filter(
            (i) =>
              (customerId == null || i.customerId === customerId) &&
              (status == null || i.status === status),
          ),
          { offset, limit },
        ),
    },
    Mutation: {
      createInvoice: (_, { input }) => {
        if (!state.data.customers.has(input.customerId)) {
          throw badInput(`unknown customer '${input.customerId}'`, 'customerId');
        }
        if (input.lines.length === 0) throw badInput('an invoice needs at least one line', 'lines');
        const lines = input.lines.map(({ productId, quantity }) => {
          const product = state.data.products.get(productId);
          if (!product) throw badInput(`unknown product '${productId}'`, 'productId');
          if (quantity < 1) throw badInput(`quantity must be at least 1, got ${quantity}`, 'quantity');
          return invoiceLine(product, quantity);
        });
        const n = state.data.invoices.size + 1;
        const invoice = {
          id: invoiceId(n),
          number: invoiceNumber(n),
          customerId: input.customerId,
          lines,
          currency: input.currency,
          total: invoiceTotal(lines),
          status: 'draft',
          dueDate: '2025-12-31',
        };
        state.data.invoices.set(invoice.id, invoice);
        return invoice;
      },
      postInvoice: (_, { id }) => {
        const invoice = state.data.invoices.get(id);
        if (!invoice) throw badInput(`unknown invoice '${id}'`, 'id');
        if (invoice.status === 'draft') invoice.status = 'posted';
        return invoice;
      },
    },
    Invoice: {
      __resolveReference: (ref) => state.data.invoices.get(ref.id) ?? null,
      customer: (invoice) => ({ __typename: 'Customer', id: invoice.customerId }),
    },
    InvoiceLine: {
      product: (line) => ({ __typename: 'Product', id: line.productId }),
    },
    Customer: {
      __resolveReference: (ref) => ({ id: ref.id }),
      invoices: (customer, { first }) =>
        invoices()
          .filter((i) => i.customerId === customer.id)
          .reverse()
          .slice(0, first),
    },
  };
}
