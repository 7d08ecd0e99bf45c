"""The artifact directory: its files written atomically with a sha256 each (`files`), the
manifest and the shape every reader holds it to (`manifest`, `shape`), and the environment
fingerprint it records (`environment`)."""
