"""``python -m valkey_rag_cache``: the same command line as the ``valkey-rag-cache`` console script."""

from .cli import run

if __name__ == "__main__":
    run()
