"""Thin clients of the Google APIs launchq calls over REST: Vertex AI `CustomJob`s (`vertex`),
Cloud Build and Artifact Registry (`cloudbuild`), Cloud Storage object metadata (`gcs`), the
events topic (`events`), quota limits from Cloud Quotas (`quotas`), and the shared transport with
its retry policy (`rest`).

Hand-written rather than the generated clients to keep them off the functions' cold-start path
(the figures are in docs/performance.md). They import `launchq.spec`, `launchq.log` and
`launchq.errors`, never a runtime unit (tests/unit/test_architecture.py).
"""
