"""What is checked about every artifact after it is built: parity against the reference
(`verify`), the task metric and accuracy budget (`evaluate`, `metrics`), the same checks under
emulated CPU classes (`emulate`), and the offline target checks behind `inspect --target`
(`compat`)."""
