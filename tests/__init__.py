"""pcitopo's tests: a package, so ``tests.support`` has one module name for pytest and mypy alike."""
