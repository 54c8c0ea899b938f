"""Deterministic ERP reference data for master-data: customers, vendors, products, invoices.

Generated from a fixed seed so every run, every machine and every test sees the same ids,
names and totals; drivers can therefore pick ids blindly and checks can hard-wire nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

SEED = 20240601
N_CUSTOMERS = 1000
N_VENDORS = 200
N_PRODUCTS = 2000
N_INVOICES = 5000

COUNTRIES = ("BD", "BD", "BD", "BD", "IN", "US", "DE", "SG", "GB", "JP")
TIERS = ("standard", "standard", "standard", "gold", "gold", "platinum")
INVOICE_STATUSES = ("draft", "posted", "posted", "paid", "paid", "paid")
CATEGORIES = (
    "electronics",
    "food",
    "medicine",
    "office",
    "construction",
    "apparel",
    "software",
)
FIRST_NAMES = (
    "Abdul", "Ayesha", "Rahim", "Karim", "Nusrat", "Tanvir", "Farhana", "Sakib", "Priya",
    "Arjun", "Emily", "Lukas", "Hannah", "Kenji", "Mei", "Omar", "Sara", "David", "Anna", "Ravi",
)  # fmt: skip
LAST_NAMES = (
    "Rahman", "Hossain", "Ahmed", "Chowdhury", "Islam", "Khan", "Sharma", "Patel", "Smith",
    "Miller", "Schmidt", "Weber", "Tanaka", "Lee", "Tan", "Das", "Roy", "Karim", "Uddin", "Ali",
)  # fmt: skip
COMPANY_WORDS = (
    "Bengal", "Delta", "Padma", "Meghna", "Sonar", "Apex", "Nova", "Orion", "Green", "Royal",
    "United", "Eastern", "Northern", "Summit", "Pioneer", "Lotus", "Crescent", "Jamuna",
)  # fmt: skip
COMPANY_KINDS = ("Traders", "Industries", "Supplies", "Ltd", "Group", "Enterprises", "Imports")
PRODUCT_WORDS = {
    "electronics": ("Router", "Laptop", "Monitor", "Cable", "UPS", "Printer"),
    "food": ("Rice", "Lentils", "Tea", "Flour", "Sugar", "Oil"),
    "medicine": ("Paracetamol", "Insulin", "Antiseptic", "Vitamin C", "Saline", "Bandage"),
    "office": ("Paper", "Stapler", "Desk", "Chair", "Binder", "Pen"),
    "construction": ("Cement", "Rebar", "Brick", "Sand", "Paint", "Pipe"),
    "apparel": ("Shirt", "Saree", "Jacket", "Uniform", "Boots", "Cap"),
    "software": ("ERP Seat", "Antivirus", "Backup Plan", "CRM Seat", "Licence", "Support Plan"),
}
PRICE_RANGE = {
    "electronics": (500.0, 150000.0),
    "food": (20.0, 5000.0),
    "medicine": (5.0, 3000.0),
    "office": (10.0, 25000.0),
    "construction": (100.0, 60000.0),
    "apparel": (150.0, 12000.0),
    "software": (1000.0, 200000.0),
}
FIRST_DUE_DATE = date(2025, 1, 1)


def customer_id(n: int) -> str:
    return f"C-{n:04d}"


def vendor_id(n: int) -> str:
    return f"V-{n:03d}"


def product_id(n: int) -> str:
    return f"P-{n:04d}"


def invoice_id(n: int) -> str:
    return f"INV-{n:06d}"


@dataclass
class Dataset:
    """All records keyed by id, plus the secondary indexes master-data filters on."""

    customers: dict[str, dict] = field(default_factory=dict)
    vendors: dict[str, dict] = field(default_factory=dict)
    products: dict[str, dict] = field(default_factory=dict)
    invoices: dict[str, dict] = field(default_factory=dict)
    products_by_vendor: dict[str, list[str]] = field(default_factory=dict)
    invoices_by_customer: dict[str, list[str]] = field(default_factory=dict)

    def add_customer(self, customer: dict) -> None:
        self.customers[customer["id"]] = customer
        self.invoices_by_customer.setdefault(customer["id"], [])

    def add_invoice(self, invoice: dict) -> None:
        self.invoices[invoice["id"]] = invoice
        self.invoices_by_customer.setdefault(invoice["customerId"], []).append(invoice["id"])


def invoice_line(product: dict, quantity: int) -> dict:
    """One invoice line priced from the product's current unit price."""
    return {
        "productId": product["id"],
        "quantity": quantity,
        "unitPrice": product["unitPrice"],
        "amount": round(product["unitPrice"] * quantity, 2),
    }


def invoice_total(lines: list[dict]) -> float:
    return round(sum(line["amount"] for line in lines), 2)


def generate(seed: int = SEED) -> Dataset:
    """Build the full reference dataset; same seed, same data."""
    rng = random.Random(seed)
    data = Dataset()
    for n in range(1, N_CUSTOMERS + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        tier = rng.choice(TIERS)
        data.add_customer(
            {
                "id": customer_id(n),
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}{n}@example.com",
                "country": rng.choice(COUNTRIES),
                "tier": tier,
                "creditLimit": float(rng.randrange(50, 5000) * 1000),
            }
        )
    for n in range(1, N_VENDORS + 1):
        vid = vendor_id(n)
        data.vendors[vid] = {
            "id": vid,
            "name": f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_KINDS)} {n}",
            "country": rng.choice(COUNTRIES),
            "rating": rng.randint(1, 5),
        }
        data.products_by_vendor[vid] = []
    for n in range(1, N_PRODUCTS + 1):
        pid = product_id(n)
        category = rng.choice(CATEGORIES)
        low, high = PRICE_RANGE[category]
        vid = vendor_id(rng.randint(1, N_VENDORS))
        data.products[pid] = {
            "id": pid,
            "sku": f"SKU-{category[:3].upper()}-{n:05d}",
            "name": f"{rng.choice(PRODUCT_WORDS[category])} {n}",
            "category": category,
            "unitPrice": round(rng.uniform(low, high), 2),
            "vendorId": vid,
        }
        data.products_by_vendor[vid].append(pid)
    for n in range(1, N_INVOICES + 1):
        products = [data.products[product_id(rng.randint(1, N_PRODUCTS))] for _ in range(4)]
        lines = [invoice_line(p, rng.randint(1, 20)) for p in products[: rng.randint(1, 4)]]
        data.add_invoice(
            {
                "id": invoice_id(n),
                "number": f"VX-2025-{n:06d}",
                "customerId": customer_id(rng.randint(1, N_CUSTOMERS)),
                "lines": lines,
                "currency": "BDT" if rng.random() < 0.9 else "USD",
                "total": invoice_total(lines),
                "status": rng.choice(INVOICE_STATUSES),
                "dueDate": (FIRST_DUE_DATE + timedelta(days=rng.randrange(365))).isoformat(),
            }
        )
    return data
