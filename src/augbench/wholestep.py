"""``model.compile_scope=step``: forward, loss, backward and the SGD update of a training step, compiled
as one graph.

``loss.backward()`` ends a Dynamo graph, and so does ``optimizer.step()``'s bookkeeping: compiling the
backbone (``model.compile_scope=backbone``) leaves the loss, the backward's driver and the update to eager
kernels, a launch each. Here the step is written functionally instead: ``torch.func.grad_and_value`` of
the loss of ``functional_call(net, (params, buffers), image)`` gives the gradients inside the graph, and
the update is PyTorch's own ``torch.optim.sgd.sgd`` (multi-tensor) on the optimiser's momentum buffers,
so Dynamo captures the whole step without a break (``fullgraph=True``: a break is an error, not a silent
split). With ``model.compile_mode=reduce-overhead`` the step is then one CUDA graph.

What stays outside, eagerly: the augmentation callbacks (their draws take a ``torch.Generator``, which
Dynamo cannot capture), the epoch's loss/accuracy sums and the NaN watch (two small copies a step),
Lightning's loop and the learning-rate schedulers (the rate enters the graph as a 0-d tensor, so a new
rate is not a recompile).

The state is the module's and the optimiser's own tensors, updated in place: checkpoints, resumes and
evaluation see exactly what an eager step leaves. The numbers match an eager step up to float rounding
(the compiler fuses and reorders; a rate given as a tensor multiplies before it adds).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, grad_and_value
from torch.optim.sgd import sgd

from augbench.module import loss_and_accuracy

class StepScopeError(ValueError):
    """A setting that ``model.compile_scope=step`` cannot train with."""


class WholeStep:
    """One compiled training step of ``module`` (a Classifier) with optimiser ``opt``: ``step(batch)``
    updates the parameters, batch-norm statistics and momentum buffers in place and returns the step's
    (loss, accuracy), detached."""

    def __init__(self, module, opt: torch.optim.SGD, precision: str, *, mode: str | None = None,
                 backend: str = "inductor"):
        if precision == "16-mixed":
            raise StepScopeError(
                "model.compile_scope=step cannot train with trainer.precision=16-mixed: float16 needs a "
                "GradScaler, whose skipped steps are not part of the compiled step. Use bf16-mixed (GPUs "
                "of compute capability >= 8.0), 32-true, or model.compile_scope=backbone")
        if len(opt.param_groups) != 1:
            raise StepScopeError("model.compile_scope=step needs one optimiser parameter group")
        self.module, self.opt = module, opt
        self.device_type = module.device.type
        self.dtype = torch.bfloat16 if precision == "bf16-mixed" else None  # the one mixed precision it takes
        net = module.net
        self.params = dict(net.named_parameters())
        self.buffers = dict(net.named_buffers())
        group = opt.param_groups[0]
        for p in self.params.values():
            # a zero buffer stepped once holds exactly the first gradient (dampening 0, as make_sgd builds it),
            # as SGD's clone of it would
            opt.state[p].setdefault("momentum_buffer", torch.zeros_like(p, memory_format=torch.preserve_format))
        self.momentum = [opt.state[p]["momentum_buffer"] for p in self.params.values()]
        self.lr = torch.zeros((), device=module.device)  # the rate as a tensor: a new rate is no recompile
        # all state stays where it lies: a CUDA graph reads and updates it in place, with no copy in or out
        for t in (*self.params.values(), *self.buffers.values(), *self.momentum, self.lr):
            torch._dynamo.mark_static_address(t)
        self.hyper = {k: group[k] for k in ("weight_decay", "momentum", "dampening", "nesterov", "maximize")}
        self._compiled = torch.compile(self._step, fullgraph=True, mode=mode, backend=backend)

    def _loss(self, params, batch):
        x = batch["image"]
        x = x.contiguous(memory_format=torch.channels_last) if self.module.channels_last else x
        mix = batch.get("feature_mix")
        kwargs = {} if mix is None else {
            "mix": lambda f: torch.where(mix["mask"], f[mix["partner"]], f), "mix_at": mix["layer"]}
        # the forward and the loss under autocast, the backward outside it: as Lightning runs an eager step
        with torch.autocast(self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            logits = functional_call(self.module.net, (params, self.buffers), (x,), kwargs)
            loss, acc = loss_and_accuracy(logits, batch, self.module.hparams.label_smoothing)
        return loss, (loss.detach(), acc.detach())

    def _step(self, batch, lr):
        grads, (_, (loss, acc)) = grad_and_value(self._loss, has_aux=True)(self.params, batch)
        with torch.no_grad():
            sgd(list(self.params.values()), list(grads.values()), self.momentum, foreach=True, lr=lr, **self.hyper)
        return loss, acc

    def stale(self) -> bool:
        """Whether the optimiser's state was replaced since (a checkpoint loaded into it): rebuild then."""
        first = next(iter(self.params.values()))
        return self.opt.state.get(first, {}).get("momentum_buffer") is not self.momentum[0]

    def __call__(self, batch: dict):
        self.lr.fill_(self.opt.param_groups[0]["lr"])
        with torch.autocast(self.device_type, enabled=False):  # the step sets its own (Lightning's is on)
            return self._compiled(batch, self.lr)
