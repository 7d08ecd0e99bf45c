"""What every phase of a run uses: the strict schema base, lazy imports of heavy backends with
an install hint, the progress callback and per-node name patterns. Nothing here imports another
edgekit package except `errors`."""
