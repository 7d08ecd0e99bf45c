"""The built-in model zoo (digits CNN / ViT, MiniLM, ViT-S and ResNet-18 shapes) and
`ModelBundle`, what any model entrypoint returns. Loading a recipe's model is `edgekit.sources`."""
