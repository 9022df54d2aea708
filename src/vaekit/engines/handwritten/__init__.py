"""The VAE's forward and backward passes written out by hand, no autograd: one formula for NumPy
arrays and torch tensors alike (each function uses its inputs' library,
:func:`vaekit.model.objectives.namespace`). The NumPy engine trains with them; the torch engine uses
them instead of autograd for the models they cover (all but what
:func:`vaekit.engines.handwritten.model.uncovered` names), with the same gradients.
"""
