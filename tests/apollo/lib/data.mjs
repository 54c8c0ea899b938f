// Deterministic ERP reference data shared by both subgraphs: same seed, same records.
//
// Both subgraphs import this module, so finance can check a customer or product id and price an
// invoice line without calling master-data (subgraphs do not call each other in federation).
// The pool CSV of the example scenario lists ids from this data set.

export const SEED = 20240601;
export const N_CUSTOMERS = 200;
export const N_VENDORS = 40;
export const N_PRODUCTS = 300;
export const N_INVOICES = 1000;

const COUNTRIES = ['BD', 'BD', 'BD', 'BD', 'IN', 'US', 'DE', 'SG', 'GB', 'JP'];
const TIERS = ['standard', 'standard', 'standard', 'gold', 'gold', 'platinum'];
const INVOICE_STATUSES = ['draft', 'posted', 'posted', 'paid', 'paid', 'paid'];
const CATEGORIES = ['electronics', 'food', 'medicine', 'office', 'construction', 'software'];
const FIRST_NAMES = ['Abdul', 'Ayesha', 'Rahim', 'Karim', 'Nusrat', 'Tanvir', 'Priya', 'Kenji'];
const LAST_NAMES = ['Rahman', 'Hossain', 'Ahmed', 'Chowdhury', 'Islam', 'Khan', 'Tanaka', 'Ali'];
const COMPANY_WORDS = ['Bengal', 'Delta', 'Padma', 'Meghna', 'Apex', 'Nova', 'Orion', 'Lotus'];
const COMPANY_KINDS = ['Traders', 'Industries', 'Supplies', 'Ltd', 'Group', 'Imports'];
const PRICE_RANGE = {
  electronics: [500, 150000],
  food: [20, 5000],
  medicine: [5, 3000],
  office: [10, 25000],
  construction: [100, 60000],
  software: [1000, 200000],
};

export const customerId = (n) => `C-${String(n).padStart(4, '0')}`;
export const vendorId = (n) => `V-${String(n).padStart(3, '0')}`;
export const productId = (n) => `P-${String(n).padStart(4, '0')}`;
export const invoiceId = (n) => `INV-${String(n).padStart(6, '0')}`;
export const invoiceNumber = (n) => `VX-2025-${String(n).padStart(6, '0')}`;

/** mulberry32: a small seeded PRNG, so data and seeded faults repeat exactly. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const round2 = (x) => Math.round(x * 100) / 100;

export function invoiceLine(product, quantity) {
  return {
    productId: product.id,
    quantity,
    unitPrice: product.unitPrice,
    amount: round2(product.unitPrice * quantity),
  };
}

export function invoiceTotal(lines) {
  return round2(lines.reduce((sum, line) => sum + line.amount, 0));
}

/** The whole data set as Maps keyed by id; call again for a fresh copy (reset). */
export function generate(seed = SEED) {
  const rand = rng(seed);
  const pick = (items) => items[Math.floor(rand() * items.length)];
  const between = (low, high) => low + Math.floor(rand() * (high - low + 1));
  const customers = new Map();
  const vendors = new Map();
  const products = new Map();
  const invoices = new Map();
  for (let n = 1; n <= N_CUSTOMERS; n++) {
    const first = pick(FIRST_NAMES);
    const last = pick(LAST_NAMES);
    customers.set(customerId(n), {
      id: customerId(n),
      name: `${first} ${last}`,
      email: `${first.toLowerCase()}.${last.toLowerCase()}${n}@example.com`,
      country: pick(COUNTRIES),
      tier: pick(TIERS),
      creditLimit: between(50, 5000) * 1000,
    });
  }
  for (let n = 1; n <= N_VENDORS; n++) {
    vendors.set(vendorId(n), {
      id: vendorId(n),
      name: `${pick(COMPANY_WORDS)} ${pick(COMPANY_KINDS)} ${n}`,
      country: pick(COUNTRIES),
      rating: between(1, 5),
    });
  }
  for (let n = 1; n <= N_PRODUCTS; n++) {
    const category = pick(CATEGORIES);
    const [low, high] = PRICE_RANGE[category];
    products.set(productId(n), {
      id: productId(n),
      sku: `SKU-${category.slice(0, 3).toUpperCase()}-${String(n).padStart(5, '0')}`,
      name: `${category} item ${n}`,
      category,
      unitPrice: round2(low + rand() * (high - low)),
      vendorId: vendorId(between(1, N_VENDORS)),
    });
  }
  for (let n = 1; n <= N_INVOICES; n++) {
    const count = between(1, 4);
    const lines = [];
    for (let i = 0; i < count; i++) {
      lines.push(invoiceLine(products.get(productId(between(1, N_PRODUCTS))), between(1, 20)));
    }
    invoices.set(invoiceId(n), {
      id: invoiceId(n),
      number: invoiceNumber(n),
      customerId: customerId(between(1, N_CUSTOMERS)),
      lines,
      currency: rand() < 0.9 ? 'BDT' : 'USD',
      total: invoiceTotal(lines),
      status: pick(INVOICE_STATUSES),
      dueDate: new Date(Date.UTC(2025, 0, 1 + between(0, 364))).toISOString().slice(0, 10),
    });
  }
  return { customers, vendors, products, invoices };
}

/** A slice of `items` by offset and limit (limit capped at 100, as a real API would). */
export function page(items, { offset = 0, limit = 20 } = {}) {
  const start = Math.max(0, offset ?? 0);
  const size = Math.min(Math.max(0, limit ?? 20), 100);
  return items.slice(start, start + size);
}
