"""The experiment layer: one module per chapter, holding that chapter's recipes.

Each module names its chapter's scales, sweeps, grids and stored-result names and has a command
line (``python -m support.experiments.<chapter> --help``). It imports the concept modules of
``support``; they never import it (``tests/test_architecture.py`` checks), so the concepts stay
reusable outside this book.
"""
