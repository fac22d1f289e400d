"""metapredict: organ tropism and late-relapse risk from a primary tumour's immune infiltrate."""

__version__ = "0.1.0"
