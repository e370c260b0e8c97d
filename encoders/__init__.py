"""Vision encoders (change-only sparse SigLIP encoding; see issue 4)."""
