"""The command line of the experiment runner, whose code is the package experiments/ beside this file: run
`python benchmarks/experiments.py --help` for what it does."""

from experiments.cli import main

if __name__ == "__main__":
    main()
