"""Train and evaluate the dual-branch 3D-CNN + AU recognizer, leave-one-subject-out.

Whole-face frames feed the 5x5x5 branch; crops of the facial region that the clip's action
units point at (dlib 68-point landmarks) feed the 3x3x3 branch.

    python dual_branch_3dcnn_au.py                      # the built-in demo, minutes on CPU
    python dual_branch_3dcnn_au.py --set data.layout=casme2 --set data.root=DIR
    python dual_branch_3dcnn_au.py --summary            # the model and its parameter count
"""

import sys

from mer.cli import run_script

if __name__ == "__main__":
    sys.exit(
        run_script(
            "dual_branch_3dcnn_au",
            "dual_branch_au.yaml",
            "Dual-branch 3D-CNN (whole face + AU-region crops) + attention + GRU + MSMH, LOSO.",
        )
    )
