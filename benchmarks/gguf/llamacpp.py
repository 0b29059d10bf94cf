"""The llama.cpp source tree the scripts of this folder read, named by the
environment variable MOE_LLAMA_CPP."""
import os
import sys


def root(uses):
    """Return $MOE_LLAMA_CPP with its gguf-py first on sys.path; exit with a
    message naming the variable and uses (what the script reads there) when
    it is unset."""
    tree = os.environ.get("MOE_LLAMA_CPP")
    if not tree:
        sys.exit(f"set MOE_LLAMA_CPP to a llama.cpp source tree ({uses})")
    sys.path.insert(0, os.path.join(tree, "gguf-py"))
    return tree
