"""Layer 4 (beside `rim`): the teaching data. Sources (hub, local files, the synthetic generator, the incoming
folder), the one normalized record and the mapping onto it, normalization and merging, Great Expectations validation,
the split by hash, and the dataset card. The `ingest` and `validate` stages (`atlas.stages`) drive it. This package
file stays free of heavy imports.
"""
