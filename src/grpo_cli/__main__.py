import sys

from grpo_cli.cli import main

sys.exit(main())
