"""report.md and report.html of an artifact directory. `rows` turns a manifest into the rows
every section shows, once; `markdown` and `html` render those rows; `plots` draws the figures;
`pruning` is the pruning family's section."""
