"""A stand-in worker process that applies a saved Terraform plan and is SIGKILLed while it holds
the state lock: `python -m tests.support.lock_holder CALL.pickle` with a pickled (context, plan)."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from providers.terraform import TerraformStage


def main(call: Path) -> None:
    context, plan = pickle.loads(call.read_bytes())
    TerraformStage(grace=1.0).apply(context, plan)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
