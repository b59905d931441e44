"""trapdoor's compute plane: backdoor defenses (Trap and Replace and baselines) in PyTorch.

The package is pure compute on local files: it reads a `spec.json` and canonical dataset
directories, writes artifacts to a work directory and reports on stdout as JSON lines.
"""

__version__ = "0.1.0"
