"""The stage protocol (`base`), the one table of stage kinds (`registry`) and what flows between
stages (`state`). The stage families themselves live in `prune/`, `finetune/`, `quantize/`,
`tokens/` and `export/`."""
