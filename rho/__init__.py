"""rho: Selective Language Modeling (Rho-1, "Not All Tokens Are What You Need").

The data path, top to bottom::

    rho.data        corpus -> tokens (memory-mapped shards with provenance labels)
    rho.scoring     reference model -> per-token loss and entropy, aligned with the shards
    rho.selection   score functions and batch-level top-k selection
    rho.loss        per-token cross-entropy, the SLM loss (eq. 4) and its reweighting variant
    rho.train       one training loop for CLM and SLM (single process or torchrun DDP/FSDP)
    rho.evaluate    few-shot CoT math, multiple choice, downstream loss, lm-eval
    rho.dynamics    token loss trajectories (H->H, L->H, H->L, L->L)
    rho.analysis    study analyses and result tables
"""

__version__ = "0.1.0"
