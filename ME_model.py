"""Train and evaluate the MLSP 2024 micro-expression recognizer, leave-one-subject-out.

    python ME_model.py                                  # the built-in demo, a few minutes on CPU
    python ME_model.py --set data.root=DIR --set data.sheet=SHEET.xlsx
    python ME_model.py --summary                        # the model and its parameter count
"""

import sys

from mer.cli import run_script

if __name__ == "__main__":
    sys.exit(
        run_script(
            "ME_model",
            "me_model.yaml",
            "Dual-branch 3D-CNN + CAM/spatial attention + GRU + MSMH, evaluated LOSO.",
        )
    )
