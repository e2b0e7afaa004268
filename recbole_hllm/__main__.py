"""``python -m recbole_hllm`` is the ``run_recbole`` command."""
import sys

from recbole_hllm.cli.run_recbole import main

if __name__ == "__main__":  # spawned worker processes import this module too
    sys.exit(main())
