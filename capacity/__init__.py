"""Load testing and capacity planning for the Vextrus ERP stack."""

__version__ = "0.1.0"
