"""The labelled evaluation photos (labels.json) and the script that finds them (fetch.py)."""
