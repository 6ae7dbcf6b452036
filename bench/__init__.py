"""Side-by-side benchmarks of oddjob and the libraries users would pick instead.

``python -m bench --help`` (normally through ``nox -s bench``); see bench/README.md.
"""
