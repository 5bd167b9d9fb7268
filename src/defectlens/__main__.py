"""``python -m defectlens`` (also what ``torchrun -m defectlens train`` runs)."""

from defectlens.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
