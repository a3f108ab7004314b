"""Meeting links pool: give every paid booking a video link no overlapping session uses."""
