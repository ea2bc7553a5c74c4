"""Built-in run services: model-agnostic plugins of the core.

Each module is one plugin, registered as an entry point of the ``vtrain`` distribution in the
``vtrain`` group, so a user can turn one off with ``-p no:NAME``:

- ``optimizers`` (:mod:`vtrain.services.optimizers`): the torch-optimi optimizers (``adamw_bf16`` ...).
- ``ema`` (:mod:`vtrain.services.ema`): an exponential moving average of the trainable weights.
- ``eval_loss`` (:mod:`vtrain.services.eval_loss`): a held-out loss at fixed timesteps and noise.
- ``trackers`` (:mod:`vtrain.services.trackers`): wandb and tensorboard through ``report_to``.
- ``webhooks`` (:mod:`vtrain.services.webhooks`): discord and raw JSON notifications, validation previews.
- ``hub`` (:mod:`vtrain.services.hub`): publishing to the Hugging Face hub with a model card.

Nothing here imports torch at module level: plugin discovery must stay cheap.
"""
