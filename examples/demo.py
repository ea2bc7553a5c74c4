"""The demo behind `make demo`: a tiny training run on CPU that finishes in a few minutes.

Uses the LTX-Video family when its demo pieces are installed; otherwise the built-in
``tinyflow`` test family.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> int:
    from vtrain import Runner
    from vtrain.errors import VtrainError

    output = ROOT / "demo" / "tinyflow"
    config = {
        "model_family": "tinyflow", "output_dir": str(output), "max_train_steps": 200, "train_batch_size": 4,
        "learning_rate": 1e-2, "mixed_precision": "no", "base_model_default_dtype": "fp32", "lora_rank": 8,
        "checkpoint_step_interval": 100, "checkpoints_total_limit": 2, "validation_prompt": "a red ball",
        "validation_step_interval": 100, "validation_num_inference_steps": 8, "tinyflow_width": 64,
        "resume_from_checkpoint": "latest",
    }
    try:
        result = Runner.from_config(config).run()
    except VtrainError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"\ndemo finished: {result.steps} updates, final loss {result.final_loss:.4f}")
    for path in result.model_paths:
        print(f"  trained weights: {path}")
    print(f"  validation samples: {output / 'validation'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
