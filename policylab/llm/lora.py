"""LoRA's adapted linear layer as one fused product (policylab's forward for PEFT's vanilla LoRA ``Linear``).

Imported only when a run uses LoRA (``use_peft``): importing PEFT pulls in much of transformers,
accelerate and torch._dynamo.
"""

from __future__ import annotations

import torch
from peft.tuners.lora.layer import Linear

__all__ = ["FusedLoraLinear", "fuse_lora_layers", "lora_linear"]


def lora_linear(x: torch.Tensor, base: torch.nn.Linear, lora_a: torch.nn.Linear, lora_b: torch.nn.Linear,
                scaling: float, dropout=None) -> torch.Tensor:
    """One adapted linear layer (Hu et al. 2021) as a single ``addmm`` onto the frozen layer's output:

        y = W x + b + (α/r) · B A dropout(x),   x (…, in), A (r, in), B (out, r) → y (…, out)

    PEFT's vanilla forward ``base(x) + lora_B(lora_A(dropout(x))) * scaling`` up to float rounding, with
    one output-sized tensor where PEFT makes four (base output, B·A·x, its scaled copy, the sum): fewer
    large temporaries per layer, so less allocator churn (peak RSS) and memory traffic. Autograd keeps
    only A·dropout(x) (…, r) beyond what the two products need."""
    y = base(x)  # (…, out)
    h = lora_a(x if dropout is None else dropout(x))  # (…, r)
    out = torch.addmm(y.reshape(-1, y.shape[-1]), h.reshape(-1, h.shape[-1]), lora_b.weight.t(), alpha=scaling)
    return out.view(y.shape)  # (…, out)


class FusedLoraLinear(Linear):
    """PEFT's LoRA ``Linear`` whose plain case (one active vanilla adapter, unmerged, no extra arguments,
    input in the adapter's dtype, no adapter bias) runs :func:`lora_linear`; every other case (adapters
    disabled or merged, DoRA and other variants, mixed-adapter batches) is PEFT's own forward. A subclass,
    so PEFT's saving, merging and adapter switching see the layer they made."""

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        names = [a for a in self.active_adapters if a in self.lora_A]
        if (args or kwargs or self.disable_adapters or self.merged or len(names) != 1
                or names[0] in self.lora_variant or self.lora_B[names[0]].bias is not None
                or type(self.base_layer) is not torch.nn.Linear or x.dtype != self.lora_A[names[0]].weight.dtype):
            return super().forward(x, *args, **kwargs)
        a = names[0]
        return lora_linear(x, self.base_layer, self.lora_A[a], self.lora_B[a], self.scaling[a], self.lora_dropout[a])


def fuse_lora_layers(model):
    """Every vanilla PEFT LoRA ``Linear`` in ``model`` becomes a :class:`FusedLoraLinear` (in place; the
    weights are not touched). Returns ``model``."""
    for module in model.modules():
        if type(module) is Linear:
            module.__class__ = FusedLoraLinear
    return model
