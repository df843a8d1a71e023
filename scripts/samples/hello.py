"""Hello world: a command script that prints text."""

print("Hello, world!")
