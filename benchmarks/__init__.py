"""edgekit's benchmarks: each script is run from the repository root as
`python -m benchmarks.NAME` and saves its result through `benchmarks._results.save`."""
