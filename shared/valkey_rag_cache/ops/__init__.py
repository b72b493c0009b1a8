"""The cache's operations, sans-IO: each one a generator of Valkey requests with a typed result.

`requests` is the vocabulary an operation yields (`Eval`, `Cmd`, `FanOut`, `Primaries`, `NodeCmd`) and a
driver (`store.py`) sends; `env` is what every operation reads (`Env`); then one module per operation family:
`lookup`, `write`, `invalidate`, `housekeeping` (and `groups`, the index of groups they share). Nothing here
does I/O, so each one is tested by hand in ``tests/core/test_core_ops.py``.
"""
