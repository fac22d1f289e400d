"""metapredict: organ tropism and late-relapse risk from the immune infiltrate of a primary tumour."""

__version__ = "0.1.0"
