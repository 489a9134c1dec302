"""Development tools: the development broker, the `make run` runner and stack, the dev inbox.

Not part of the distribution or the image: `make run` and the tests use them from the
repository.
"""
