"""The evaluation suite (config group ``eval``): the papers' claims beyond accuracy, measured on the
final weights of a run, on the clean test set unless said otherwise, never on augmented batches.

``conf/eval/accuracy.yaml`` measures nothing more; ``standard`` (the default) everything that is a
few forward passes over the test set; ``full`` adds the corruption benchmark, whose images are
generated on the host. Results are plain floats (accuracies as fractions, like ``test_acc1``) for
``metrics.json["eval"]``; figures go to ``<run>/eval/``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from augbench.catalog import EVAL_MEASURES as MEASURES
from augbench.catalog import SPECS

log = logging.getLogger("augbench")

FIGURES = "eval"  # folder of the run that holds the suite's figures


class EvalSuite:
    """Runs the chosen measures; ``run`` returns ``metrics.json["eval"]``."""

    def __init__(self, name: str, measures=(), batch_size: int = 1000, fgsm_eps=(1, 2, 4, 8),
                 occlusion_sizes=tuple(range(0, 33, 4)), in_between_pairs: int = 1000,
                 in_between_lams=tuple(i / 10 for i in range(11)), ood_sets=("other_cifar", "fashion_mnist",
                                                                              "uniform", "gaussian"),
                 ood_noise_images: int = 10000, corruptions=None, corruption_images: int | None = None,
                 seed: int = 0, figures: bool = True):
        unknown = sorted(set(measures) - set(MEASURES))
        if unknown:
            raise ValueError(f"eval.measures: unknown {unknown}; choose from {', '.join(MEASURES)}")
        self.name, self.measures = name, list(measures)
        self.batch_size, self.fgsm_eps = batch_size, list(fgsm_eps)
        self.occlusion_sizes, self.in_between_pairs = list(occlusion_sizes), in_between_pairs
        self.in_between_lams, self.ood_sets = list(in_between_lams), list(ood_sets)
        self.ood_noise_images, self.corruptions = ood_noise_images, corruptions
        self.corruption_images, self.seed, self.figures = corruption_images, seed, figures

    def run(self, model, datamodule, out: Path, device: torch.device, precision: str | None = None) -> dict:
        """Every chosen measure in fp32 on ``device``; ``{"suite", "seconds", <measure>: ...}``."""
        if not self.measures:
            return {"suite": self.name, "seconds": 0.0}
        start = time.monotonic()
        spec = datamodule.spec
        images, labels = datamodule.host["test"]
        images, labels = images.to(device), labels.to(device)
        model = model.to(device).eval()
        title = f"{spec.name} / {getattr(model.hparams, 'model', '?')}"
        args = (model, images, labels, spec.mean, spec.std)
        figures: dict[str, str] = {}
        res: dict = {"suite": self.name}

        def figure(name: str, draw) -> None:
            if self.figures:
                path = Path(out) / FIGURES / f"{name}.png"
                draw(path)
                figures[name] = path.relative_to(out).as_posix()

        for measure in self.measures:
            t0 = time.monotonic()
            getattr(self, f"_{measure}")(args, res, figure, datamodule, title)
            log.info("eval %s: %.1f s", measure, time.monotonic() - t0)
        res["figures"] = figures
        res["seconds"] = round(time.monotonic() - start, 2)
        return res

    # --- one method per measure: each adds its keys to ``res`` -----------------------------------

    def _calibration(self, args, res, figure, dm, title):
        from augbench.evaluation.calibration import calibration, reliability_diagram
        from augbench.evaluation.common import predict_logits

        model, images, labels, mean, std = args
        cal = calibration(predict_logits(model, images, mean, std, self.batch_size), labels)
        res["calibration"] = {k: cal[k] for k in ("nll", "ece", "mce", "overconfidence")}
        res["calibration_bins"] = cal["bins"]
        figure("reliability", lambda p: reliability_diagram(cal, p, f"{title}: reliability (test set)"))

    def _fgsm(self, args, res, figure, dm, title):
        from augbench.evaluation.adversarial import fgsm

        res["fgsm"] = fgsm(*args, eps_pixels=self.fgsm_eps, batch_size=self.batch_size)

    def _occlusion(self, args, res, figure, dm, title):
        from augbench.evaluation.occlusion import occlusion, plot_occlusion

        for mode in ("center", "boundary"):
            acc = occlusion(*args, sizes=self.occlusion_sizes, mode=mode, batch_size=self.batch_size)
            res[f"occlusion_{mode}"] = {str(k): v for k, v in acc.items()}
        figure("occlusion", lambda p: plot_occlusion(
            {"center": res["occlusion_center"], "boundary": res["occlusion_boundary"]}, p, f"{title}: occlusion"))

    def _in_between(self, args, res, figure, dm, title):
        from augbench.evaluation.occlusion import in_between

        res["in_between"] = in_between(*args, n_pairs=self.in_between_pairs, seed=self.seed,
                                       lams=self.in_between_lams, sizes=self.occlusion_sizes,
                                       batch_size=self.batch_size)

    def _ood(self, args, res, figure, dm, title):
        from augbench.evaluation.ood import adapt_images, ood, synthetic_sets

        model, images, labels, mean, std = args
        sets = {}
        n_noise = min(self.ood_noise_images, len(images))
        for name in self.ood_sets:
            if name in ("uniform", "gaussian"):
                continue
            other = other_test_set(dm, name)
            if other is not None:
                sets[other[0]] = adapt_images(other[1], images.shape[1]).to(images.device)
        noise = synthetic_sets(n_noise, tuple(images.shape[1:]), self.seed)
        sets |= {k: v.to(images.device) for k, v in noise.items() if k in self.ood_sets}
        res["ood"] = ood(model, images, sets, mean, std, batch_size=self.batch_size)

    def _corruption(self, args, res, figure, dm, title):
        from augbench.evaluation.corruptions import corruption_accuracy, plot_corruptions

        got = corruption_accuracy(*args, dataset=dm.spec.name, root=dm.root, names=self.corruptions,
                                  seed=self.seed, batch_size=self.batch_size, n_images=self.corruption_images)
        res["corruption"] = got["corruption"]
        res["corruption_mean_acc"] = got["corruption_mean_acc"]
        res["corruption_source"] = got["source"]
        res["corruption_left_out"] = got.get("left_out", {})
        res |= {k: got[k] for k in ("corruption_mean_over", "n_images") if k in got}
        figure("corruption", lambda p: plot_corruptions(got, p, f"{title}: corruptions ({got['source'].split(' ')[0]})"))


def other_test_set(dm, name: str) -> tuple[str, torch.Tensor] | None:
    """An out-of-distribution test set that is on disk, or None: ``other_cifar`` is CIFAR-100 for a
    CIFAR-10 model and back (looked for beside this dataset), ``fashion_mnist`` where installed (not for a
    Fashion-MNIST model), ``cifar10`` for a Fashion-MNIST model. Missing sets are skipped, never downloaded."""
    from augbench.data import _present, default_root, load

    own = dm.spec.name
    if name == "other_cifar":
        name = {"cifar10": "cifar100", "cifar100": "cifar10"}.get(own)
    if name is None or name == own or name not in SPECS:
        return None
    spec = SPECS[name]
    roots = [Path(dm.root), Path(default_root(name))]
    root = next((r for r in roots if _present(spec, r)), None)
    if root is None:
        log.info("eval ood: %s is not on disk (looked in %s); left out", name, ", ".join(map(str, roots)))
        return None
    try:
        return name, load(spec, root, verify=dm.verify)[2]
    except Exception as e:  # noqa: BLE001 - a broken extra set must not fail the suite
        log.warning("eval ood: %s under %s could not be read (%s); left out", name, root, e)
        return None
