"""Built-in datasets a recipe can name with `builtin:` (digits, sentences). Loading any data
source, built-in or not, is `edgekit.sources.data`."""
