"""
Benchmarks, each a command:

    python -m scripts.benchmarks.generalization   # single-source generalisation on the phantom domains
    python -m scripts.benchmarks.iteration        # one DualSSL training iteration against a baseline one
"""
