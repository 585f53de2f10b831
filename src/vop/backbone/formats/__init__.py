"""One reader per checkpoint format; :mod:`vop.backbone.loading` picks one and builds the model.

* :mod:`~vop.backbone.formats.state_dict`: ``.pt`` / ``.pth`` / ``.bin`` state dicts, read with
  ``torch.load(weights_only=True)``, training wrappers stripped;
* :mod:`~vop.backbone.formats.safetensors`: ``.safetensors`` files, vop's own metadata (the config,
  a token table stored as rows);
* :mod:`~vop.backbone.formats.torchscript`: OpenAI's TorchScript archives, tensors only, no code run;
* :mod:`~vop.backbone.formats.hf`: Hugging Face ``CLIPModel`` folders (config.json and key names).

Each reader returns tensors in OpenAI's key layout; none of them builds a model.
"""
