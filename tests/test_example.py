"""Publishing a finished sweep as the committed example: report, per-run metrics, provenance."""

import json

from augbench.example import main, publish
from test_report import write_run


def test_publish_writes_the_report_and_copies_only_metrics(tmp_path):
    sweep = tmp_path / "multirun" / "fashion_example"
    for seed, acc in enumerate([0.90, 0.91, 0.92]):
        d = write_run(sweep, "fashion_mnist", "lenet", "baseline_plus", seed, acc)
        m = json.loads((d / "metrics.json").read_text())
        m |= {"device": "cpu", "wall_seconds": 60.0,
              "attempt_log": [{"started": f"2026-11-25T18:0{seed}:00+00:00", "host": "box", "seconds": 60.0}]}
        (d / "metrics.json").write_text(json.dumps(m))
        (d / "last.ckpt").write_bytes(b"weights")
        (d / "tb").mkdir()
    out = tmp_path / "docs" / "example"
    stale = out / "runs" / "gone" / "seed=9"
    stale.mkdir(parents=True)
    (stale / "metrics.json").write_text("{}")

    publish(sweep, out)
    copied = sorted(p.relative_to(out).as_posix() for p in (out / "runs").rglob("*") if p.is_file())
    assert copied == [f"runs/grid/fashion_mnist/lenet/baseline_plus/seed={s}/metrics.json" for s in range(3)]
    assert not stale.exists()  # a run the sweep no longer holds is not published
    report = (out / "report.md").read_text()
    assert "Trained on cpu (3 runs), host box; 0.05 h of run time" in report
    assert "the first started 2026-11-25T18:00:00+00:00" in report
    assert (out / "table1.md").is_file()


def test_cli_says_when_there_is_nothing(tmp_path, capsys):
    assert main([str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert "augbench.example:" in capsys.readouterr().err
