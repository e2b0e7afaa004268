"""``python -m recbole_hllm`` is the ``run_recbole`` command."""
import sys

from recbole_hllm.cli import main

sys.exit(main())
