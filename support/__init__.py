"""Library behind the book *The Low-Rank Simplicity Bias in Deep Networks, reproduced*.

One module per concept; each docstring names the chapter that explains it:

- ``rank``: spectral entropy (the paper's rho), effective, stable and numerical rank;
  ``landscape``: rho over a 2-D slice of parameter space (the paper's v1 Figure 1).
- ``rmt``: random-matrix theory of Gaussian products (Lyapunov spectra, large-width and
  large-depth limits of rho).
- ``simulate``: batched Monte Carlo of rho at initialisation.
- ``linear_nets``, ``kernels``: what training finds in deep linear and non-linear networks.
- ``expand``: linear over-parameterization (expand, train through the effective weight, collapse).
- ``data``, ``models``, ``train``: CIFAR pipeline for the expanded-CNN chapter.
- ``results``: stored results with provenance; ``hardware``: device choice and description;
  ``plots``: the book's figure style; ``checks``: shared argument checks; ``book``: chapter
  executor and hygiene checks.

Modules are imported on demand (``from support import rank``) so that importing the package
never pulls in torch.
"""

__version__ = "0.1.0"
