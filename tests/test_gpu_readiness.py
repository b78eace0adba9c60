"""What only a GPU (or a host with several) would hit, emulated on the CPU.

Each test stands for one way the CUDA path used to break: the GPU-only condition is faked by
patching ``torch.cuda.*``, writing checkpoints whose tensors claim another device, or editing a
checkpoint the way another device would have written it.
"""

import json
import logging
import threading
from types import SimpleNamespace

import pytest
import torch
import torch.serialization

from augbench import module, sweep, training
from augbench.data import AugDataModule
from augbench.training import (KeepOnDevice, build_classifier, resolve_precision, run_device, train,
                               trainer_settings)
from conftest import TINY, make_cfg, stop_training_at


# --- 1. precision: ask the pinned device, without emulation --------------------------------------

def test_auto_precision_asks_the_pinned_gpu_and_ignores_bf16_emulation(monkeypatch):
    asked = []

    def capability(device=None):
        asked.append(device)
        return {1: (7, 0), 2: (8, 0)}[torch.device(device).index]  # a V100 next to an A100

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation counts here
    assert resolve_precision("auto", torch.device("cuda", 1)) == "16-mixed"
    assert resolve_precision("auto", torch.device("cuda", 2)) == "bf16-mixed"
    assert [torch.device(d).index for d in asked] == [1, 2]  # never cuda:0 before the job's GPU is pinned
    assert resolve_precision("auto", torch.device("cpu")) == "32-true"
    assert resolve_precision("16-mixed", torch.device("cuda", 2)) == "16-mixed"


# --- 2. the suite pins the CPU ------------------------------------------------------------------

def test_the_shared_test_config_pins_the_cpu_even_where_cuda_is_present(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert run_device(make_cfg(tmp_path, TINY), None).type == "cpu"
    assert run_device(make_cfg(tmp_path, []), None).type == "cpu"
    assert run_device(make_cfg(tmp_path, ["trainer.accelerator=auto"]), 3) == torch.device("cuda", 3)


# --- 3. cudnn.benchmark never overrides deterministic mode ---------------------------------------

def test_cudnn_benchmark_only_when_not_deterministic(tmp_path):
    gpu = torch.device("cuda", 0)
    assert trainer_settings(make_cfg(tmp_path, ["trainer.deterministic=true"]), gpu)["benchmark"] is False
    assert trainer_settings(make_cfg(tmp_path, []), gpu)["benchmark"] is True
    assert trainer_settings(make_cfg(tmp_path, []), torch.device("cpu"))["benchmark"] is False
    assert trainer_settings(make_cfg(tmp_path, ["trainer.benchmark=false"]), gpu).get("benchmark") is None  # as set
    assert trainer_settings(make_cfg(tmp_path, []), gpu)["devices"] == [0]  # one device, the pinned one


# --- helpers: a run interrupted after its first epoch ---------------------------------------------

RUN = TINY + ["model=lenet", "aug=cutmix", "trainer.max_epochs=2", "trainer.limit_train_batches=3"]


def interrupted_run(out, root, monkeypatch, extra=()):
    """Train RUN until epoch 1 starts, as a kill would: last.ckpt holds the end of epoch 0."""
    step = module.Classifier.training_step
    stop_training_at(monkeypatch, 1, KeyboardInterrupt())
    cfg = make_cfg(out, RUN + list(extra), root)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train(cfg)
    monkeypatch.setattr(module.Classifier, "training_step", step)
    return cfg


def rewrite(path, edit, location=None, monkeypatch=None):
    """Load a checkpoint, edit it, save it back (optionally claiming its tensors live on ``location``)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    edit(ckpt)
    if location is not None:
        monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: location)
    torch.save(ckpt, path)
    if location is not None:
        monkeypatch.undo()


# --- 4. checkpoints saved on cuda:3 load on a host without it ------------------------------------

def test_checkpoint_saved_on_another_gpu_resumes_here(tmp_path, fake_cifar, monkeypatch):
    out = tmp_path / "run"
    cfg = interrupted_run(out, fake_cifar, monkeypatch)
    rewrite(out / "last.ckpt", lambda c: None, location="cuda:3", monkeypatch=monkeypatch)
    with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load makes of it here
        torch.load(out / "last.ckpt", weights_only=False)
    assert train(cfg)["status"] == "completed"
    assert json.loads((out / "metrics.json").read_text())["history"]["epoch"] == [0, 1]


# --- 5. compile in place: the state-dict keys do not change -------------------------------------

def test_a_cpu_checkpoints_momentum_takes_the_channels_last_layout_of_a_gpu_run():
    # Found on an H200: the fused CUDA SGD refuses a momentum buffer whose strides differ from its
    # parameter's, which is what resuming a CPU (NCHW) checkpoint into a channels_last model gave.
    # The CPU's fused kernel accepts the mismatch, so the layout itself is what is checked here.
    def model_and_sgd(channels_last):
        torch.manual_seed(0)
        m = module.Classifier("lenet", 3, 10, channels_last=channels_last)
        return m, module.make_sgd(m.parameters(), "cpu", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)

    saved, opt = model_and_sgd(False)
    for p in saved.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    resumed, opt2 = model_and_sgd(True)
    opt2.load_state_dict(opt.state_dict())
    convs = [p for p in resumed.parameters() if p.dim() == 4]
    assert convs and all(opt2.state[p]["momentum_buffer"].stride() != p.stride() for p in convs)
    resumed._trainer = SimpleNamespace(optimizers=[opt2])
    resumed.on_train_start()
    for p, q in zip(resumed.parameters(), saved.parameters()):
        buf = opt2.state[p]["momentum_buffer"]
        assert buf.stride() == p.stride()
        assert torch.equal(buf, opt.state[q]["momentum_buffer"])


def test_compiled_model_has_the_eager_state_dict_keys(tmp_path):
    spec = SimpleNamespace(channels=3, num_classes=10)
    eager = build_classifier(make_cfg(tmp_path, ["model=lenet"]), spec, torch.device("cpu"))
    compiled = build_classifier(make_cfg(tmp_path, ["model=lenet", "model.compile=true"]), spec, torch.device("cpu"))
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert not any("_orig_mod" in k for k in compiled.state_dict())
    compiled.load_state_dict(eager.state_dict())  # strict: a kill with compile off, a relaunch with it on
    eager.load_state_dict(compiled.state_dict())


# --- 6. cross-device resume ---------------------------------------------------------------------

def test_run_saved_on_a_gpu_resumes_on_the_cpu_with_a_warning(tmp_path, fake_cifar, monkeypatch, caplog):
    out = tmp_path / "run"
    cfg = interrupted_run(out, fake_cifar, monkeypatch)

    def as_if_saved_on_a_gpu(ckpt):
        ckpt["augbench_device"] = "NVIDIA H100 80GB HBM3, bf16-mixed"
        for group in ckpt["optimizer_states"][0]["param_groups"]:
            group.update(fused=True, foreach=False)  # what a GPU run's optimizer records
        for state in ckpt["callbacks"].values():  # a CUDA generator's state (16 bytes), as older versions saved
            state["generator"] = torch.zeros(16, dtype=torch.uint8)

    rewrite(out / "last.ckpt", as_if_saved_on_a_gpu)
    flags = []
    monkeypatch.setattr(module.Classifier, "on_train_epoch_start", lambda self: flags.append(
        [(g["fused"], g["foreach"]) for g in self.trainer.optimizers[0].param_groups]))
    with caplog.at_level(logging.WARNING, logger="augbench"):
        assert train(cfg)["status"] == "completed"
    assert flags == [[(False, True)]]  # the CPU's kernels, not the checkpoint's
    assert "trained on NVIDIA H100 80GB HBM3, bf16-mixed on cpu, 32-true" in caplog.text
    assert "will differ from those of an uninterrupted run" in caplog.text
    saved = torch.load(out / "last.ckpt", weights_only=False)
    assert saved["augbench_device"] == "cpu, 32-true"
    assert all(g["foreach"] and not g["fused"] for g in saved["optimizer_states"][0]["param_groups"])


def test_same_device_resume_gives_no_warning(tmp_path, fake_cifar, monkeypatch, caplog):
    cfg = interrupted_run(tmp_path / "run", fake_cifar, monkeypatch)
    with caplog.at_level(logging.WARNING, logger="augbench"):
        train(cfg)
    assert "will differ" not in caplog.text


# --- 7. one device per run: see test_config (trainer.devices=auto is refused) -------------------

# --- 8. parallel jobs take free GPU slots -------------------------------------------------------

def _two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_parallel_jobs_take_distinct_free_gpus_and_give_them_back(tmp_path, monkeypatch):
    _two_gpus(monkeypatch)
    cfg = make_cfg(tmp_path, ["trainer.accelerator=auto", f"gpu_slot_dir={tmp_path / 'slots'}"])
    with sweep.gpu_slot(cfg) as a, sweep.gpu_slot(cfg) as b:
        assert {a, b} == {0, 1}
        got, done = [], threading.Event()

        def third():  # both GPUs busy: this job waits instead of piling onto one
            with sweep.gpu_slot(cfg) as c:
                got.append(c)
            done.set()

        threading.Thread(target=third, daemon=True).start()
        assert not done.wait(0.5) and got == []
    assert done.wait(10) and got[0] in (0, 1)


def test_runs_per_gpu_is_the_number_of_slots(tmp_path, monkeypatch):
    _two_gpus(monkeypatch)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = make_cfg(tmp_path, ["trainer.accelerator=auto", "runs_per_gpu=2", f"gpu_slot_dir={tmp_path / 's'}"])
    with sweep.gpu_slot(cfg) as a, sweep.gpu_slot(cfg) as b:
        assert a == b == 0


def test_no_slots_under_slurm_or_on_the_cpu(tmp_path, monkeypatch):
    _two_gpus(monkeypatch)
    with sweep.gpu_slot(make_cfg(tmp_path, ["trainer.accelerator=cpu"])) as gpu:
        assert gpu is None
    monkeypatch.setenv("SLURM_JOB_ID", "12")  # the scheduler gave this job its GPU
    with sweep.gpu_slot(make_cfg(tmp_path, ["trainer.accelerator=auto"])) as gpu:
        assert gpu is None


def test_gpus_launcher_config_has_an_explicit_job_count():
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=gpus"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert isinstance(cfg.hydra.launcher.n_jobs, int) and cfg.hydra.launcher.n_jobs > 0
    assert cfg.runs_per_gpu == 1


# --- 9. compiling: no inference mode, no move to the CPU between fit and test ---------------------

def test_compiled_runs_skip_inference_mode_and_stay_on_their_device(tmp_path):
    gpu = torch.device("cuda", 1)
    settings = trainer_settings(make_cfg(tmp_path, ["model.compile=true"]), gpu)
    assert settings["inference_mode"] is False
    assert isinstance(settings["strategy"], KeepOnDevice) and settings["strategy"].root_device == gpu
    assert "inference_mode" not in trainer_settings(make_cfg(tmp_path, []), gpu)

    from lightning.pytorch.accelerators import CPUAccelerator

    strategy = KeepOnDevice(device=torch.device("cpu"), accelerator=CPUAccelerator())
    model = build_classifier(make_cfg(tmp_path, ["model=lenet"]), SimpleNamespace(channels=3, num_classes=10),
                             torch.device("cpu"))
    model.cpu = model.to = lambda *a, **k: pytest.fail("teardown moved the model")
    strategy._lightning_module = model
    strategy.teardown()


def test_a_compiled_run_trains_through_the_keep_on_device_strategy(tmp_path, fake_cifar, monkeypatch):
    """The Trainer accepts the compile settings (strategy, no inference mode) and the checkpoint keeps the
    eager keys. Compiling itself is stubbed: inductor takes minutes on these CPUs (the GPU test compiles)."""
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compiled.append(kw))
    seen, test_step = [], module.Classifier.test_step

    def spy(self, batch, i):
        seen.append((type(self.trainer.strategy).__name__, torch.is_inference_mode_enabled()))
        return test_step(self, batch, i)

    monkeypatch.setattr(module.Classifier, "test_step", spy)
    cfg = make_cfg(tmp_path, TINY + ["model=lenet", "model.compile=true", "model.compile_mode=max-autotune"], fake_cifar)
    assert train(cfg)["status"] == "completed"
    assert compiled == [{"mode": "max-autotune"}] and seen == [("KeepOnDevice", False)]
    keys = torch.load(tmp_path / "last.ckpt", weights_only=False)["state_dict"]
    assert keys and not any("_orig_mod" in k for k in keys)


# --- 11. host-resident data: uint8 copies, normalised on the device -------------------------------

def test_host_resident_data_stays_uint8_pinned_for_a_gpu_and_is_normalised_after_transfer(fake_cifar):
    dm = AugDataModule(root=str(fake_cifar), verify=False, download=False, batch_size=16, device_resident=False)
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)), current_epoch=0)
    dm.setup("fit")
    assert dm.pin_memory  # page-locked batches: the copy to the GPU is asynchronous
    assert all(x.device.type == "cpu" and x.dtype == torch.uint8 for x, _ in dm.tensors.values())
    loader = dm.train_dataloader()
    assert loader.pin_memory and loader.normalize is None  # 1 byte a pixel over the bus, not 4


def test_host_resident_and_device_resident_train_identically(tmp_path, fake_cifar):
    args = TINY + ["model=lenet", "aug=cutmix"]
    resident = train(make_cfg(tmp_path / "a", args, fake_cifar))
    host = train(make_cfg(tmp_path / "b", args + ["data.device_resident=false"], fake_cifar))
    assert resident["history"] == host["history"] and resident["test_loss"] == host["test_loss"]


# --- the GPU variants: run where CUDA is (make test-gpu) -------------------------------------------

@pytest.mark.gpu
def test_gpu_auto_precision_matches_the_device(tmp_path, fake_cifar):
    m = train(make_cfg(tmp_path, TINY + ["model=lenet", "trainer.accelerator=gpu"], fake_cifar))
    native_bf16 = torch.cuda.get_device_capability(0) >= (8, 0)
    assert m["precision"] == ("bf16-mixed" if native_bf16 else "16-mixed")
    assert m["device"] == torch.cuda.get_device_name(0)


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["resnet18", "lenet", "densenet", "vgg"])
def test_gpu_deterministic_runs_are_bit_identical(tmp_path, fake_cifar, model):
    args = TINY + [f"model={model}", "aug=cutmix", "trainer.accelerator=gpu", "trainer.deterministic=true"]
    a = train(make_cfg(tmp_path / "a", args, fake_cifar))
    b = train(make_cfg(tmp_path / "b", args, fake_cifar))
    assert a["history"] == b["history"] and a["test_loss"] == b["test_loss"]


@pytest.mark.gpu
def test_gpu_deterministic_run_is_evaluated_twice_the_same(tmp_path, fake_cifar):
    # on an H200 the standard suite failed under trainer.deterministic=true: CUDA's bincount is refused
    args = [a for a in TINY if not a.startswith("eval=")] + [
        "model=lenet", "trainer.accelerator=gpu", "trainer.deterministic=true", "eval=standard",
        "eval.in_between_pairs=50", "eval.ood_noise_images=200", "eval.figures=false"]
    a = train(make_cfg(tmp_path / "a", args, fake_cifar))
    b = train(make_cfg(tmp_path / "b", args, fake_cifar))
    assert "eval_error" not in a and sum(a["eval"]["calibration_bins"]["count"]) > 0
    assert a["eval"] == {**b["eval"], "seconds": a["eval"]["seconds"]}


@pytest.mark.gpu
@pytest.mark.parametrize("first,then", [("cpu", "gpu"), ("gpu", "cpu")])
def test_gpu_cross_device_resume(tmp_path, fake_cifar, monkeypatch, caplog, first, then):
    out = tmp_path / "run"
    interrupted_run(out, fake_cifar, monkeypatch, [f"trainer.accelerator={first}"])
    cfg = make_cfg(out, RUN + [f"trainer.accelerator={then}"], fake_cifar)
    with caplog.at_level(logging.WARNING, logger="augbench"):
        assert train(cfg)["status"] == "completed"
    assert "will differ" in caplog.text


@pytest.mark.gpu
def test_gpu_16_mixed_resume_from_a_cpu_checkpoint(tmp_path, fake_cifar, monkeypatch):
    out = tmp_path / "run"
    interrupted_run(out, fake_cifar, monkeypatch)
    cfg = make_cfg(out, RUN + ["trainer.accelerator=gpu", "trainer.precision=16-mixed"], fake_cifar)
    assert train(cfg)["status"] == "completed"  # GradScaler with the fused SGD of this device


@pytest.mark.gpu
def test_gpu_host_resident_data_trains(tmp_path, fake_cifar):
    args = TINY + ["model=lenet", "trainer.accelerator=gpu", "data.device_resident=false"]
    assert train(make_cfg(tmp_path, args, fake_cifar))["status"] == "completed"


@pytest.mark.gpu
def test_gpu_compiled_reduce_overhead_run(tmp_path, fake_cifar):
    args = TINY + ["model=lenet", "trainer.accelerator=gpu", "model.compile=true",
                   "model.compile_mode=reduce-overhead", "trainer.max_epochs=2"]
    assert train(make_cfg(tmp_path, args, fake_cifar))["status"] == "completed"
