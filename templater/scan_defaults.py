"""The face scan's default settings, shared by the reference scan and the generated scanners."""

from __future__ import annotations

# Scale steps of ~0.8 from 1 down to 0.2: faces of 25 to 125 pixels.
DEFAULT_SCALES = (1.0, 0.8, 0.64, 0.5, 0.4, 0.32, 0.25, 0.2)
DEFAULT_STRIDE = 2
DEFAULT_OVERLAP = 0.3
