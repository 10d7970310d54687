"""`python -m synthflaw_jax` is the same as the `synthflaw` command."""
import sys

from synthflaw_jax.cli import main

sys.exit(main())
