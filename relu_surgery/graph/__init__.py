"""Analysis of a traced model: activation spellings, op roles, tracing, blocks and their sites.

Nothing here changes a model; :mod:`relu_surgery.surgery` rewrites on what this package finds.
"""
