"""launchq: a serverless launch queue for Vertex AI.

Kept free of imports on purpose: the dispatch function's cold start pays for every module
imported here.
"""

__version__ = "0.1.0"
