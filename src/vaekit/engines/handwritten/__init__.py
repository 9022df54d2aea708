"""The VAE's forward and backward passes written out by hand, no autograd: one formula for NumPy
arrays and torch tensors alike (each function uses its inputs' library,
:func:`vaekit.objectives.namespace`). The NumPy engine trains with them; the torch engine uses
them for the models they cover (:func:`vaekit.engines.handwritten.model.covers`) instead of
autograd, which costs about as much as the step's matrix products at the reference model's size.
"""
